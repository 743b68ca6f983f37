/**
 * `pvkit/conformance`: the VIRTIO 1.4 checks and what runs them. Importing it registers the
 * built-in targets ('sim', 'qemu') and every built-in check, as `pvkit conformance` sees them.
 * - defineCheck / registeredChecks: write a check (its statement ids cited) or list them;
 * - runConformance, getTarget, registerSimDevice: run checks against a target, your device included;
 * - attachMonitor: watch a machine's bus and rings and name each statement a driver or device breaks;
 * - createMachine, simBlk, NetTestbed: machines with devices attached, for your driver or tests;
 * - writeReports: the console, JSON, JUnit and HTML reports.
 * For vitest: `pvkit/conformance/vitest` (checkTests, monitorMachine).
 */
import './targets/index.ts';
import './checks/index.ts';

export * from './check.ts';
export * from './target.ts';
export * from './runner.ts';
export * from './report.ts';
export * from './monitor.ts';
export * from './hostile.ts';
export * from './targets/sim.ts';
export { configureQemuTarget, qemuTarget, type QemuTargetOptions } from './targets/qemu.ts';
export * from './harness/machine.ts';
export * from './harness/blk.ts';
export * from './harness/net.ts';
