import type { CommandModule } from 'yargs';
import { demoCommand } from './demo.ts';
import { benchCommand } from './bench.ts';
import { pvmmuCommand } from './pvmmu.ts';
import { qemuCommand } from './qemu.ts';
import { conformanceCommand } from './conformance.ts';
import { specCommand } from './spec.ts';
import { replCommand } from './repl.ts';

/** Every pvkit command, one module each. Add yours here. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [demoCommand, benchCommand, pvmmuCommand, conformanceCommand, specCommand, qemuCommand, replCommand];
