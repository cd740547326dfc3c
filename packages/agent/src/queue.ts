import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  close, closeSync, constants, existsSync, fstatSync, fdatasync, fdatasyncSync, fsync, fsyncSync, ftruncateSync, mkdirSync, open, openSync, readdirSync, readFileSync, readSync, rm, writeSync, writev,
  writevSync,
} from 'node:fs';
import { join } from 'node:path';
import type { QueueItem } from '@batchalyzer/protocol';

type WireOutput = Extract<QueueItem, { kind: 'output' }>;
/** An item as the agent holds it: output bytes stay raw (protocol 2 sends them as they are; base64 only for 1). */
export type AgentItem = Exclude<QueueItem, { kind: 'output' }> | (Omit<WireOutput, 'data'> & { data: Buffer });

/**
 * The agent's disk-backed outbound queue (brief §8): every item gets a sequence number, is appended to a
 * segment file and fsynced — before it may be sent in protocols 1–2; in protocol 3 it is sent at once and the
 * server acknowledges nothing beyond the reported durable sequence — and is forgotten only once the server
 * acknowledged its sequence (and it is durable). After a reconnect or a restart the unacknowledged items are sent again, in order.
 *
 * Layout in `<data>/queue/`: `id` (the queue id, new when the directory is new), `acked` (highest acked
 * sequence), `NNNNNNNN.log` segments of records. A record is a JSON line `{"seq":n,"item":{…}}`; an output
 * item's bytes follow its line raw (`{"seq":n,"item":{…no data…},"bytes":N}\n` + N bytes), so bulk output is
 * neither base64-encoded nor JSON-escaped (lines with base64 `data`, written by earlier versions, still load).
 * A torn last record (crash while writing) is cut off at start.
 *
 * Group commit: items appended while a batch is written (bulk output in the thread pool, so the event loop keeps
 * reading job output and sending; small batches on the loop, SYNC_WRITE_BYTES) are written together by the next
 * one; writes that landed while an fdatasync ran are fsynced together by the next sync round, which runs beside
 * the writes (commitAsync, sync). Writes are positional (each batch at the offset reserved for it), one batch at a
 * time, so a segment never has a hole. `durableSeq`
 * only moves after an fsync returned. Protocol 1–2 links send only items up to it; a protocol-3 link sends every
 * appended item at once (`lastSeq`) and reports `durableSeq` to the server, which acknowledges nothing beyond it,
 * and `ack` never forgets beyond it either: so nothing the server acknowledged can be lost by a crash, and no
 * sequence number the server took can be lost from this disk and reused. An item's bytes stay in memory until the
 * link sent them (within the memory budget), so that a steady stream is never read back from disk.
 */
interface Entry {
  seq: number;
  runId: number;
  item: AgentItem | null;
  segment: number;
  offset: number;
  length: number;
}

const SEGMENT_BYTES = 8 * 1024 * 1024;
/**
 * Batches up to this size are written on the loop, straight into the page cache: through the thread pool a write of
 * a run's few hundred bytes of reports cost ~40 µs of CPU in hand-overs against ~4 µs (e2e-true: ~2 writes a run).
 * Output in bulk keeps the pool, so that a write the kernel makes wait (dirty-page throttling) holds a pool thread,
 * not the loop.
 */
const SYNC_WRITE_BYTES = 16 * 1024;
/** How long small batches go to the thread pool after one written on the loop was slow (DiskQueue.open, slowWriteMs). */
const POOL_AFTER_SLOW_WRITE_MS = 1000;
/** How long an acknowledged sequence may wait before it is written to `acked` (a stale file only means re-sends). */
const ACKED_WRITE_MS = 100;

/** The on-disk record of an item: its JSON line, followed by the raw output bytes for an output item. */
function encodeRecord(seq: number, item: AgentItem): Buffer[] {
  if (item.kind !== 'output') return [Buffer.from(`${JSON.stringify({ seq, item })}\n`)];
  const { data, ...rest } = item;
  return [Buffer.from(`${JSON.stringify({ seq, item: rest, bytes: data.length })}\n`), data];
}

/** Parses the record at `offset`; undefined when it is torn or garbled. */
function decodeRecord(buf: Buffer, offset: number): { seq: number; item: AgentItem; end: number } | undefined {
  const nl = buf.indexOf(10, offset);
  if (nl < 0) return undefined;
  let parsed: { seq: number; item: Record<string, unknown>; bytes?: number };
  try {
    parsed = JSON.parse(buf.toString('utf8', offset, nl));
  } catch {
    return undefined;
  }
  let end = nl + 1;
  let item = parsed.item as AgentItem;
  if (typeof parsed.bytes === 'number') {
    if (end + parsed.bytes > buf.length) return undefined;
    item = { ...parsed.item, data: Buffer.from(buf.subarray(end, end + parsed.bytes)) } as AgentItem;
    end += parsed.bytes;
  } else if (item.kind === 'output' && typeof parsed.item.data === 'string') {
    item = { ...parsed.item, data: Buffer.from(parsed.item.data, 'base64') } as AgentItem;
  }
  return { seq: parsed.seq, item, end };
}

/** The parts after the first `n` bytes (after a short write). */
function skip(parts: Buffer[], n: number): Buffer[] {
  let i = 0;
  while (i < parts.length && n >= parts[i]!.length) n -= parts[i++]!.length;
  const rest = parts.slice(i);
  if (n > 0) rest[0] = rest[0]!.subarray(n);
  return rest;
}

/** Positional writev, continued after a short write (no concatenation copy of the output bytes). */
function writeAllSync(fd: number, parts: Buffer[], position: number): void {
  let rest = parts;
  while (rest.length) {
    const n = writevSync(fd, rest.slice(0, 1024), position);
    position += n;
    rest = skip(rest, n);
  }
}

/** The same in the thread pool. */
function writeAll(fd: number, parts: Buffer[], position: number, cb: (err: Error | null) => void): void {
  if (parts.length === 0) return cb(null);
  writev(fd, parts.slice(0, 1024), position, (err, n) => (err ? cb(err) : writeAll(fd, skip(parts, n), position + n, cb)));
}

function fsyncDirectorySync(dir: string): void {
  const d = openSync(dir, 'r');
  try {
    fsyncSync(d);
  } finally {
    closeSync(d);
  }
}

function fsyncDirectory(dir: string, cb: (err: Error | null) => void): void {
  open(dir, 'r', (err, d) => {
    if (err) return cb(err);
    fsync(d, (e) => close(d, () => cb(e)));
  });
}

/** Segments are written at explicit offsets (pwritev): not opened for append, where Linux ignores the offset. */
const SEGMENT_FLAGS = constants.O_WRONLY | constants.O_CREAT;

/** A batch handed to the thread pool: kept until its fsync returned, so that flush() can write it again. */
interface Batch {
  fd: number;
  parts: Buffer[];
  position: number;
  upTo: number;
  /** Its items (a protocol-3 link may need one again before the write has landed: the bytes are not in the file yet). */
  items: AgentItem[];
  /** Bytes of the batch (still counted as backlog until written). */
  bytes: number;
  /** The queue directory must be fsynced too (the batch starts a new segment) before its items are durable. */
  syncDir: boolean;
}

export class DiskQueue extends EventEmitter {
  readonly queueId: string;
  private readonly dir: string;
  private entries: Entry[] = [];
  private head = 0;
  private ackedSeq: number;
  private nextSeq: number;
  /** Highest sequence fsynced. */
  private durable: number;
  /** Highest sequence written (maybe not yet fsynced). */
  private written: number;
  private segment = 0;
  private fd = -1;
  private size = 0;
  private segmentMax = new Map<number, number>();
  /** Appended, not yet handed to a write; contiguous sequences. `released`: the link sent it before its write. */
  private pending: { seq: number; item: AgentItem; parts: Buffer[]; length: number; released?: boolean }[] = [];
  private pendingSize = 0;
  private flushScheduled = false;
  /** The batch being written in the thread pool (one at a time, so that a segment never has a hole). */
  private inflight: Batch | undefined;
  /** Highest sequence whose write has landed (maybe not yet fsynced). */
  private landed = 0;
  /** Segment descriptors with landed writes not yet fsynced, and whether the directory needs it too. */
  private unsynced = new Set<number>();
  private unsyncedDir = false;
  /** The sync round running in the thread pool. */
  private syncing: { fds: number[]; dir: boolean; upTo: number } | undefined;
  /** Descriptors of earlier segments, closed once the thread pool is done with them. */
  private closeAfterSync: number[] = [];
  /** A segment was created whose directory entry is not yet fsynced. */
  private dirDirty = false;
  private memBytes = 0;
  private durableWaiters: { seq: number; cb: () => void }[] = [];
  private ackedTimer: NodeJS.Timeout | undefined;
  private ackedOnDisk: number;
  private ackedFd = -1;
  /** The `acked` value last fdatasynced, and whether the file was created by this process (its entry not synced). */
  private ackedSynced = -1;
  private ackedNew = false;

  /** A sync round waiting for SYNC gap to pass (see open()). */
  private syncTimer: NodeJS.Timeout | undefined;
  private lastRoundAt = -Infinity;

  /** A small batch written on the loop slower than this sends small batches to the thread pool until poolUntil. */
  private slowWriteMs = 1;
  private poolUntil = 0;

  private constructor(dir: string, private readonly memoryBudget: number, private readonly syncGapMs: number) {
    super();
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
    const idFile = join(dir, 'id');
    // An empty id (a power loss right after the first start left the file but not its bytes) would fail every hello:
    // a new id is a new queue for the server, which is what an agent whose queue was lost is.
    let id = existsSync(idFile) ? readFileSync(idFile, 'utf8').trim() : '';
    if (id === '') {
      id = randomUUID();
      const fd = openSync(idFile, 'w');
      try {
        writeSync(fd, id);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      fsyncDirectorySync(dir);
    }
    this.queueId = id;
    const ackedFile = join(dir, 'acked');
    this.ackedSeq = existsSync(ackedFile) ? Number(readFileSync(ackedFile, 'utf8').trim()) || 0 : 0;
    this.ackedOnDisk = this.ackedSeq;
    this.nextSeq = this.ackedSeq + 1;
    this.load();
    this.durable = this.nextSeq - 1;
    this.written = this.durable;
    this.landed = this.durable;
  }

  /**
   * `syncGapMs`: the least time between the starts of two sync rounds. 0 (the default) syncs as soon as a write
   * lands, which protocols 1–2 need (they send only durable items). A protocol-3 agent sends before the sync and
   * nothing on its critical path waits for one, while every round is a device flush that other writers' syncs
   * queue behind: spacing the rounds (5 ms) leaves the disk to them. `slowWriteMs`: a small batch written on the
   * loop that took longer sends the next second's small batches to the thread pool (SYNC_WRITE_BYTES).
   */
  static open(dir: string, memoryBudget = 8 * 1024 * 1024, opts: { syncGapMs?: number; slowWriteMs?: number } = {}): DiskQueue {
    const q = new DiskQueue(dir, memoryBudget, opts.syncGapMs ?? 0);
    if (opts.slowWriteMs !== undefined) q.slowWriteMs = opts.slowWriteMs;
    return q;
  }

  private load(): void {
    const segs = readdirSync(this.dir).filter((f) => /^\d{8}\.log$/.test(f)).sort();
    let loadedAny = false;
    for (const f of segs) {
      const n = Number(f.slice(0, 8));
      const path = join(this.dir, f);
      const buf = readFileSync(path);
      let offset = 0;
      let max = 0;
      while (offset < buf.length) {
        const r = decodeRecord(buf, offset);
        if (!r) break;
        max = Math.max(max, r.seq);
        if (r.seq > this.ackedSeq) {
          const length = r.end - offset;
          const keep = this.memBytes + length <= this.memoryBudget;
          if (keep) this.memBytes += length;
          this.entries.push({ seq: r.seq, runId: r.item.runId, item: keep ? r.item : null, segment: n, offset, length });
        }
        this.nextSeq = Math.max(this.nextSeq, r.seq + 1);
        offset = r.end;
      }
      if (buf.length > 0) {
        // A torn or garbled tail from a crash mid-write: cut it so that appends continue on a clean record.
        // And sync what was found: a killed process may have left records in the page cache that it never
        // fsynced; they count as durable from here on (reported to a protocol-3 server, which then acknowledges
        // them), so they must survive a power failure after this restart.
        const fd = openSync(path, 'r+');
        try {
          if (offset < buf.length) ftruncateSync(fd, offset);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
        loadedAny = true;
      }
      this.segmentMax.set(n, max);
      this.segment = n;
    }
    if (loadedAny) fsyncDirectorySync(this.dir); // the segments' directory entries, for the same reason
    this.openSegment(segs.length ? this.segment : 1);
    // `acked` may be in the page cache only (a killed process wrote it): it must be on disk before the segments it
    // makes droppable go, or a power loss would bring back an older `acked` with those segments gone (see ack()).
    if (this.hasAckedSegment() && existsSync(join(this.dir, 'acked'))) {
      const fd = openSync(join(this.dir, 'acked'), 'r+');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      fsyncDirectorySync(this.dir);
    }
    this.dropAckedSegments();
  }

  private openSegment(n: number): void {
    if (this.fd >= 0) {
      // Closing an fd while the thread pool writes or fsyncs it could write to (or fsync) an unrelated reused fd.
      if (this.fdBusy(this.fd)) this.closeAfterSync.push(this.fd);
      else closeSync(this.fd);
    }
    this.segment = n;
    this.fd = openSync(join(this.dir, `${String(n).padStart(8, '0')}.log`), SEGMENT_FLAGS);
    this.size = fstatSync(this.fd).size;
    // A new segment's directory entry: fdatasync of the file does not cover it (power loss; once per segment).
    // The batch that first writes into it fsyncs the directory too, before its items become durable (in the
    // thread pool: done here, on the event loop, it was ~5 % of the agent's time streaming output).
    if (this.size === 0) this.dirDirty = true;
    if (!this.segmentMax.has(n)) this.segmentMax.set(n, 0);
  }

  /** Assigns the next sequence number; the item is durable after the next group commit (and sendable then in protocols 1–2, at once in 3). */
  append(item: AgentItem): number {
    const seq = this.nextSeq++;
    const parts = encodeRecord(seq, item);
    const length = parts.reduce((n, p) => n + p.length, 0);
    this.pending.push({ seq, item, parts, length });
    this.pendingSize += length;
    this.schedule();
    this.emit('appended', seq);
    return seq;
  }

  private schedule(): void {
    if (this.flushScheduled || this.inflight) return; // a running write schedules the next one when it returns
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.commitAsync();
    });
  }

  /** Bytes appended but not yet written: job output pauses while this is high (backpressure). */
  get pendingBytes(): number {
    return this.pendingSize + (this.inflight?.bytes ?? 0);
  }

  /** Whether this item's bytes may still be read by a write (pending, or in the batch the thread pool writes). */
  writing(seq: number): boolean {
    return seq > this.landed || this.inflightItem(seq) !== undefined;
  }

  /** Calls `cb` once every item up to `seq` is durable (at once when it is already). */
  onDurable(seq: number, cb: () => void): void {
    if (seq <= this.durable) cb();
    else this.durableWaiters.push({ seq, cb });
  }

  /** Reserves the pending items' place at the end of the segment; the caller writes the returned batch. */
  private takePending(): Batch {
    const batch = this.pending;
    this.pending = [];
    const bytes = this.pendingSize;
    this.pendingSize = 0;
    if (this.size > SEGMENT_BYTES) this.openSegment(this.segment + 1);
    const parts: Buffer[] = [];
    for (const b of batch) parts.push(...b.parts);
    const position = this.size;
    for (const b of batch) {
      const keep = !b.released && this.memBytes + b.length <= this.memoryBudget;
      if (keep) this.memBytes += b.length;
      this.entries.push({ seq: b.seq, runId: b.item.runId, item: keep ? b.item : null, segment: this.segment, offset: this.size, length: b.length });
      this.size += b.length;
      this.segmentMax.set(this.segment, b.seq);
    }
    this.written = batch[batch.length - 1]!.seq;
    const syncDir = this.dirDirty;
    this.dirDirty = false;
    return { fd: this.fd, parts, position, upTo: this.written, items: batch.map((b) => b.item), bytes, syncDir };
  }

  /**
   * Writes what is pending in the thread pool, one batch at a time; each write that lands is fsynced by the next
   * sync round (sync). Writes go on while a round's fdatasync runs, so the fsync neither holds back the next
   * write nor, through the backlog, the job's output pipes (output-stream: the pipes were paused half the time).
   */
  private commitAsync(): void {
    if (this.pending.length === 0 || this.inflight || this.fd < 0) return;
    const batch = this.takePending();
    let size = 0;
    for (const p of batch.parts) size += p.length;
    if (size <= SYNC_WRITE_BYTES && performance.now() >= this.poolUntil) {
      const t = performance.now();
      try {
        writeAllSync(batch.fd, batch.parts, batch.position);
      } catch (err) {
        this.closeIdle();
        throw err; // as below
      }
      // The kernel made it wait (dirty-page throttling, the file system's journal behind a sync): small writes go to
      // the thread pool for a while, so that the loop (heartbeats, dispatches, job pipes) does not stall with them.
      if (performance.now() - t > this.slowWriteMs) this.poolUntil = performance.now() + POOL_AFTER_SLOW_WRITE_MS;
      return this.landedWrite(batch);
    }
    this.inflight = batch;
    writeAll(batch.fd, batch.parts, batch.position, (err) => {
      this.inflight = undefined;
      if (err) {
        this.closeIdle();
        throw err; // the disk failed: nothing written since the last fsync may be acknowledged; the agent stops
      }
      this.landedWrite(batch);
    });
  }

  /** A batch is in the file (page cache): the next sync round makes it durable. */
  private landedWrite(batch: Batch): void {
    this.landed = Math.max(this.landed, batch.upTo);
    if (batch.upTo > this.durable) {
      this.unsynced.add(batch.fd);
      this.unsyncedDir ||= batch.syncDir;
      this.sync();
    } else {
      // flush() already wrote these bytes at this offset and fsynced them: this late write put the same bytes
      // there again, so the file on disk already holds them. Its descriptor may be waiting to be closed.
      this.closeIdle();
    }
    this.emit('written', batch.upTo);
    if (this.pending.length) this.schedule();
  }

  /**
   * One sync round at a time: fdatasync every segment written since the last round (and the directory when a
   * segment is new), then everything whose write had landed when the round began is durable. A write that lands
   * during a round is covered by the next one, never counted by this one.
   */
  private sync(): void {
    if (this.syncing || this.syncTimer || (this.unsynced.size === 0 && !this.unsyncedDir)) return;
    const wait = this.lastRoundAt + this.syncGapMs - performance.now();
    if (wait > 0) {
      this.syncTimer = setTimeout(() => {
        this.syncTimer = undefined;
        this.sync();
      }, wait);
      this.syncTimer.unref(); // at most 5 ms; drain and close flush synchronously
      return;
    }
    this.lastRoundAt = performance.now();
    const round = { fds: [...this.unsynced], dir: this.unsyncedDir, upTo: this.landed };
    this.unsynced.clear();
    this.unsyncedDir = false;
    this.syncing = round;
    let i = 0;
    let dirDone = !round.dir;
    const finish = (err: Error | null) => {
      this.syncing = undefined;
      this.closeIdle();
      if (err) throw err; // as above
      this.markDurable(round.upTo);
      this.sync();
    };
    // fdatasync: the records and the file's size, not its times (one journal commit less per round on ext4).
    const next = (err: Error | null): void => {
      if (err) return finish(err);
      if (i < round.fds.length) return fdatasync(round.fds[i++]!, next);
      if (!dirDone) {
        dirDone = true;
        return fsyncDirectory(this.dir, next);
      }
      finish(null);
    };
    next(null);
  }

  /** Whether the thread pool may still write or fsync this descriptor (closing it could hit a reused number). */
  private fdBusy(fd: number): boolean {
    return this.inflight?.fd === fd || this.unsynced.has(fd) || (this.syncing?.fds.includes(fd) ?? false);
  }

  private closeIdle(): void {
    if (this.closeAfterSync.length === 0) return;
    this.closeAfterSync = this.closeAfterSync.filter((fd) => {
      if (this.fdBusy(fd)) return true;
      closeSync(fd);
      return false;
    });
  }

  /** Writes and fsyncs everything appended so far, synchronously (at a run's end when needed, drain, close). */
  flush(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0 && this.written === this.durable) return;
    // The batch in the thread pool may not be written yet: write it again (same bytes at the same offset, so
    // whichever write lands last leaves the same file) and fsync it here, before anything after it.
    const running = this.inflight;
    if (running) writeAllSync(running.fd, running.parts, running.position);
    let syncDir = (running?.syncDir ?? false) || this.unsyncedDir || (this.syncing?.dir ?? false);
    if (this.pending.length) {
      const batch = this.takePending(); // may start a new segment: the older descriptors stay open until idle
      writeAllSync(batch.fd, batch.parts, batch.position);
      syncDir ||= batch.syncDir;
    }
    // Every descriptor with writes not known to be fsynced: a round in the thread pool may not have reached them.
    const fds = new Set([...this.unsynced, ...(this.syncing?.fds ?? [])]);
    if (running) fds.add(running.fd);
    if (this.fd >= 0) fds.add(this.fd);
    for (const fd of fds) fsyncSync(fd);
    if (syncDir) fsyncDirectorySync(this.dir);
    this.unsynced.clear();
    this.unsyncedDir = false;
    this.landed = Math.max(this.landed, this.written);
    this.closeIdle();
    this.markDurable(this.written);
  }

  private markDurable(upTo: number): void {
    if (upTo <= this.durable) return;
    this.durable = upTo;
    if (this.durableWaiters.length) {
      const ready = this.durableWaiters.filter((w) => w.seq <= upTo);
      this.durableWaiters = this.durableWaiters.filter((w) => w.seq > upTo);
      for (const w of ready) w.cb();
    }
    this.emit('durable', this.durable);
  }

  /** The highest sequence that is on disk. */
  get durableSeq(): number {
    return this.durable;
  }

  /** The highest sequence appended (maybe not yet written or fsynced). */
  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  get acked(): number {
    return this.ackedSeq;
  }

  /** Number of items not yet acknowledged (on disk or pending). */
  get length(): number {
    return this.entries.length - this.head + this.pending.length;
  }

  firstUnacked(): number {
    return this.entries[this.head]?.seq ?? this.durable + 1;
  }

  /** Index of the first entry with a sequence ≥ seq (entries are in sequence order). */
  private indexAtOrAfter(seq: number): number {
    let lo = this.head;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.entries[mid]!.seq < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * The item with this sequence up to `limit` (the durable sequence unless the link may send ahead of the fsync),
   * read back from disk when it is not in memory; undefined when acked or beyond the limit.
   */
  get(seq: number, limit = this.durable): { seq: number; item: AgentItem } | undefined {
    if (seq > limit) return undefined;
    const p = this.pendingAt(seq);
    if (p) return { seq, item: p.item };
    const e = this.entries[this.indexAtOrAfter(seq)];
    if (!e || e.seq !== seq) return undefined;
    return { seq, item: e.item ?? this.inflightItem(seq) ?? this.readBack(e) };
  }

  /** An item of the batch in the thread pool, whose bytes may not be in the file yet. */
  private inflightItem(seq: number): AgentItem | undefined {
    const b = this.inflight;
    if (!b || seq > b.upTo) return undefined;
    return b.items[b.items.length - 1 - (b.upTo - seq)];
  }

  /** The first unacknowledged sequence ≥ seq up to `limit` (default: durable), or undefined. */
  nextAtOrAfter(seq: number, limit = this.durable): number | undefined {
    const e = this.entries[this.indexAtOrAfter(seq)];
    if (e) return e.seq <= limit ? e.seq : undefined;
    const first = this.pending[0]?.seq;
    if (first === undefined) return undefined;
    const s = Math.max(seq, first);
    return s <= limit && s < this.nextSeq ? s : undefined;
  }

  /** A pending (appended, not yet written) item: pending sequences are contiguous. */
  private pendingAt(seq: number): { seq: number; item: AgentItem; released?: boolean } | undefined {
    const first = this.pending[0]?.seq;
    return first !== undefined && seq >= first ? this.pending[seq - first] : undefined;
  }

  /** The link sent this item: its bytes are read back from disk if it must be sent again (after a reconnect). */
  release(seq: number): void {
    const p = this.pendingAt(seq);
    if (p) {
      p.released = true; // not kept in memory once written
      return;
    }
    const e = this.entries[this.indexAtOrAfter(seq)];
    if (!e || e.seq !== seq || !e.item) return;
    e.item = null;
    this.memBytes -= e.length;
  }

  private readBack(e: Entry): AgentItem {
    const fd = openSync(join(this.dir, `${String(e.segment).padStart(8, '0')}.log`), 'r');
    try {
      const buf = Buffer.alloc(e.length);
      readSync(fd, buf, 0, e.length, e.offset);
      const r = decodeRecord(buf, 0);
      if (!r) throw new Error(`queue record ${e.seq} in segment ${e.segment} is unreadable`);
      return r.item;
    } finally {
      closeSync(fd);
    }
  }

  /** All items up to `seq` are committed on the server: forget them. */
  ack(seq: number): void {
    if (seq <= this.ackedSeq) return;
    this.ackedSeq = Math.min(seq, this.durable);
    while (this.head < this.entries.length && this.entries[this.head]!.seq <= this.ackedSeq) {
      const e = this.entries[this.head++]!;
      if (e.item) this.memBytes -= e.length;
    }
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    const rotate = this.length === 0 && this.size > 1024 * 1024;
    if (rotate || this.hasAckedSegment()) {
      // `acked` reaches the file before any segment goes: after a crash the next sequence number follows the
      // highest one found in the segments and `acked`, and must never fall back to numbers the server already
      // holds (it would acknowledge new reports as replays and store nothing). Synced, not only written: a power
      // loss could otherwise keep the unlink of a segment and lose the overwrite of `acked` (once per segment).
      this.writeAcked(true);
      if (rotate) this.openSegment(this.segment + 1);
      this.dropAckedSegments();
    } else {
      // Coalesced: an older `acked` after a crash only makes the agent re-send items the server takes idempotently.
      this.ackedTimer ??= setTimeout(() => this.writeAcked(), ACKED_WRITE_MS);
    }
    this.emit('acked', this.ackedSeq);
  }

  private hasAckedSegment(): boolean {
    for (const [n, max] of this.segmentMax) if (n !== this.segment && max <= this.ackedSeq) return true;
    return false;
  }

  private writeAcked(sync = false): void {
    clearTimeout(this.ackedTimer);
    this.ackedTimer = undefined;
    if (this.ackedOnDisk !== this.ackedSeq) {
      // Overwritten in place, fixed width: one small write within a sector, no temporary file or rename (metadata
      // operations wait for the file system journal, milliseconds on a busy disk). Leading spaces parse as a number.
      if (this.ackedFd < 0) {
        const path = join(this.dir, 'acked');
        this.ackedNew = !existsSync(path);
        this.ackedFd = openSync(path, this.ackedNew ? 'w+' : 'r+');
      }
      writeSync(this.ackedFd, String(this.ackedSeq).padStart(20), 0);
      this.ackedOnDisk = this.ackedSeq;
    }
    if (sync && this.ackedFd >= 0 && this.ackedSynced !== this.ackedOnDisk) {
      fdatasyncSync(this.ackedFd);
      if (this.ackedNew) fsyncDirectorySync(this.dir); // a file created since start: its directory entry too
      this.ackedNew = false;
      this.ackedSynced = this.ackedOnDisk;
    }
  }

  private dropAckedSegments(): void {
    for (const [n, max] of this.segmentMax) {
      if (n !== this.segment && max <= this.ackedSeq) {
        // In the thread pool: unlinking 8 MiB with dirty pages takes milliseconds. A segment left by a crash is
        // harmless: its items are at or below `acked`, so they are skipped (or, with an older `acked`, re-sent).
        rm(join(this.dir, `${String(n).padStart(8, '0')}.log`), { force: true }, () => undefined);
        this.segmentMax.delete(n);
      }
    }
  }

  /** Unacknowledged items (for recovery decisions at start), oldest first. */
  *unackedItems(): Generator<AgentItem> {
    for (let i = this.head; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      yield e.item ?? this.readBack(e);
    }
    for (const p of this.pending) yield p.item;
  }

  /** Runs of the unacknowledged items, without reading items back from disk (heartbeats ask for this). */
  unackedRuns(): Set<number> {
    const ids = new Set<number>();
    for (let i = this.head; i < this.entries.length; i++) {
      ids.add(this.entries[i]!.runId);
    }
    for (const p of this.pending) ids.add(p.item.runId);
    return ids;
  }

  close(): void {
    this.flush();
    clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    this.writeAcked();
    if (this.ackedFd >= 0) closeSync(this.ackedFd);
    this.ackedFd = -1;
    if (this.fd >= 0) {
      if (this.fdBusy(this.fd)) this.closeAfterSync.push(this.fd);
      else closeSync(this.fd);
    }
    this.fd = -1;
  }
}
