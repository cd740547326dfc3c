import { MAX_BINARY_CHUNK_BYTES, MAX_FRAME_BYTES, type OutputHeader, outputHeader } from './messages.js';
import { failedReportSeq, type Parsed } from './parse.js';

/**
 * Protocol 2 binary frame for job output (docs/protocol.md): `u32 BE header length`, the header (UTF-8 JSON,
 * `outputHeader`), then the raw output bytes. Only agents that said `protocol ≥ 2` in hello may send it; the
 * server validates the header like any frame and bounds the data to MAX_BINARY_CHUNK_BYTES.
 */
const MAX_HEADER_BYTES = 1024;

/** A validated binary output frame; `data` is a view into the received frame. */
export interface OutputFrame {
  header: OutputHeader;
  data: Buffer;
}

/** Room left before output bytes by allocOutputBuffer, for the frame's length and header. */
const HEADROOM = 256;
/** Buffers from allocOutputBuffer whose headroom is still unused. */
const withHeadroom = new WeakSet<Buffer>();

/**
 * A buffer for `size` bytes of output with unused room before it, so that encodeOutputFrame can write the header
 * there and send the bytes where they are (the agent's output path copied every byte once more into each frame).
 */
export function allocOutputBuffer(size: number): Buffer {
  let b: Buffer | undefined;
  if (size === spareSize && spare.length) {
    b = spare.pop()!;
    spareUsedAt = Date.now();
  }
  b ??= Buffer.allocUnsafe(HEADROOM + size).subarray(HEADROOM);
  withHeadroom.add(b);
  return b;
}

/**
 * The first `length` bytes of a buffer from allocOutputBuffer, sent without copying them out: the view starts where
 * the buffer does, so the room in front is its own, and it takes over the buffer's claim on that room (encodeOutputFrame
 * writes a header there once, for whichever of the two it is given; from now on that is the view). The rest of the
 * buffer stays allocated as long as the view lives, so the caller decides when that waste is worth a copy.
 */
export function outputBufferView(b: Buffer, length: number): Buffer {
  const view = b.subarray(0, length);
  if (withHeadroom.delete(b)) withHeadroom.add(view);
  return view;
}

/**
 * Buffers of one size given back by recycleOutputBuffer, reused by allocOutputBuffer: a stream of output then
 * allocates no new external memory per chunk (that churn drove most of the agent's garbage collections).
 */
/** At most this many spare buffers: 16 MiB of 512 KiB chunks, about as many as are in flight until acknowledged. */
const SPARE_MAX = 32;
let spareSize = -1;
const spare: Buffer[] = [];
/** Spare buffers not taken for a second are let go (an idle agent keeps none). */
const SPARE_IDLE_MS = 1000;
let spareUsedAt = 0;
let trimTimer: NodeJS.Timeout | undefined;
function trimWhenIdle(): void {
  trimTimer ??= setTimeout(() => {
    trimTimer = undefined;
    if (Date.now() - spareUsedAt >= SPARE_IDLE_MS) spare.length = 0;
    else trimWhenIdle();
  }, SPARE_IDLE_MS).unref();
}

/**
 * Gives back a buffer from allocOutputBuffer that NOTHING refers to any more (not queued, not being written, not
 * being sent): its bytes are overwritten by the next allocation of its size. Only buffers of `size` are kept.
 */
export function recycleOutputBuffer(b: Buffer, size: number): void {
  if (b.length !== size || b.byteOffset !== HEADROOM || b.buffer.byteLength !== HEADROOM + size) return;
  if (spareSize !== size) {
    spare.length = 0;
    spareSize = size;
  }
  if (spare.length < SPARE_MAX && !spare.includes(b)) {
    spare.push(b);
    spareUsedAt = Date.now();
    trimWhenIdle();
  }
}

export function encodeOutputFrame(header: OutputHeader, data: Buffer): Buffer {
  const h = Buffer.from(JSON.stringify(header));
  if (withHeadroom.has(data) && 4 + h.length <= HEADROOM) {
    // Once only: a second frame of the same bytes (a re-send) is built by copying, never over a header in use.
    withHeadroom.delete(data);
    const frame = Buffer.from(data.buffer, data.byteOffset - 4 - h.length, 4 + h.length + data.length);
    frame.writeUInt32BE(h.length, 0);
    h.copy(frame, 4);
    return frame;
  }
  const frame = Buffer.allocUnsafe(4 + h.length + data.length);
  frame.writeUInt32BE(h.length, 0);
  h.copy(frame, 4);
  data.copy(frame, 4 + h.length);
  return frame;
}

/** Validates a binary frame from an agent. Never throws. */
export function parseOutputFrame(frame: Buffer, maxBytes = MAX_FRAME_BYTES): Parsed<OutputFrame> {
  if (frame.length > maxBytes) return { ok: false, error: { code: 'too-large', message: `frame of ${frame.length} bytes exceeds ${maxBytes}` } };
  if (frame.length < 4) return { ok: false, error: { code: 'invalid', message: 'binary frame shorter than its header length' } };
  const len = frame.readUInt32BE(0);
  if (len > MAX_HEADER_BYTES || 4 + len > frame.length) return { ok: false, error: { code: 'invalid', message: `binary frame header of ${len} bytes does not fit` } };
  let raw: unknown;
  try {
    raw = JSON.parse(frame.toString('utf8', 4, 4 + len));
  } catch {
    return { ok: false, error: { code: 'not-json', message: 'binary frame header is not JSON' } };
  }
  const r = outputHeader.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue?.path.length ? issue.path.join('.') : 'header';
    const message = `invalid output ${where}: ${issue?.message ?? 'bad header'}`.slice(0, 120);
    const seq = failedReportSeq(raw, 'output');
    return { ok: false, error: seq === undefined ? { code: 'invalid', message } : { code: 'invalid', message, seq } };
  }
  const data = frame.subarray(4 + len);
  if (data.length > MAX_BINARY_CHUNK_BYTES) return { ok: false, error: { code: 'invalid', message: `output chunk of ${data.length} bytes exceeds ${MAX_BINARY_CHUNK_BYTES}`, seq: r.data.seq } };
  return { ok: true, message: { header: r.data, data } };
}
