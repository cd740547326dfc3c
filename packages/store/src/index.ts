import type { StoreConfig } from '@batchalyzer/core';
import { connect } from './connection.js';
import type { Store } from './port.js';
import { SqlStore } from './sql-store.js';

export * from './port.js';
export * from './errors.js';
/** For tests of the SQLite statement cache. */
export { withStatementCache } from './connection.js';
export { LATEST_SCHEMA_VERSION, type MigrationReport } from './migrate.js';

/**
 * Opens the configured store and brings its schema up to date (unless `migrate: false`). `backgroundCheckpoints`
 * (the server): SQLite WAL checkpoints run in a worker thread instead of inside commits (checkpointer.ts).
 */
export async function openStore(config: StoreConfig, opts: { migrate?: boolean; backgroundCheckpoints?: boolean } = {}): Promise<Store> {
  const store = new SqlStore(connect(config));
  if (opts.migrate !== false) {
    try {
      await store.migrate();
    } catch (err) {
      await store.close().catch(() => undefined);
      throw err;
    }
  }
  if (opts.backgroundCheckpoints) store.startBackgroundCheckpoints();
  return store;
}
