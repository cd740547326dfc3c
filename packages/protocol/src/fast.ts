import type { AgentMessage, ServerMessage } from './messages.js';

// Hand-written shortcuts for the commonest frames; each accepts exactly what the schema accepts for its shapes and
// returns undefined for anything else, which then goes through the schema (which also words the error).

/**
 * The schema's answer for the two agent frames every run sends on its way to running, `accepted` and a `report`
 * of a `started` item, without walking the discriminated unions (zod's parse of them was a visible part of the
 * server's CPU between dispatch and start: dispatch-latency). Accepts exactly what `agentMessage` accepts for
 * these shapes (test/fast.test.ts compares both on generated frames); anything else returns undefined and
 * goes through the schema, which then also words the error.
 */
export function agentFast(raw: unknown): AgentMessage | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const o = raw as Record<string, unknown>;
  if (o.type === 'accepted') {
    if (!onlyKeys(o, ACCEPTED) || !positive(o.runId) || !positive(o.attempt)) return undefined;
    return { type: 'accepted', runId: o.runId as number, attempt: o.attempt as number };
  }
  if (o.type === 'report') {
    if (!onlyKeys(o, REPORT) || !positive(o.seq)) return undefined;
    const i = o.item;
    if (typeof i !== 'object' || i === null) return undefined;
    const item = i as Record<string, unknown>;
    if (item.kind !== 'started' || !onlyKeys(item, STARTED) || !positive(item.runId) || !positive(item.attempt)) return undefined;
    if (!Number.isSafeInteger(item.at) || (item.at as number) < 0) return undefined;
    if (Object.hasOwn(item, 'pid') && !Number.isSafeInteger(item.pid)) return undefined;
    const started = { kind: 'started' as const, runId: item.runId as number, attempt: item.attempt as number, at: item.at as number };
    return { type: 'report', seq: o.seq as number, item: Object.hasOwn(item, 'pid') ? { ...started, pid: item.pid as number } : started };
  }
  return undefined;
}

/**
 * The commonest server frame, an ack (`{"type":"ack","seq":N}`, nothing else): a discriminated-union parse per ack
 * was a visible part of the agent's CPU a run (e2e-true).
 */
export function serverFast(raw: unknown): ServerMessage | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const o = raw as Record<string, unknown>;
  if (o.type !== 'ack' || !onlyKeys(o, ACK) || !Number.isSafeInteger(o.seq) || (o.seq as number) < 0) return undefined;
  return { type: 'ack', seq: o.seq as number };
}

const ACK = new Set(['type', 'seq']);
const ACCEPTED = new Set(['type', 'runId', 'attempt']);
const REPORT = new Set(['type', 'seq', 'item']);
const STARTED = new Set(['kind', 'runId', 'attempt', 'at', 'pid']);

/** A strict object's test: no key beyond the known ones (own `__proto__` from JSON.parse included). */
function onlyKeys(o: Record<string, unknown>, known: Set<string>): boolean {
  for (const k in o) if (!known.has(k)) return false;
  return true;
}

/** z.number().int().positive() (zod 4's int is a safe integer); every positive integer field here is ≥ 1. */
function positive(v: unknown): boolean {
  return Number.isSafeInteger(v) && (v as number) >= 1;
}
