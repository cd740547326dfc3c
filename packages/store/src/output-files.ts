import { closeSync, constants, fstatSync, ftruncateSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { OutputFileError } from './errors.js';

/** Something about job output files that an operator should see in the log; the store goes on. */
export interface OutputWarning {
  code: 'output_file_fallback' | 'output_read_zeros' | 'output_remove_failed';
  message: string;
  path: string;
}

/**
 * Job output of a SQLite store, kept in append-only files beside the database (docs/storage.md, "Job output"):
 * `<db>.output/<run id / 1000>/<run id>.<stream>`. The store keeps only an index row per chunk (run, stream, seq,
 * offset, length). A blob in SQLite is written as 4 KiB overflow pages, each a WAL frame, and copied again at
 * checkpoint: three writes of every byte and ~200 syscalls per 256 KiB chunk; here a chunk is one pwrite.
 *
 * Order of writes (the caller, sql-store.ts): inside the write transaction the index row is inserted, then the
 * bytes are written here, then the transaction commits. So a committed row only ever points at bytes already
 * in the file; a kill between the write and the commit leaves bytes no row points at, which the next opening of
 * that file cuts off (`indexedEnd`), and the agent re-sends the unacknowledged chunk. A transaction that fails
 * without a kill (a constraint, a full disk) cuts its bytes off at once (`rollback`) and closes the files; a
 * failed COMMIT, whose outcome can be unknown, only closes them (`forget`): either way the next opening cuts the
 * file to the end its committed index rows give, and the next chunk goes there. Durability is that of the
 * SQLite connection with synchronous=NORMAL and no more: bytes reach the page cache before the commit, so they
 * survive a kill of the process, not a power loss (a power loss can keep an index row whose bytes never reached
 * the disk: `read` then returns zeros for them, with a warning, instead of failing). Files are 0600 and
 * directories 0700: job output can hold secrets.
 */
export class OutputFiles {
  /** Open files for appending, least recently used first; bounded so that many runs do not exhaust descriptors. */
  private readonly open = new Map<string, number>();
  /** Files whose chunks went to blobs (`fellBack`), warned about once each; bounded, it only rate-limits the log. */
  private readonly warned = new Set<string>();
  /** Deletions after prunes, one after another, off the scheduling pass; `close` waits for them. */
  private removing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(readonly dir: string, private readonly warn: (w: OutputWarning) => void, private readonly maxOpen = 64) {}

  path(runId: number, stream: string): string {
    // Both end up in a file name: anything else could name a file outside the directory.
    if (!Number.isSafeInteger(runId) || runId <= 0) throw new Error(`output file: run id ${runId} is not a positive integer (internal error)`);
    if (stream !== 'stdout' && stream !== 'stderr') throw new Error(`output file: stream ${JSON.stringify(stream)} is not stdout or stderr (internal error)`);
    return join(this.dir, shardOf(runId), `${runId}.${stream}`);
  }

  /**
   * The end of the run's file if it is open in this process (no file system change), else undefined. Records the
   * file in `touched` as `end` does.
   */
  openEnd(runId: number, stream: string, touched: Touched): number | undefined {
    const key = `${runId}.${stream}`;
    const fd = this.open.get(key);
    if (fd === undefined) return undefined;
    let size: number;
    try {
      size = fstatSync(fd).size;
    } catch {
      this.closeOne(key);
      return undefined;
    }
    if (!touched.has(key)) touched.set(key, size);
    return size;
  }

  /**
   * Where the next chunk of the run's stream goes: the end of its file. `indexedEnd` (the end of the last committed
   * chunk) is asked only when the file is not open in this process. The file's size before the transaction's first
   * write is kept in `touched`, for `rollback`.
   */
  end(runId: number, stream: string, indexedEnd: () => number, touched: Touched): number {
    // The file's size, not a count kept here: another store object on the same database (tests, a second process
    // by mistake) may have appended since, inside its own transaction, which SQLite's write lock kept apart.
    const known = this.openEnd(runId, stream, touched);
    if (known !== undefined) return known;
    const fd = this.get(runId, stream, indexedEnd);
    try {
      const size = fstatSync(fd).size;
      const key = `${runId}.${stream}`;
      if (!touched.has(key)) touched.set(key, size);
      return size;
    } catch (err) {
      this.closeOne(`${runId}.${stream}`);
      throw new OutputFileError('open', this.path(runId, stream), err as Error);
    }
  }

  /**
   * Writes `data` at `at`, which must be what `end` returned, and moves the end on. Synchronous: the caller runs
   * `end` and `append` inside one synchronous SQLite transaction, so appends to one file never interleave.
   */
  append(runId: number, stream: string, data: Buffer, at: number): void {
    const key = `${runId}.${stream}`;
    const fd = this.open.get(key);
    if (fd === undefined) throw new Error(`output file ${key}: append without end() (internal error)`);
    try {
      for (let done = 0; done < data.length;) done += writeSync(fd, data, done, data.length - done, at + done);
    } catch (err) {
      // Part of the chunk may be in the file: forget the descriptor, so the next append re-derives the end.
      this.closeOne(key);
      throw new OutputFileError('write', this.path(runId, stream), err as Error);
    }
  }

  /**
   * The transaction that wrote into the `touched` files did not commit: cuts each back to its size before the
   * transaction, and closes it, so that its next opening also checks it against the index. Must run before
   * anything else can write (synchronously after the failure): the sizes are only right until then.
   */
  rollback(touched: Touched): void {
    for (const [key, size] of touched) {
      const fd = this.open.get(key);
      if (fd === undefined) continue; // closed since (evicted, or a failed write): the next opening cuts it
      try {
        ftruncateSync(fd, size);
      } catch {
        // the next opening cuts it to the indexed end
      }
      this.closeOne(key);
    }
    touched.clear();
  }

  /**
   * The transaction that wrote into the `touched` files failed at COMMIT, and may or may not have committed: closes
   * them without cutting anything, so that their next opening cuts each to the end its index rows really give.
   */
  forget(touched: Touched): void {
    for (const key of touched.keys()) if (this.open.has(key)) this.closeOne(key);
    touched.clear();
  }

  /** A chunk of this file goes to a blob in the store instead (`err`): says so once per file. */
  fellBack(runId: number, stream: string, err: OutputFileError): void {
    const key = `${runId}.${stream}`;
    if (this.warned.has(key)) return;
    if (this.warned.size >= 10_000) this.warned.clear();
    this.warned.add(key);
    this.warn({
      code: 'output_file_fallback',
      path: this.path(runId, stream),
      message: `${err.message}. Until it can be written, run ${runId}'s ${stream} is stored inside the database (nothing is lost; ` +
        'this is said once per file)',
    });
  }

  /** Reads the given ranges of a run's file into one buffer; ranges past the end of the file read as zeros. */
  async read(runId: number, stream: string, ranges: { offset: number; length: number }[]): Promise<Buffer[]> {
    const path = this.path(runId, stream);
    const zeros = (what: string) => this.warn({
      code: 'output_read_zeros',
      path,
      message: `job output file ${path} ${what}, so that part of run ${runId}'s ${stream} reads as zero bytes; ` +
        'this follows a power loss (output is not fsynced) or a file removed by hand',
    });
    let handle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new OutputFileError('read', path, err as Error);
      if (ranges.some((r) => r.length > 0)) zeros('is missing');
      return ranges.map((r) => Buffer.alloc(r.length));
    }
    try {
      const out: Buffer[] = [];
      let short = false;
      for (const r of ranges) {
        const buf = Buffer.allocUnsafe(r.length);
        let got = 0;
        while (got < r.length) {
          const { bytesRead } = await handle.read(buf, got, r.length - got, r.offset + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        if (got < r.length) short = true;
        buf.fill(0, got);
        out.push(buf);
      }
      if (short) zeros('is shorter than its index');
      return out;
    } finally {
      await handle.close();
    }
  }

  /**
   * Deletes, in the background, the files of deleted runs that had file output, and whole shards of ids below
   * `belowId` (no run there exists any more, so their runs' files go with the shard, not one by one). Errors are
   * warnings: a file left behind is removed with its shard by a later prune.
   */
  removeLater(runIds: number[], belowId: number): void {
    for (const id of runIds) for (const stream of ['stdout', 'stderr']) this.closeOne(`${id}.${stream}`);
    const single = runIds.filter((id) => (Math.floor(id / SHARD) + 1) * SHARD > belowId);
    this.removing = this.removing.then(() => this.remove(single, belowId)).catch((err: Error) => {
      this.warn({ code: 'output_remove_failed', path: this.dir, message: `could not delete job output files of pruned runs under ${this.dir}: ${err.message}; a later prune tries again` });
    });
  }

  private async remove(runIds: number[], belowId: number): Promise<void> {
    for (const id of runIds) {
      for (const stream of ['stdout', 'stderr']) await rm(this.path(id, stream), { force: true });
    }
    // Files left by a kill between a prune's commit and its deletions, or by chunks of runs that were never committed.
    let shards: string[];
    try {
      shards = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const s of shards) {
      if (/^\d+$/.test(s) && (Number(s) + 1) * SHARD <= belowId) await rm(join(this.dir, s), { recursive: true, force: true });
    }
  }

  /** After the store's last statement: a later `end` would open a descriptor that nothing closes. */
  async close(): Promise<void> {
    this.closed = true;
    await this.removing;
    for (const key of [...this.open.keys()]) this.closeOne(key);
  }

  private get(runId: number, stream: string, indexedEnd: () => number): number {
    const key = `${runId}.${stream}`;
    if (this.closed) throw new Error(`output file ${key}: the store is closed (internal error)`);
    let fd = this.open.get(key);
    if (fd !== undefined) {
      this.open.delete(key);
    } else {
      const end = indexedEnd();
      try {
        fd = this.openForAppend(runId, stream, end);
      } catch (err) {
        throw new OutputFileError('open', this.path(runId, stream), err as Error);
      }
      while (this.open.size >= this.maxOpen) this.closeOne(this.open.keys().next().value!);
    }
    this.open.set(key, fd);
    return fd;
  }

  private openForAppend(runId: number, stream: string, end: number): number {
    const file = this.path(runId, stream);
    let fd: number;
    try {
      fd = openSync(file, WRITE_FLAGS, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // The mode is masked by the umask; 0700 so that nobody but the server lists or enters them.
      mkdirSync(join(this.dir, shardOf(runId)), { recursive: true, mode: 0o700 });
      fd = openSync(file, WRITE_FLAGS, 0o600);
    }
    try {
      // Longer: bytes written before a kill and never committed, nothing points at them. Shorter (a power loss
      // kept index rows whose bytes never reached the disk): zeros up to the indexed end, so that the next chunk
      // does not land inside a committed one.
      if (fstatSync(fd).size !== end) ftruncateSync(fd, end);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    return fd;
  }

  private closeOne(key: string): void {
    const fd = this.open.get(key);
    if (fd === undefined) return;
    this.open.delete(key);
    try {
      closeSync(fd);
    } catch {
      // already closed: nothing to release
    }
  }
}

/** Files written by one transaction, with each one's size before it: `key` → size. */
export type Touched = Map<string, number>;

/** Not O_APPEND: Linux appends a pwrite on an O_APPEND descriptor wherever it was asked to write. */
const WRITE_FLAGS = constants.O_RDWR | constants.O_CREAT;
/** Runs per directory: ids are sequential, so a directory holds at most 2,000 files and pruning empties whole ones. */
const SHARD = 1000;
const shardOf = (runId: number) => String(Math.floor(runId / SHARD));
