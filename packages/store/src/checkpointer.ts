import { Worker } from 'node:worker_threads';

/**
 * SQLite's automatic WAL checkpoint runs inside the commit that crosses its threshold (1,000 pages): copying
 * the WAL into the database file and syncing both took 35–40 ms of a plan tick's commit (plan-100k,
 * docs/performance.md). The main connection therefore checkpoints only past a much larger bound (a safety net
 * that keeps the WAL bounded should this thread die), and a connection in a worker thread checkpoints in the
 * background instead, without blocking the writer (PASSIVE). Durability is unchanged: commits are in the WAL
 * (synchronous = NORMAL, as before) whether or not a checkpoint has copied them yet.
 */
export const MAIN_AUTOCHECKPOINT_PAGES = 10_000;
const INTERVAL_MS = 250;

export interface Checkpointer {
  close(): Promise<void>;
}

/** The first failure is reported once as a process warning (the store has no logger); later ones would only repeat it. */
function warnOnce(): (message: string) => void {
  let warned = false;
  return (message) => {
    if (warned) return;
    warned = true;
    process.emitWarning(`background SQLite WAL checkpoint failed (${message}); the main connection checkpoints past ${MAIN_AUTOCHECKPOINT_PAGES} pages instead`);
  };
}

export function startCheckpointer(path: string, onError: (message: string) => void = warnOnce()): Checkpointer {
  const worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), { workerData: { path, intervalMs: INTERVAL_MS } });
  // The thread must never keep a process alive (a CLI command that forgot to close its store still exits).
  worker.unref();
  let alive = true;
  const exited = new Promise<void>((resolve) => worker.once('exit', () => {
    alive = false;
    resolve();
  }));
  worker.on('message', (m: { error?: string }) => {
    if (m.error) onError(m.error);
  });
  // A thread that fails to start or dies only costs the background checkpoints: the main connection's bound remains.
  worker.on('error', (err) => onError(err.message));
  return {
    async close() {
      if (!alive) return;
      // Waiting for the thread to end must keep the process alive until it has closed its connection.
      worker.ref();
      worker.postMessage('close');
      await exited;
    },
  };
}
