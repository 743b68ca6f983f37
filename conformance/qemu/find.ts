import fs from 'node:fs';
import path from 'node:path';
import { PvkitError } from '../../spec-refs/errors.ts';

/** QEMU is not installed (or not where the user said): exit code 2 with an install hint. */
export class QemuNotFoundError extends PvkitError {}

export const INSTALL_HINT = 'install it with `apt-get install qemu-system-x86` (Debian/Ubuntu), or pass --qemu PATH';

/** The qemu-system-x86_64 binary to use, or undefined. */
export function locateQemu(explicit?: string): string | undefined {
  const want = explicit ?? process.env['PVKIT_QEMU'];
  if (want) {
    if (want.includes('/')) return isExecutable(want) ? want : undefined;
    return onPath(want);
  }
  return onPath('qemu-system-x86_64');
}

export function findQemu(explicit?: string): string {
  const q = locateQemu(explicit);
  if (q) return q;
  const what = explicit ?? process.env['PVKIT_QEMU'] ?? 'qemu-system-x86_64';
  throw new QemuNotFoundError('usage.qemu_missing', `QEMU not found (${what}): ${INSTALL_HINT}`);
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, name);
    if (isExecutable(p)) return p;
  }
  return undefined;
}

function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}
