/**
 * Every registered conformance check: importing a module here registers its defineCheck() calls.
 * Only checks reachable from this file count as "checked" in `pvkit spec coverage`.
 */
import './status.ts';
import './features.ts';
import './mmio.ts';
import './split.ts';
import './blk.ts';
import './blk-zoned.ts';
import './blk-assumptions.ts';
import './config.ts';
import './pci/index.ts';
import './packed.ts';
import './net/index.ts';
