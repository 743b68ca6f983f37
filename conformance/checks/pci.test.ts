import { checkTests } from '../vitest.ts';
import './index.ts';

checkTests({ area: 'pci', transport: 'pci', device: 'blk' });
checkTests({ area: 'pci', transport: 'pci-legacy', device: 'blk' });
