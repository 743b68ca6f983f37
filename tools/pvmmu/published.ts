import type { TableMode, Workload } from './sim.ts';

/**
 * Published figures the simulation is compared with. Nothing here feeds the model except through
 * the calibrations named in device-models/machine/profile-data.ts.
 */

/**
 * [MOLNAR07] Ingo Molnar, kvm-paravirt announcement, lkml, January 2007. Columns: native, QEMU,
 * KVM upstream, KVM trunk, KVM trunk + paravirt cr3. ctxsw-2 in µs per switch (lmbench lat_ctx,
 * 2 tasks), hackbench in seconds. The mapping to pvkit's modes: QEMU = full emulation; KVM
 * upstream (shadow page tables thrown away at every CR3 switch) = shadow-nocache; KVM trunk
 * (shadow page cache) = shadow-cache; trunk + paravirt cr3 = shadow-paravirt-cr3. There is no
 * EPT column: EPT arrived with Nehalem in 2008.
 */
export const MOLNAR07: Partial<Record<TableMode, Record<Workload, number>>> = {
  native: { 'ctxsw-2': 1.11, 'hackbench-1': 0.25, 'hackbench-5': 0.9 },
  'full-emulation': { 'ctxsw-2': 61.18, 'hackbench-1': 7.8, 'hackbench-5': 35.2 },
  'shadow-nocache': { 'ctxsw-2': 53.01, 'hackbench-1': 2.8, 'hackbench-5': 9.4 },
  'shadow-cache': { 'ctxsw-2': 6.36, 'hackbench-1': 0.55, 'hackbench-5': 2.8 },
  'shadow-paravirt-cr3': { 'ctxsw-2': 1.6, 'hackbench-1': 0.36, 'hackbench-5': 2.2 },
};

/**
 * [YONGHE24] Yong He, kvm list 2024: lmbench context-switch latency (µs) for 2..8 processes,
 * KPTI on, Ice Lake server, EPT off, previous-roots LRU of 3 vs 11.
 */
export const YONGHE24: Record<3 | 11, number[]> = {
  3: [4.857, 6.802, 7.518, 7.836, 7.77, 7.287, 7.271],
  11: [4.654, 5.518, 6.292, 6.516, 6.512, 7.135, 7.27],
};
