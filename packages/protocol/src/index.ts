export * from './messages.js';
export * from './parse.js';
export * from './keys.js';
export * from './binary.js';
export { dispatchPayloadOk } from './fast.js';
export * from './close.js';
