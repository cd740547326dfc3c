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
/**
 * The thread starts this long after the store opens: a short-lived process (a CLI command) closes its store
 * before and never pays for a thread; anything it wrote is checkpointed when its connection closes, as before.
 */
const START_AFTER_MS = 1000;

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
  let worker: Worker | null = null;
  let exited: Promise<void> = Promise.resolve();
  const start = () => {
    const w = new Worker(new URL('./checkpoint-worker.js', import.meta.url), { workerData: { path, intervalMs: INTERVAL_MS } });
    // The thread must never keep a process alive (a CLI command that forgot to close its store still exits).
    w.unref();
    exited = new Promise<void>((resolve) => w.once('exit', () => {
      worker = null;
      resolve();
    }));
    w.on('message', (m: { error?: string }) => {
      if (m.error) onError(m.error);
    });
    // A thread that fails to start or dies only costs the background checkpoints: the main connection's bound remains.
    w.on('error', (err) => onError(err.message));
    worker = w;
  };
  const timer = setTimeout(start, START_AFTER_MS);
  timer.unref();
  return {
    async close() {
      clearTimeout(timer);
      const w = worker;
      if (!w) return;
      // Waiting for the thread to end must keep the process alive until it has closed its connection.
      w.ref();
      w.postMessage('close');
      await exited;
    },
  };
}
