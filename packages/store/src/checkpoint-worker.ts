/**
 * Runs SQLite WAL checkpoints for the server's connection in a thread of its own (see checkpointer.ts). Started by
 * `startCheckpointer` with `{ path, intervalMs }`; stops on the message 'stop' (closing its connection).
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const { path, intervalMs } = workerData as { path: string; intervalMs: number };
const db = new Database(path, { fileMustExist: true });
// The checkpoint's syncs follow this connection's setting: the same as the server's connection (connection.ts).
db.pragma('synchronous = NORMAL');
let lastVersion = -1;

const timer = setInterval(() => {
  try {
    // Only when another connection committed since the last look (data_version moves on each foreign commit).
    const version = db.pragma('data_version', { simple: true }) as number;
    if (version === lastVersion) return;
    lastVersion = version;
    // PASSIVE: never waits for, and never blocks, the server's writers and readers.
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (err) {
    // Busy or locked (the server's connection restarting or truncating the WAL at that moment): skip this
    // round and try again at the next one; falling back would put checkpoints back on the event loop for good.
    const code = (err as { code?: string }).code ?? '';
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return;
    parentPort?.postMessage({ error: (err as Error).message });
  }
}, intervalMs);

parentPort?.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort?.close();
});
parentPort?.postMessage('ready');
