import { checkTests } from '../vitest.ts';
import './index.ts';

checkTests({ area: 'packed', transport: 'mmio', device: 'blk', ring: 'packed' });
checkTests({ area: 'packed', transport: 'pci', device: 'blk', ring: 'packed' });
