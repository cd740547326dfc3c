export { createServer, type BatchalyzerServer } from './server.js';
export { EventBus, type ServerEvents } from './events.js';
export type { Service } from './lifecycle.js';
export type * from './link.js';
export * from './engine/index.js';
