/**
 * The list of REPL helpers with their usage and one line each: what `.help` prints, what tab
 * completion offers and what helpers() binds.
 */

/** Names of the helpers the REPL exposes, with one line each (for .help and tab completion). */
export const HELPERS: readonly { name: string; usage: string; what: string }[] = [
  { name: 'step', usage: 'step()', what: 'next initialisation step, one status bit at a time' },
  { name: 'init', usage: 'init()', what: 'every remaining initialisation step' },
  { name: 'reset', usage: 'reset()', what: 'reset the device; initialisation starts again' },
  { name: 'status', usage: 'status()', what: 'device status with bit names, and the next init step' },
  { name: 'features', usage: 'features()', what: 'features offered, chosen, refused, with names' },
  { name: 'want', usage: "want('INDIRECT_DESC', ...)", what: 'add features to what the driver takes (before the feature step)' },
  { name: 'refuse', usage: "refuse('EVENT_IDX', ...)", what: 'drop features from what the driver takes' },
  { name: 'ring', usage: 'ring(q = 0, {all})', what: 'the virtqueue as it is in guest memory: descriptors, rings, event idx, free / in flight / used' },
  { name: 'read', usage: 'read(sector, sectors = 1, {kick})', what: 'virtio-blk: post a read by hand (kicks unless {kick:false})' },
  { name: 'write', usage: "write(sector, 'text' | bytes, {kick})", what: 'virtio-blk: post a write by hand' },
  { name: 'flush', usage: 'flush({kick})', what: 'virtio-blk: post a flush' },
  { name: 'rx', usage: 'rx(count = 4, {kick})', what: 'virtio-net: post receive buffers on receiveq1 (queue 0)' },
  { name: 'arp', usage: "arp('10.0.2.2', {kick})", what: 'virtio-net: transmit an ARP request (the host peer 10.0.2.2 answers)' },
  { name: 'ping', usage: 'ping(seq = 1, {kick})', what: 'virtio-net: transmit an ICMP echo request to the host peer' },
  { name: 'send', usage: 'send(frameBytes, {kick})', what: 'virtio-net: transmit any Ethernet frame on transmitq1 (queue 1)' },
  { name: 'kick', usage: 'kick(q = 0)', what: 'publish added buffers and notify the device if it wants it' },
  { name: 'tick', usage: 'tick()', what: 'run ONE device event (Scheduler.runNext) and show what it caused' },
  { name: 'run', usage: 'run()', what: 'run device events until idle' },
  { name: 'collect', usage: 'collect(q?)', what: 'take interrupts (ack them) and collect used buffers (of q, or every queue): the ring drains' },
  { name: 'exits', usage: 'exits()', what: 'VM exits so far and their modelled cycles' },
  { name: 'violations', usage: 'violations()', what: 'what the conformance monitor recorded, with the spec paraphrase' },
  { name: 'spec', usage: "spec('split.driver.2')", what: 'a statement: keyword, paraphrase, spec file:line' },
  { name: 'breakRule', usage: "breakRule('bad-descriptor')", what: 'break a rule on purpose: skip-features-ok | bad-descriptor | clear-status | notify-early' },
  { name: 'driver', usage: 'driver()', what: 'hand the device to its reference driver (global `blk` or `net`)' },
  { name: 'mem', usage: 'mem(gpa, len = 64)', what: 'hex dump of guest memory' },
  { name: 'writeTrace', usage: "writeTrace('t.json')", what: 'write the Chrome trace now (with --trace)' },
  { name: 'session', usage: 'session', what: 'the Session object: machine, core, transport, monitor, queues' },
];
