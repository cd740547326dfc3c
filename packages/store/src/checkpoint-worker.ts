import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

/**
 * Worker thread of the SQLite checkpointer (checkpointer.ts): copies committed WAL pages into the database file
 * on its own connection, so that neither the copy nor the fsync that ends it runs on the server's event loop.
 * PASSIVE checkpoints never wait for (nor block) the server's writers and readers.
 */
const { path, busyMs, quietMs, idleMs, bulkFrames } = workerData as { path: string; busyMs: number; quietMs: number; idleMs: number; bulkFrames: number };
const db = new Database(path, { fileMustExist: true });
db.pragma('synchronous = NORMAL');
db.pragma('wal_autocheckpoint = 0');

let timer: NodeJS.Timeout | undefined;
let stopped = false;
let lastLog = -1;

/**
 * Each checkpoint that copies anything ends with two fsyncs (WAL, then database), so the pace follows the WAL:
 * again at once while bulk writes (output) fill it or frames were left behind, at most ten times a second while
 * small commits trickle in, four times a second when nothing changed.
 */
function tick(): void {
  let next = idleMs;
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    if (r && (r.log !== lastLog || r.checkpointed < r.log)) next = r.log >= bulkFrames || r.checkpointed < r.log ? busyMs : quietMs;
    lastLog = r?.log ?? -1;
  } catch {
    // Busy or going away: the next tick tries again; the server connection's own autocheckpoint is the backstop.
  }
  if (!stopped) timer = setTimeout(tick, next);
}

parentPort!.on('message', (m: unknown) => {
  if (m !== 'stop') return;
  stopped = true;
  clearTimeout(timer);
  db.close();
  parentPort!.postMessage('stopped');
});
tick();
