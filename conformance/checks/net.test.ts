import { checkTests } from '../vitest.ts';
import './index.ts';

checkTests({ area: 'net', device: 'net', runs: 8 });
