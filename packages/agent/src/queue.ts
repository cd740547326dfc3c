import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, writeFileSync, writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { QueueItem } from '@batchalyzer/protocol';

/**
 * The agent's disk-backed outbound queue (brief §8): every item gets a sequence number, is appended to a
 * segment file and fsynced before it may be sent, and is forgotten only once the server acknowledged its
 * sequence. After a reconnect or a restart the unacknowledged items are sent again, in order.
 *
 * Layout in `<data>/queue/`: `id` (the queue id, new when the directory is new), `acked` (highest acked
 * sequence), `NNNNNNNN.log` segments of JSON lines `{"seq":n,"item":{…}}`. A torn last line (crash while
 * writing) is cut off at start. Appends made in the same tick share one write and one fsync.
 */
interface Entry {
  seq: number;
  item: QueueItem | null;
  segment: number;
  offset: number;
  length: number;
}

const SEGMENT_BYTES = 8 * 1024 * 1024;

export class DiskQueue extends EventEmitter {
  readonly queueId: string;
  private readonly dir: string;
  private entries: Entry[] = [];
  private head = 0;
  private ackedSeq: number;
  private nextSeq: number;
  private durable: number;
  private segment = 0;
  private fd = -1;
  private size = 0;
  private segmentMax = new Map<number, number>();
  private pending: { seq: number; item: QueueItem; line: Buffer }[] = [];
  private pendingSize = 0;
  private flushScheduled = false;
  private memBytes = 0;

  private constructor(dir: string, private readonly memoryBudget: number) {
    super();
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
    const idFile = join(dir, 'id');
    if (!existsSync(idFile)) writeFileSync(idFile, randomUUID());
    this.queueId = readFileSync(idFile, 'utf8').trim();
    const ackedFile = join(dir, 'acked');
    this.ackedSeq = existsSync(ackedFile) ? Number(readFileSync(ackedFile, 'utf8').trim()) || 0 : 0;
    this.nextSeq = this.ackedSeq + 1;
    this.load();
    this.durable = this.nextSeq - 1;
  }

  static open(dir: string, memoryBudget = 8 * 1024 * 1024): DiskQueue {
    return new DiskQueue(dir, memoryBudget);
  }

  private load(): void {
    const segs = readdirSync(this.dir).filter((f) => /^\d{8}\.log$/.test(f)).sort();
    for (const f of segs) {
      const n = Number(f.slice(0, 8));
      const path = join(this.dir, f);
      const buf = readFileSync(path);
      let offset = 0;
      let max = 0;
      while (offset < buf.length) {
        const nl = buf.indexOf(10, offset);
        if (nl < 0) break;
        let parsed: { seq: number; item: QueueItem } | undefined;
        try {
          parsed = JSON.parse(buf.subarray(offset, nl).toString('utf8'));
        } catch {
          break;
        }
        const seq = parsed!.seq;
        max = Math.max(max, seq);
        if (seq > this.ackedSeq) {
          const length = nl + 1 - offset;
          const keep = this.memBytes + length <= this.memoryBudget;
          if (keep) this.memBytes += length;
          this.entries.push({ seq, item: keep ? parsed!.item : null, segment: n, offset, length });
        }
        this.nextSeq = Math.max(this.nextSeq, seq + 1);
        offset = nl + 1;
      }
      if (offset < buf.length) {
        // A torn or garbled tail from a crash mid-write: cut it so that appends continue on a clean line.
        const fd = openSync(path, 'r+');
        ftruncateSync(fd, offset);
        closeSync(fd);
      }
      this.segmentMax.set(n, max);
      this.segment = n;
    }
    this.openSegment(segs.length ? this.segment : 1);
    this.dropAckedSegments();
  }

  private openSegment(n: number): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.segment = n;
    this.fd = openSync(join(this.dir, `${String(n).padStart(8, '0')}.log`), 'a');
    this.size = fstatSync(this.fd).size;
    if (!this.segmentMax.has(n)) this.segmentMax.set(n, 0);
  }

  /** Assigns the next sequence number; the item is durable (and sendable) after the next flush. */
  append(item: QueueItem): number {
    const seq = this.nextSeq++;
    const line = Buffer.from(`${JSON.stringify({ seq, item })}\n`);
    this.pending.push({ seq, item, line });
    this.pendingSize += line.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    return seq;
  }

  /** Bytes appended but not yet on disk: job output pauses while this is high (backpressure). */
  get pendingBytes(): number {
    return this.pendingSize;
  }

  /** Writes and fsyncs everything appended so far. */
  flush(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.pendingSize = 0;
    if (this.size > SEGMENT_BYTES) this.openSegment(this.segment + 1);
    writeSync(this.fd, Buffer.concat(batch.map((b) => b.line)));
    fsyncSync(this.fd);
    for (const b of batch) {
      const keep = this.memBytes + b.line.length <= this.memoryBudget;
      if (keep) this.memBytes += b.line.length;
      this.entries.push({ seq: b.seq, item: keep ? b.item : null, segment: this.segment, offset: this.size, length: b.line.length });
      this.size += b.line.length;
      this.segmentMax.set(this.segment, b.seq);
      this.durable = b.seq;
    }
    this.emit('durable', this.durable);
  }

  /** The highest sequence that is on disk. */
  get durableSeq(): number {
    return this.durable;
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

  /** The durable item with this sequence, read back from disk when it is not in memory; undefined when acked or not durable. */
  get(seq: number): { seq: number; item: QueueItem } | undefined {
    // Entries are in sequence order; sequences are contiguous except across acked gaps, so search.
    let lo = this.head;
    let hi = this.entries.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const e = this.entries[mid]!;
      if (e.seq === seq) return { seq, item: e.item ?? this.readBack(e) };
      if (e.seq < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  /** The first durable sequence ≥ seq, or undefined. */
  nextAtOrAfter(seq: number): number | undefined {
    for (let i = this.head; i < this.entries.length; i++) if (this.entries[i]!.seq >= seq) return this.entries[i]!.seq;
    return undefined;
  }

  private readBack(e: Entry): QueueItem {
    const fd = openSync(join(this.dir, `${String(e.segment).padStart(8, '0')}.log`), 'r');
    try {
      const buf = Buffer.alloc(e.length);
      readSync(fd, buf, 0, e.length, e.offset);
      return (JSON.parse(buf.toString('utf8')) as { item: QueueItem }).item;
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
    writeFileSync(join(this.dir, 'acked.tmp'), String(this.ackedSeq));
    renameSync(join(this.dir, 'acked.tmp'), join(this.dir, 'acked'));
    if (this.length === 0 && this.size > 1024 * 1024) this.openSegment(this.segment + 1);
    this.dropAckedSegments();
    this.emit('acked', this.ackedSeq);
  }

  private dropAckedSegments(): void {
    for (const [n, max] of this.segmentMax) {
      if (n !== this.segment && max <= this.ackedSeq) {
        rmSync(join(this.dir, `${String(n).padStart(8, '0')}.log`), { force: true });
        this.segmentMax.delete(n);
      }
    }
  }

  /** Unacknowledged items (for recovery decisions at start), oldest first. */
  *unackedItems(): Generator<QueueItem> {
    for (let i = this.head; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      yield e.item ?? this.readBack(e);
    }
    for (const p of this.pending) yield p.item;
  }

  close(): void {
    this.flush();
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
