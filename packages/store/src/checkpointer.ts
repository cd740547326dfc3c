import { Worker } from 'node:worker_threads';

/** WAL pages after which the server's own connection checkpoints anyway (when the worker falls behind or died). */
export const BACKSTOP_PAGES = 16_384;
/** The WAL file is cut back to this size when it restarts after a burst (it does not shrink otherwise). */
export const WAL_SIZE_LIMIT = 64 * 1024 * 1024;

/**
 * SQLite WAL checkpoints off the event loop (output-stream bench, docs/performance.md). By default SQLite
 * checkpoints inside the COMMIT that pushes the WAL past 1000 pages: it copies those pages into the database file
 * and fsyncs it, on the thread that committed. For bulk output that was two thirds of the server's commit time,
 * all of it blocking the event loop. Here a worker thread with its own connection checkpoints (PASSIVE: it never
 * blocks a writer or a reader) while the server goes on committing; the server connection keeps an autocheckpoint
 * at BACKSTOP_PAGES so that the WAL stays bounded if the worker falls behind or dies.
 * Durability is unchanged: a commit is in the WAL before it returns, as before; a checkpoint only moves pages.
 */
export class Checkpointer {
  private constructor(private readonly worker: Worker) {}

  static start(path: string): Checkpointer {
    const worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), { workerData: { path, pollMs: 5, idlePollMs: 50, bulkFrames: 1000, lazyMs: 1000 } });
    // Never keeps the process alive, and a failure only leaves checkpoints to the backstop.
    worker.unref();
    worker.on('error', () => undefined);
    return new Checkpointer(worker);
  }

  /** Stops the worker (its connection closes first, so that the server's close can do the final checkpoint). */
  async stop(): Promise<void> {
    const stopped = new Promise<void>((resolve) => {
      this.worker.once('message', () => resolve());
      this.worker.once('exit', () => resolve());
    });
    this.worker.postMessage('stop');
    await Promise.race([stopped, new Promise<void>((r) => setTimeout(r, 2_000).unref())]);
    await this.worker.terminate();
  }
}
