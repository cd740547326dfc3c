import type { z } from 'zod';
import { agentFast, serverFast } from './fast.js';
import { type AgentMessage, agentMessage, MAX_FRAME_BYTES, type ServerMessage, serverMessage } from './messages.js';

/**
 * Why a frame was not accepted; `message` is short enough for a WebSocket close reason (≤ 123 bytes). `seq`: the
 * frame is a report (or a binary output frame) that failed validation and carries a usable sequence number, so the
 * server can name the queued item it rejects (close.ts).
 */
export type ParseError = { code: 'too-large' | 'not-json' | 'invalid'; message: string; seq?: number };

/** The sequence number of a `report` (or binary `output` header) that failed validation, when it has a usable one. */
export function failedReportSeq(raw: unknown, type: 'report' | 'output'): number | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const r = raw as { type?: unknown; seq?: unknown };
  return r.type === type && typeof r.seq === 'number' && Number.isSafeInteger(r.seq) && r.seq > 0 ? r.seq : undefined;
}
export type Parsed<T> = { ok: true; message: T } | { ok: false; error: ParseError };

function parseWith<T>(schema: z.ZodType<T>, frame: string | Buffer, maxBytes: number, fast?: (raw: unknown) => T | undefined): Parsed<T> {
  const size = typeof frame === 'string' ? Buffer.byteLength(frame) : frame.length;
  if (size > maxBytes) return { ok: false, error: { code: 'too-large', message: `frame of ${size} bytes exceeds ${maxBytes}` } };
  let raw: unknown;
  try {
    raw = JSON.parse(typeof frame === 'string' ? frame : frame.toString('utf8'));
  } catch {
    return { ok: false, error: { code: 'not-json', message: 'frame is not JSON' } };
  }
  if (fast) {
    const m = fast(raw);
    if (m) return { ok: true, message: m };
  }
  const r = schema.safeParse(raw);
  if (r.success) return { ok: true, message: r.data };
  const issue = r.error.issues[0];
  const where = issue?.path.length ? issue.path.join('.') : 'frame';
  const seq = failedReportSeq(raw, 'report');
  const message = `invalid ${where}: ${issue?.message ?? 'bad message'}`.slice(0, 120);
  return { ok: false, error: seq === undefined ? { code: 'invalid', message } : { code: 'invalid', message, seq } };
}

/** Validates a frame from an agent. Never throws. */
export function parseAgentMessage(frame: string | Buffer, maxBytes = MAX_FRAME_BYTES): Parsed<AgentMessage> {
  return parseWith(agentMessage, frame, maxBytes, agentFast);
}

/** Validates a frame from the server. Never throws. */
export function parseServerMessage(frame: string | Buffer, maxBytes = MAX_FRAME_BYTES): Parsed<ServerMessage> {
  return parseWith(serverMessage, frame, maxBytes, serverFast);
}

export function encode(message: AgentMessage | ServerMessage): string {
  return JSON.stringify(message);
}
