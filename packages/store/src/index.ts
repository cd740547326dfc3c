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
 * (SQLite, long-lived processes such as the server): WAL checkpoints run in a worker thread instead of inside a
 * commit on the caller's event loop (checkpointer.ts).
 */
export async function openStore(config: StoreConfig, opts: { migrate?: boolean; backgroundCheckpoints?: boolean } = {}): Promise<Store> {
  const store = new SqlStore(await connect(config, { backgroundCheckpoints: opts.backgroundCheckpoints ?? false }));
  if (opts.migrate !== false) {
    try {
      await store.migrate();
    } catch (err) {
      await store.close().catch(() => undefined);
      throw err;
    }
  }
  return store;
}
