import { checkTests } from '../vitest.ts';
import './index.ts';

// every check whose area has no test file of its own (new areas: vq_reset, packed, pci, net...)
checkTests({ notAreas: ['status_init', 'features', 'config_space', 'split', 'mmio', 'blk'] });
