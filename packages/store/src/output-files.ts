import { closeSync, constants, fstatSync, ftruncateSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { OutputFileError } from './errors.js';

/**
 * Job output of a SQLite store, kept in append-only files beside the database (docs/storage.md, "Job output"):
 * `<db>.output/<run id / 1000>/<run id>.<stream>`. The store keeps only an index row per chunk (run, stream, seq,
 * offset, length). A blob in SQLite is written as 4 KiB overflow pages, each a WAL frame, and copied again at
 * checkpoint: three writes of every byte and ~200 syscalls per 256 KiB chunk; here a chunk is one pwrite.
 *
 * Order of writes (the caller, sql-store.ts): inside the write transaction the index row is inserted, then the
 * bytes are written here, then the transaction commits. So a committed row only ever points at bytes already
 * in the file; a kill between the write and the commit leaves bytes no row points at, which the next opening of
 * that file cuts off (`indexedEnd`), and the agent re-sends the unacknowledged chunk. Durability is that of the
 * SQLite connection with synchronous=NORMAL and no more: bytes reach the page cache before the commit, so they
 * survive a kill of the process, not a power loss (a power loss can keep an index row whose bytes never reached
 * the disk: `read` then returns zeros for them instead of failing).
 */
export class OutputFiles {
  /** Open files for appending, least recently used first; bounded so that many runs do not exhaust descriptors. */
  private readonly open = new Map<string, number>();

  constructor(readonly dir: string, private readonly maxOpen = 64) {}

  path(runId: number, stream: string): string {
    return join(this.dir, shardOf(runId), `${runId}.${stream}`);
  }

  /**
   * Where the next chunk of the run's stream goes: the end of its file. `indexedEnd` (the end of the last committed
   * chunk) is asked only when the file is not open in this process.
   */
  end(runId: number, stream: string, indexedEnd: () => number): number {
    // The file's size, not a count kept here: another store object on the same database (tests, a second process
    // by mistake) may have appended since, inside its own transaction, which SQLite's write lock kept apart.
    return fstatSync(this.get(runId, stream, indexedEnd)).size;
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

  private get(runId: number, stream: string, indexedEnd: () => number): number {
    const key = `${runId}.${stream}`;
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
      fd = openSync(file, WRITE_FLAGS, 0o640);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      mkdirSync(join(this.dir, shardOf(runId)), { recursive: true });
      fd = openSync(file, WRITE_FLAGS, 0o640);
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

  /** Reads the given ranges of a run's file into one buffer; ranges past the end of the file read as zeros. */
  async read(runId: number, stream: string, ranges: { offset: number; length: number }[]): Promise<Buffer[]> {
    let handle;
    try {
      handle = await open(this.path(runId, stream), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new OutputFileError('read', this.path(runId, stream), err as Error);
      return ranges.map((r) => Buffer.alloc(r.length));
    }
    try {
      const out: Buffer[] = [];
      for (const r of ranges) {
        const buf = Buffer.allocUnsafe(r.length);
        let got = 0;
        while (got < r.length) {
          const { bytesRead } = await handle.read(buf, got, r.length - got, r.offset + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        buf.fill(0, got);
        out.push(buf);
      }
      return out;
    } finally {
      await handle.close();
    }
  }

  /** Deletes the files of deleted runs, and whole shards of ids below `belowId` (no run there exists any more). */
  async remove(runIds: number[], belowId: number): Promise<void> {
    for (const id of runIds) {
      for (const stream of ['stdout', 'stderr']) {
        this.closeOne(`${id}.${stream}`);
        await rm(this.path(id, stream), { force: true });
      }
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

  close(): void {
    for (const key of [...this.open.keys()]) this.closeOne(key);
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

/** Not O_APPEND: Linux appends a pwrite on an O_APPEND descriptor wherever it was asked to write. */
const WRITE_FLAGS = constants.O_RDWR | constants.O_CREAT;
/** Runs per directory: ids are sequential, so a directory holds at most 2,000 files and pruning empties whole ones. */
const SHARD = 1000;
const shardOf = (runId: number) => String(Math.floor(runId / SHARD));
