import { registerProfile } from './profiles.ts';

/**
 * The built-in cost profiles.
 *
 * PROVISIONAL (foundation commit): the numbers below are order-of-magnitude placeholders chosen
 * before the sources were looked up; each `source` says so. The paravirtual-MMU work (issue 6)
 * replaces every one of them with a cited constant. Nothing in the test suite asserts on cycles.
 */
const provisional = 'provisional order-of-magnitude placeholder, no source yet: to be replaced by a cited figure';

registerProfile({
  name: 'modern',
  description: 'a recent x86-64 host with EPT, posted interrupts off',
  ghz: 3.0,
  ghzSource: provisional,
  constants: {
    'exit.EXTERNAL_INTERRUPT': { cycles: 1500, source: provisional },
    'exit.HLT': { cycles: 2000, source: provisional },
    'exit.CPUID': { cycles: 1200, source: provisional },
    'exit.IO_INSTRUCTION': { cycles: 4000, source: provisional },
    'exit.EPT_MISCONFIG': { cycles: 4000, source: provisional },
    'exit.EPT_VIOLATION': { cycles: 5000, source: provisional },
    'exit.MSR_READ': { cycles: 1500, source: provisional },
    'exit.MSR_WRITE': { cycles: 1500, source: provisional },
    'exit.VMCALL': { cycles: 1500, source: provisional },
    'exit.CR_ACCESS': { cycles: 1500, source: provisional },
    'exit.INVLPG': { cycles: 1500, source: provisional },
    'exit.EXCEPTION_NMI': { cycles: 2000, source: provisional },
  },
});
