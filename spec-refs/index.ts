/**
 * `pvkit/spec-refs`: what both sides share, below drivers and device models: VIRTIO constants and
 * layouts (abi/), the GuestPlatform interface a driver is written against (platform/), the typed
 * errors, and the catalog of VIRTIO 1.4 statements the checks cite.
 */
export * from './abi/virtio.ts';
export * from './abi/virtio-pci.ts';
export * from './abi/blk-layout.ts';
export * from './abi/net.ts';
export * from './abi/packet.ts';
export * from './abi/gso.ts';
export * from './abi/pvmmu.ts';
export * from './abi/x86-paging.ts';
export * from './platform/platform.ts';
export * from './platform/guest-memory.ts';
export * from './platform/dma.ts';
export * from './errors.ts';
export { AREAS, KEYWORDS, SPEC_NAME, Catalog, CatalogError, catalog, isMandatory, loadCatalog, type Area, type CatalogEntry, type CatalogQuery, type Keyword, type Side } from './catalog.ts';
