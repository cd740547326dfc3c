import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';

/** How often the checkpoint thread looks for new commits. */
const CHECKPOINT_EVERY_MS = 50;
/** SQLite's own default, restored when the checkpoint thread is not running. */
const DEFAULT_AUTOCHECKPOINT = 1000;
/**
 * The server's connection still checkpoints past this many WAL pages (~40 MB). Only a writer restarts the WAL
 * from its beginning, and only when every frame is checkpointed as it begins: under a steady stream of commits
 * the thread rarely catches up exactly, and the WAL grew without bound (660 MB in 3,000 dispatch-latency runs).
 * The connection's own checkpoint then finds nearly every page copied and synced by the thread already.
 */
const BACKSTOP_AUTOCHECKPOINT = 10_000;

export interface Checkpointer {
  stop(): Promise<void>;
}

/**
 * Moves WAL checkpoints off the event loop (dispatch-latency, docs/performance.md). SQLite checkpoints
 * automatically inside the commit that grows the WAL past 1,000 pages: that commit copies the pages into the
 * database file and waits for two fsyncs, on the event loop, every few hundred runs (0.1 to 10 ms on an idle disk,
 * 100 ms when the disk is busy), and every run in flight waits with it. Here a second connection in a worker
 * thread checkpoints every 50 ms (PASSIVE: it never blocks the server's reads or writes), and the server's
 * connection checkpoints by itself only past BACKSTOP_AUTOCHECKPOINT pages, when nearly everything is copied and
 * synced already. Durability does not change: a commit is in the WAL exactly as before; a checkpoint only moves
 * committed pages into the database file, with the same syncs. If the thread fails, the server's connection
 * checkpoints by itself at SQLite's default again.
 */
/** Bytes a restarted WAL file keeps at most (SQLite's journal_size_limit). */
const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;

export function startCheckpointer(database: Database.Database, path: string): Checkpointer {
  const worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), { workerData: { path, intervalMs: CHECKPOINT_EVERY_MS } });
  worker.unref();
  // The WAL may grow to the backstop during a burst; when a writer restarts it, it is cut back to this size
  // instead of keeping its largest size on disk for good.
  database.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
  let stopping = false;
  const fallBack = () => {
    if (!stopping && database.open) database.pragma(`wal_autocheckpoint = ${DEFAULT_AUTOCHECKPOINT}`);
  };
  worker.on('message', (m: unknown) => {
    // Only once the thread has its connection: until then the server's connection keeps checkpointing.
    if (m === 'ready' && !stopping && database.open) database.pragma(`wal_autocheckpoint = ${BACKSTOP_AUTOCHECKPOINT}`);
    else if (typeof m === 'object' && m !== null && 'error' in m) fallBack();
  });
  worker.on('error', fallBack);
  const exited = new Promise<void>((resolve) => worker.once('exit', () => {
    fallBack();
    resolve();
  }));
  return {
    async stop() {
      if (stopping) return exited;
      stopping = true;
      // Unreferenced so that it never keeps a process alive by itself; while it closes its connection it must
      // (else a process ending with `await store.close()` exits 13, its top-level await unfinished).
      worker.ref();
      worker.postMessage('stop');
      await exited;
    },
  };
}
