import { checkTests } from '../vitest.ts';
import './index.ts';

checkTests({ area: 'blk' });
