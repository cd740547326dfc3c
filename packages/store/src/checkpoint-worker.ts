import { closeSync, openSync, readSync } from 'node:fs';
import { endianness } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

/**
 * Worker thread of the SQLite checkpointer (checkpointer.ts): copies committed WAL pages into the database file
 * on its own connection, so that neither the copy nor the fsyncs that end it run on the server's event loop.
 * PASSIVE checkpoints never wait for (nor block) the server's writers and readers.
 */
const { path, pollMs, idlePollMs, bulkFrames, lazyMs } = workerData as { path: string; pollMs: number; idlePollMs: number; bulkFrames: number; lazyMs: number };
const db = new Database(path, { fileMustExist: true });
db.pragma('synchronous = NORMAL');
db.pragma('wal_autocheckpoint = 0');

/**
 * Frames in the WAL not yet copied, read from the WAL-index header in `-shm` (https://www.sqlite.org/walformat.html:
 * mxFrame at byte 16, nBackfill at byte 96, in the host's byte order). A hint without locks: a torn read only
 * moves one checkpoint by a tick. Undefined when it cannot be read (then every tick checkpoints).
 */
const header = Buffer.alloc(100);
let shm = -1;
function uncopiedFrames(): number | undefined {
  try {
    if (shm < 0) shm = openSync(`${path}-shm`, 'r');
    if (readSync(shm, header, 0, header.length, 0) < header.length) return undefined;
    const le = endianness() === 'LE';
    const mxFrame = le ? header.readUInt32LE(16) : header.readUInt32BE(16);
    const backfilled = le ? header.readUInt32LE(96) : header.readUInt32BE(96);
    return mxFrame >= backfilled ? mxFrame - backfilled : mxFrame;
  } catch {
    return undefined;
  }
}

let timer: NodeJS.Timeout | undefined;
let stopped = false;
let lastCheckpoint = 0;

/**
 * A checkpoint that copies anything ends with two fsyncs (WAL, then database), so it runs when SQLite's own
 * autocheckpoint would (bulkFrames uncopied frames), or after lazyMs for a WAL that grows slowly.
 */
function tick(): void {
  const frames = uncopiedFrames();
  if (frames === undefined || frames >= bulkFrames || (frames > 0 && Date.now() - lastCheckpoint >= lazyMs)) {
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // Busy or going away: the next tick tries again; the server connection's own autocheckpoint is the backstop.
    }
    lastCheckpoint = Date.now();
  }
  if (!stopped) timer = setTimeout(tick, frames === 0 ? idlePollMs : pollMs);
}

parentPort!.on('message', (m: unknown) => {
  if (m !== 'stop') return;
  stopped = true;
  clearTimeout(timer);
  if (shm >= 0) closeSync(shm);
  db.close();
  parentPort!.postMessage('stopped');
});
tick();
