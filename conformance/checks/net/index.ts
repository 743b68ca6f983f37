/**
 * virtio-net (device-types/net/description.tex): configuration, transmit-header handling,
 * receive headers and buffers, filtering, multiqueue/RSS, coalescing and statistics of the
 * device; headers, buffers and control commands of the driver. One file per section of the
 * spec (its header lists the check ids and the statement ids they cite); rig.ts holds the rigs
 * they share. Importing this file registers every virtio-net check.
 */
import './config.ts';
import './tx.ts';
import './rx.ts';
import './out-net-header.ts';
import './hash.ts';
import './rx-filter.ts';
import './ctrl.ts';
import './mq.ts';
import './rss.ts';
import './coalescing.ts';
import './stats.ts';
