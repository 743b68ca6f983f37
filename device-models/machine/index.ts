export * from './memory.ts';
export * from './bus.ts';
export * from './scheduler.ts';
export * from './vcpu.ts';
export * from './irq.ts';
export * from './cost.ts';
export * from './profiles.ts';
export { ExtentAllocator } from '../../spec-refs/platform/dma.ts';
export * from './machine.ts';
