import type { Argv, CommandModule } from 'yargs';
import { CONFIGS, findConfig, type QemuConfig } from '../../conformance/qemu/configs.ts';
import { launchQemu, type QemuSession } from '../../conformance/qemu/launcher.ts';
import { findQemu } from '../../conformance/qemu/find.ts';
import { UsageError, hex } from '../../spec-refs/errors.ts';
import { Mmio } from '../../spec-refs/abi/virtio.ts';
import { catalog } from '../../spec-refs/catalog.ts';
import { registeredChecks, type TransportName } from '../../conformance/check.ts';
import { runConformance, type RunReport } from '../../conformance/runner.ts';
import { writeReports } from '../../conformance/report.ts';
import { configureQemuTarget, qemuTarget } from '../../conformance/targets/qemu.ts';
import { devicesOf, ringsOf, transportsOf } from '../../conformance/qemu/configs.ts';
import { driverSmoke } from '../qemu/smoke.ts';
import '../../conformance/checks/index.ts';

/**
 * `pvkit qemu`: the QEMU target's own commands.
 *   pvkit qemu list                 the built-in configurations
 *   pvkit qemu probe [NAME...]      start each configuration and show the virtio devices found
 *   pvkit qemu smoke [NAME...]      the reference drivers on each configuration (CI: --smoke)
 *   pvkit qemu matrix [NAME...]     the conformance suite on each configuration (reports/qemu/NAME/), results table
 * Common flags: --qemu PATH (default $PVKIT_QEMU or qemu-system-x86_64), --qemu-args "..."
 * (appended to QEMU's command line). QEMU missing: exit 2 with how to install it.
 */
interface QemuArgs {
  names?: string[];
  out: string;
  runs: number;
  seed: number;
  qemu?: string;
  'qemu-args'?: string;
  json: boolean;
  smoke: boolean;
}

export function splitArgs(s: string | undefined): string[] {
  if (!s) return [];
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(s); m; m = re.exec(s)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

export function resolveConfigs(names: readonly string[] | undefined, smoke = false): QemuConfig[] {
  if (!names || names.length === 0) return CONFIGS.filter((c) => !smoke || c.smoke);
  return names.map((n) => {
    const c = findConfig(n);
    if (!c) throw new UsageError('usage.qemu_config', `unknown QEMU configuration ${JSON.stringify(n)} (pvkit qemu list shows them)`);
    return c;
  });
}

function listMain(a: QemuArgs): void {
  if (a.json) {
    console.log(JSON.stringify(CONFIGS, null, 2));
    return;
  }
  const w = Math.max(...CONFIGS.map((c) => c.name.length));
  for (const c of CONFIGS) console.log(`${c.name.padEnd(w)}  ${c.smoke ? 'smoke' : '     '}  ${c.description}`);
}

/** What a probe finds: one line per virtio device. */
export function describeDevices(s: QemuSession): string[] {
  const p = s.platform;
  const out: string[] = [];
  for (const d of p.devices()) {
    const version = p.mmioRead(d.base + Mmio.VERSION, 4);
    const id = p.mmioRead(d.base + Mmio.DEVICE_ID, 4);
    out.push(`${d.name}: virtio-mmio version ${version}, device id ${id}, vector ${hex(d.vector)}`);
  }
  if (p.pci?.ecamBase !== undefined) {
    for (let dev = 0; dev < 32; dev++) {
      const addr = p.pci.ecamBase + (dev << 15);
      const id = p.mmioRead(addr, 4) >>> 0;
      if ((id & 0xffff) !== 0x1af4) continue;
      const did = id >>> 16;
      const kind = did >= 0x1040 ? `modern, device id ${did - 0x1040}` : `transitional, subsystem id ${p.mmioRead(addr + 0x2c, 4) >>> 16}`;
      out.push(`pci 00:${dev.toString(16).padStart(2, '0')}.0: virtio ${hex(did, 4)} (${kind})`);
    }
  }
  return out;
}

async function probeMain(a: QemuArgs, withDrivers = false): Promise<number> {
  const configs = resolveConfigs(a.names, a.smoke);
  const qemu = findQemu(a.qemu);
  let failed = 0;
  for (const c of configs) {
    const t0 = Date.now();
    let s: QemuSession | undefined;
    try {
      s = await launchQemu(c, { qemu, extraArgs: splitArgs(a['qemu-args']) });
      const lines = withDrivers ? await driverSmoke(s) : describeDevices(s);
      console.log(`${c.name}: QEMU pid ${s.pid} up in ${Date.now() - t0} ms`);
      for (const l of lines) console.log(`  ${l}`);
      if (lines.length === 0) {
        failed++;
        console.log('  no virtio device found');
      }
    } catch (e) {
      failed++;
      console.log(`${c.name}: ${(e as Error).message}`);
    } finally {
      await s?.close();
    }
  }
  return failed ? 1 : 0;
}

/** One line of the results table: a configuration and its counts. */
export function matrixRow(cfgName: string, r: RunReport): string {
  const s = r.summary;
  const fails = [...new Set(r.results.filter((x) => x.status === 'fail').map((x) => x.id))];
  const xf = [...new Set(r.results.filter((x) => x.status === 'xfail').map((x) => x.id))];
  return `| ${cfgName} | ${s.passed} | ${s.failed} | ${s.xfail} | ${s.skipped} | ${fails.join(', ') || '-'} | ${xf.join(', ') || '-'} |`;
}

/** `pvkit qemu matrix`: the whole suite on every (or the named) configuration, one report directory each. */
async function matrixMain(a: QemuArgs): Promise<number> {
  const configs = resolveConfigs(a.names, a.smoke);
  const qemu = findQemu(a.qemu);
  const cat = catalog();
  const rows: string[] = ['| configuration | pass | fail | xfail | skip | failing checks | expected failures |', '| --- | --- | --- | --- | --- | --- | --- |'];
  let required = 0;
  for (const c of configs) {
    configureQemuTarget({ qemu, config: c.name, extraArgs: splitArgs(a['qemu-args']) });
    const rep = await runConformance(qemuTarget, registeredChecks(), {
      target: 'qemu',
      devices: devicesOf(c),
      transports: transportsOf(c) as TransportName[],
      rings: ringsOf(c),
      seed: a.seed,
      runs: a.runs,
    });
    writeReports(rep, cat, ['json', 'junit'], `${a.out}/${c.name}`);
    required += rep.summary.requiredFailed;
    rows.push(matrixRow(c.name, rep));
    process.stderr.write(`${c.name}: ${rep.summary.passed} passed, ${rep.summary.failed} failed, ${rep.summary.xfail} xfail, ${rep.summary.skipped} skipped\n`);
  }
  configureQemuTarget({});
  console.log(rows.join('\n'));
  return required > 0 ? 1 : 0;
}

const common = (y: Argv) =>
  y
    .option('qemu', { type: 'string', describe: 'QEMU binary (default: $PVKIT_QEMU or qemu-system-x86_64 on PATH)' })
    .option('qemu-args', { type: 'string', describe: "extra arguments for QEMU's command line" })
    .option('json', { type: 'boolean', default: false, describe: 'print JSON (list)' })
    .option('smoke', { type: 'boolean', default: false, describe: 'only the CI smoke subset (when no names are given)' })
    .option('out', { type: 'string', default: 'reports/qemu', describe: 'matrix: directory for one report directory per configuration' })
    .option('runs', { type: 'number', default: 25, describe: 'matrix: fast-check runs per property check' })
    .option('seed', { type: 'number', default: 1, describe: 'matrix: run seed' });

export const qemuCommand: CommandModule<object, QemuArgs> = {
  command: 'qemu <action> [names..]',
  describe: "drive QEMU's virtio devices over qtest: list | probe | smoke | matrix [NAME...]",
  builder: (y) =>
    common(y)
      .positional('action', { choices: ['list', 'probe', 'smoke', 'matrix'] as const, describe: 'list: built-in configurations; probe: start them and show the devices; smoke: the reference drivers on them; matrix: the conformance suite on each, with a results table' })
      .positional('names', { type: 'string', array: true, describe: 'configuration names (default: all)' }) as never,
  handler: async (a) => {
    const action = (a as unknown as { action: string }).action;
    if (action === 'list') {
      listMain(a);
      return;
    }
    if (action === 'matrix') {
      if (!(Number.isInteger(a.runs) && a.runs >= 1)) throw new UsageError('usage.qemu_runs', `--runs must be a positive integer, got ${String(a.runs)}`);
      if (!Number.isSafeInteger(a.seed)) throw new UsageError('usage.qemu_seed', `--seed must be an integer, got ${String(a.seed)}`);
    }
    process.exitCode = action === 'matrix' ? await matrixMain(a) : await probeMain(a, action === 'smoke');
  },
};
