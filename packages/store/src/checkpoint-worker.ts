import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

/**
 * Worker thread of the SQLite checkpointer (checkpointer.ts): copies committed WAL pages into the database file
 * on its own connection, so that neither the copy nor the fsync that ends it runs on the server's event loop.
 * PASSIVE checkpoints never wait for (nor block) the server's writers and readers.
 */
const { path, busyMs, idleMs } = workerData as { path: string; busyMs: number; idleMs: number };
const db = new Database(path, { fileMustExist: true });
db.pragma('synchronous = NORMAL');
db.pragma('wal_autocheckpoint = 0');

let timer: NodeJS.Timeout | undefined;
let stopped = false;
let lastLog = -1;

function tick(): void {
  let active = true;
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    // The WAL grew since the last look, or frames were left behind (written meanwhile): look again soon. A WAL
    // that is unchanged and fully copied is polled slowly (an idle server wakes this thread a few times a second).
    if (r) {
      active = r.log !== lastLog || r.checkpointed < r.log;
      lastLog = r.log;
    }
  } catch {
    // Busy or going away: the next tick tries again; the server connection's own autocheckpoint is the backstop.
  }
  if (!stopped) timer = setTimeout(tick, active ? busyMs : idleMs);
}

parentPort!.on('message', (m: unknown) => {
  if (m !== 'stop') return;
  stopped = true;
  clearTimeout(timer);
  db.close();
  parentPort!.postMessage('stopped');
});
tick();
