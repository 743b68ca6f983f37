/** Every conformance target pvkit knows. Add yours here (e.g. ./qemu.ts). */
import './sim.ts';
import './sim-devices.ts';
import './qemu.ts';
