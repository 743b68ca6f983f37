import { checkTests } from '../vitest.ts';
import './index.ts';

checkTests({ area: 'config_space' });
checkTests({ prefix: 'split.driver.used-len' });
