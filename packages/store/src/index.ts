import type { StoreConfig } from '@batchalyzer/core';
import { connect } from './connection.js';
import type { Store } from './port.js';
import { SqlStore } from './sql-store.js';
import type { OutputWarning } from './output-files.js';

export type { OutputWarning } from './output-files.js';

export * from './port.js';
export * from './errors.js';
/** For tests of the SQLite statement cache. */
export { withStatementCache } from './connection.js';
export { LATEST_SCHEMA_VERSION, type MigrationReport } from './migrate.js';

/**
 * Opens the configured store and brings its schema up to date (unless `migrate: false`). `backgroundCheckpoints`
 * (SQLite, long-lived processes such as the server): WAL checkpoints run in a worker thread instead of inside a
 * commit on the caller's event loop (checkpointer.ts). `onWarning`: trouble the store works around (an output file it
 * cannot write, output that reads as zeros), for the log; Node's process warnings (stderr) if not given.
 */
export async function openStore(
  config: StoreConfig, opts: { migrate?: boolean; backgroundCheckpoints?: boolean; onWarning?: (w: OutputWarning) => void } = {},
): Promise<Store> {
  const store = new SqlStore(await connect(config, { backgroundCheckpoints: opts.backgroundCheckpoints ?? false }), opts.onWarning);
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
