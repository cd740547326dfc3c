/**
 * Job output handling (brief §8): secrets masked before anything is queued, chunks flushed on size and on
 * an interval, byte order exact per stream, and a per-run cap. Within the cap's first half output streams
 * live; beyond it each stream keeps only its last quarter-of-the-cap bytes in memory (a ring), which are
 * sent when the job ends after a one-line marker, with the truncation reported. So the stored output is the
 * head and the tail, never more than the cap, and memory stays bounded even for gigabytes of output.
 */

import { allocOutputBuffer, outputBufferView, recycleOutputBuffer } from '@batchalyzer/protocol';

const MASK = Buffer.from('***');

/** Replaces secret values by `***`, also when a value is split across reads. */
export class Masker {
  private readonly secrets: Buffer[];
  private readonly firstBytes: number[];
  private carry: Buffer = Buffer.alloc(0);

  constructor(secrets: string[]) {
    // Longest first, so that a secret containing another is masked as a whole.
    this.secrets = [...new Set(secrets.filter((s) => s.length > 0))].map((s) => Buffer.from(s)).sort((a, b) => b.length - a.length);
    this.firstBytes = [...new Set(this.secrets.map((s) => s[0]!))];
  }

  /** Returns the bytes that are safe to emit now; holds back a tail that could still become a secret. */
  push(data: Buffer): Buffer {
    if (this.secrets.length === 0) return data;
    return this.scan(this.carry.length ? Buffer.concat([this.carry, data]) : data, false);
  }

  end(): Buffer {
    const rest = this.carry;
    this.carry = Buffer.alloc(0);
    return this.secrets.length ? this.scan(rest, true) : rest;
  }

  private scan(buf: Buffer, final: boolean): Buffer {
    const parts: Buffer[] = [];
    let from = 0;
    let i = 0;
    this.carry = Buffer.alloc(0);
    for (;;) {
      i = this.nextCandidate(buf, i);
      if (i < 0) break;
      const left = buf.length - i;
      // A secret that may continue in the next read: wait for it (even if a shorter one matches already).
      if (!final && this.secrets.some((s) => s.length > left && buf.subarray(i).equals(s.subarray(0, left)))) {
        this.carry = Buffer.from(buf.subarray(i));
        buf = buf.subarray(0, i);
        break;
      }
      const s = this.secrets.find((x) => x.length <= left && buf.subarray(i, i + x.length).equals(x));
      if (s) {
        parts.push(buf.subarray(from, i), MASK);
        i += s.length;
        from = i;
      } else i++;
    }
    parts.push(buf.subarray(from));
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  private nextCandidate(buf: Buffer, from: number): number {
    let best = -1;
    for (const b of this.firstBytes) {
      const at = buf.indexOf(b, from);
      if (at >= 0 && (best < 0 || at < best)) best = at;
    }
    return best;
  }
}

export interface OutputSink {
  chunk(stream: 'stdout' | 'stderr', chunk: number, data: Buffer): void;
  truncated(droppedBytes: number): void;
}

class Ring {
  private parts: Buffer[] = [];
  size = 0;
  dropped = 0;
  constructor(private readonly cap: number) {}
  /** Copies what it keeps of `b` (only its last `cap` bytes when it alone fills the ring). */
  push(b: Buffer): void {
    if (b.length >= this.cap) {
      const keep = b.subarray(b.length - this.cap);
      this.dropped += this.size + b.length - keep.length;
      this.parts = keep.length ? [Buffer.from(keep)] : [];
      this.size = keep.length;
      return;
    }
    this.parts.push(Buffer.from(b));
    this.size += b.length;
    while (this.size > this.cap && this.parts.length) {
      const first = this.parts[0]!;
      const over = this.size - this.cap;
      if (first.length <= over) {
        this.parts.shift();
        this.size -= first.length;
        this.dropped += first.length;
      } else {
        this.parts[0] = first.subarray(over);
        this.size -= over;
        this.dropped += over;
      }
    }
  }
  take(): Buffer {
    const b = Buffer.concat(this.parts);
    this.parts = [];
    this.size = 0;
    return b;
  }
}

/** The smallest buffer a stream's chunk starts with (it grows by doubling up to chunkBytes). */
const MIN_CHUNK_START = 4 * 1024;

/** The chunk a stream is filling: output bytes are copied in as they are read, never kept by reference. */
interface Building {
  buf: Buffer | undefined;
  fill: number;
  /** Bytes the stream kept since the last flush() (the interval), and in the interval before: its rate. */
  thisInterval: number;
  lastInterval: number;
}

function building(): Building {
  return { buf: undefined, fill: 0, thisInterval: 0, lastInterval: 0 };
}

/**
 * Both streams of one run: shares the cap between them, numbers chunks per stream.
 *
 * Every byte kept is copied at once into the chunk being built (allocOutputBuffer: room for the frame header in
 * front), so the caller may hand in a buffer it reuses for the next read (the native spawner reads every job's
 * pipes into one shared buffer), and, in the steady case, that is the only copy. A chunk buffer is sized for what
 * the stream is expected to add before the next interval flush (what it added in the last interval, less what it
 * added in this one so far, at least the read at hand; a full chunk once it is past that), as a power of two from
 * 4 KiB up to chunkBytes, and doubles by a copy only when the stream outgrows it. So a quiet job holds a few KiB between flushes, a job that read one
 * 64 KiB pipe 64 KiB, a bulk stream full chunks, and a steady stream a buffer that fits its rate. A partial chunk
 * at the flush is sent as a view of its buffer when at least half of it is filled (at most twice the bytes held,
 * like the doubling itself), else copied out to its exact size so that a mostly empty buffer is not kept.
 */
export class RunOutput {
  private headLeft: number;
  private readonly building: { stdout: Building; stderr: Building } = { stdout: building(), stderr: building() };
  private readonly chunkNo = { stdout: 0, stderr: 0 };
  private readonly tails: { stdout: Ring; stderr: Ring };
  private readonly maskers: { stdout: Masker; stderr: Masker };

  constructor(maxBytes: number, secrets: string[], private readonly chunkBytes: number, private readonly sink: OutputSink) {
    this.headLeft = Math.floor(maxBytes / 2);
    const tailCap = Math.floor(maxBytes / 4);
    this.tails = { stdout: new Ring(tailCap), stderr: new Ring(tailCap) };
    this.maskers = { stdout: new Masker(secrets), stderr: new Masker(secrets) };
  }

  /** `data` is only read during the call (it may be a view of a buffer the caller reuses). */
  write(stream: 'stdout' | 'stderr', data: Buffer): void {
    this.route(stream, this.maskers[stream].push(data));
  }

  private route(stream: 'stdout' | 'stderr', data: Buffer): void {
    if (data.length === 0) return;
    const head = Math.min(this.headLeft, data.length);
    if (head > 0) {
      this.headLeft -= head;
      this.append(stream, data, head);
    }
    if (head < data.length) this.tails[stream].push(data.subarray(head)); // the ring copies
  }

  /** The power of two from MIN_CHUNK_START that holds `bytes`, at most chunkBytes. */
  private sizeFor(bytes: number): number {
    let size = MIN_CHUNK_START;
    while (size < bytes && size < this.chunkBytes) size *= 2;
    return Math.min(size, this.chunkBytes);
  }

  /** Copies data[0, end) into the stream's chunk, sending every chunk that fills up. */
  private append(stream: 'stdout' | 'stderr', data: Buffer, end: number): void {
    const b = this.building[stream];
    for (let at = 0; at < end; ) {
      const want = end - at;
      if (!b.buf) {
        // Sized for the rest of this interval at the last one's rate: a steady stream fills it without growing.
        // A stream already past that rate has filled a whole chunk in this interval: in bulk, a full one again.
        const rest = b.lastInterval - b.thisInterval;
        b.buf = allocOutputBuffer(this.sizeFor(Math.max(want, rest > 0 ? rest : b.thisInterval)));
      } else if (b.buf.length - b.fill < want && b.buf.length < this.chunkBytes) {
        const grown = allocOutputBuffer(this.sizeFor(b.fill + want));
        b.buf.copy(grown, 0, 0, b.fill);
        b.buf = grown;
      }
      const n = Math.min(want, b.buf.length - b.fill);
      data.copy(b.buf, b.fill, at, at + n);
      b.fill += n;
      b.thisInterval += n;
      at += n;
      if (b.fill === this.chunkBytes) this.flushStream(stream);
    }
  }

  /** Sends what is buffered (called on the flush interval and at the end; full chunks go at once). */
  flush(): void {
    for (const s of ['stdout', 'stderr'] as const) {
      this.flushStream(s);
      const b = this.building[s];
      b.lastInterval = b.thisInterval;
      b.thisInterval = 0;
    }
  }

  /**
   * Sends the stream's chunk: as it is when full; a view of its filled part when that is at least half of the
   * buffer; else the filled part copied out to its exact size (and the buffer given back if it is a full-size one).
   */
  private flushStream(stream: 'stdout' | 'stderr'): void {
    const b = this.building[stream];
    if (!b.buf || b.fill === 0) return;
    let chunk = b.buf;
    if (b.fill === chunk.length) {
      // full (a chunkBytes one, or a smaller one exactly filled): sent as it is
    } else if (b.fill * 2 >= chunk.length) {
      chunk = outputBufferView(b.buf, b.fill);
    } else {
      chunk = allocOutputBuffer(b.fill);
      b.buf.copy(chunk, 0, 0, b.fill);
      recycleOutputBuffer(b.buf, this.chunkBytes); // only this stream ever held it
    }
    b.buf = undefined;
    b.fill = 0;
    this.sink.chunk(stream, ++this.chunkNo[stream], chunk);
  }

  private emitBytes(stream: 'stdout' | 'stderr', all: Buffer): void {
    for (let i = 0; i < all.length; i += this.chunkBytes) this.sink.chunk(stream, ++this.chunkNo[stream], all.subarray(i, i + this.chunkBytes));
  }

  /** At the end of the job: the masked remainder, then the kept tails after a marker line. */
  end(): void {
    for (const s of ['stdout', 'stderr'] as const) this.route(s, this.maskers[s].end());
    this.flush();
    let dropped = 0;
    for (const s of ['stdout', 'stderr'] as const) {
      const ring = this.tails[s];
      if (ring.size === 0 && ring.dropped === 0) continue;
      const tail = ring.take();
      if (ring.dropped > 0) {
        dropped += ring.dropped;
        this.emitBytes(s, Buffer.from(`\n[batchalyzer: ${ring.dropped} bytes of ${s} not kept (output cap); the last ${tail.length} bytes follow]\n`));
      }
      this.emitBytes(s, tail);
    }
    if (dropped > 0) this.sink.truncated(dropped);
  }
}
