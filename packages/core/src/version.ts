/** The product version, reported by `batchalyzer version`, the health endpoint and the agent handshake. */
export const VERSION = '0.1.0';
