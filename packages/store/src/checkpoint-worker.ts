import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

/**
 * The SQLite WAL checkpointer's thread (see checkpointer.ts): its own connection to the database, which copies
 * committed WAL frames into the database file every `intervalMs`. A PASSIVE checkpoint never blocks the
 * writer and never waits for a lock; with nothing new in the WAL it only reads the WAL index.
 */
const { path, intervalMs } = workerData as { path: string; intervalMs: number };
const db = new Database(path, { fileMustExist: true });
db.pragma('busy_timeout = 0');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const timer = setInterval(() => {
  try {
    checkpoint.get();
  } catch (err) {
    // A failed checkpoint loses nothing (the frames stay in the WAL); the next one retries, and the main
    // connection's own bound (wal_autocheckpoint) still applies.
    parentPort?.postMessage({ error: (err as Error).message });
  }
}, intervalMs);
parentPort?.on('message', (m) => {
  if (m !== 'close') return;
  clearInterval(timer);
  db.close();
  parentPort?.close();
});
