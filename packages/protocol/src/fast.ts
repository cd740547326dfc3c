import type { AgentMessage, QueueItem, ServerMessage } from './messages.js';

// Hand-written shortcuts for the commonest frames; each accepts exactly what the schema accepts for its shapes and
// returns undefined for anything else, which then goes through the schema (which also words the error).

/**
 * The schema's answer for the three agent frames of every run, `accepted` and a `report` of a `started` or a
 * `finished` item, without walking the discriminated unions (zod's parse of them was a visible part of the server's
 * CPU between dispatch and start, dispatch-latency, and ~0.07 ms a run for `finished`, e2e-true). Accepts exactly
 * what `agentMessage` accepts for these shapes (test/fast.test.ts compares both on generated frames); anything else returns undefined and
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
    if (item.kind === 'finished') return finishedFast(o.seq as number, item);
    if (item.kind !== 'started' || !onlyKeys(item, STARTED) || !positive(item.runId) || !positive(item.attempt)) return undefined;
    if (!Number.isSafeInteger(item.at) || (item.at as number) < 0) return undefined;
    if (Object.hasOwn(item, 'pid') && !Number.isSafeInteger(item.pid)) return undefined;
    const started = { kind: 'started' as const, runId: item.runId as number, attempt: item.attempt as number, at: item.at as number };
    return { type: 'report', seq: o.seq as number, item: Object.hasOwn(item, 'pid') ? { ...started, pid: item.pid as number } : started };
  }
  // Protocol 3: when the agent queue's durable watermark moves, at most one every 10 ms (~2 a run in e2e-true).
  if (o.type === 'durable') return onlyKeys(o, DURABLE) && nonNegative(o.seq) ? { type: 'durable', seq: o.seq as number } : undefined;
  return undefined;
}

/**
 * The commonest server frames, an ack (`{"type":"ack","seq":N}`, nothing else) and a dispatch: a discriminated-union
 * parse of each was a visible part of the agent's CPU a run (e2e-true). Accepts exactly what `serverMessage` accepts
 * for these shapes (test/fast.test.ts).
 */
export function serverFast(raw: unknown): ServerMessage | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const o = raw as Record<string, unknown>;
  if (o.type === 'dispatch') return onlyKeys(o, DISPATCH) && dispatchPayloadOk(o.payload) ? (o as ServerMessage) : undefined;
  if (o.type !== 'ack' || !onlyKeys(o, ACK) || !Number.isSafeInteger(o.seq) || (o.seq as number) < 0) return undefined;
  return { type: 'ack', seq: o.seq as number };
}

function finishedFast(seq: number, item: Record<string, unknown>): AgentMessage | undefined {
  if (!onlyKeys(item, FINISHED) || !positive(item.runId) || !positive(item.attempt) || !nonNegative(item.at)) return undefined;
  const code = item.exitCode;
  if (code !== null && (!Number.isSafeInteger(code) || (code as number) < 0 || (code as number) > 255)) return undefined;
  if (item.signal !== null && !(typeof item.signal === 'string' && item.signal.length <= 16)) return undefined;
  if (typeof item.timedOut !== 'boolean') return undefined;
  if (Object.hasOwn(item, 'error') && !(typeof item.error === 'string' && item.error.length <= 2048)) return undefined;
  // Every key is known and checked (`result` is any JSON value): the parsed object is the schema's output.
  return { type: 'report', seq, item: item as Extract<QueueItem, { kind: 'finished' }> };
}

/**
 * Whether `dispatchPayload` accepts the payload, and would return it unchanged; false leaves the answer to the
 * schema (which also words the error). The agent takes every dispatch frame through it (its zod parse was ~0.1 ms
 * a run of the agent's CPU, e2e-true), the server checks every payload it sends with it. The parsed object is
 * returned as it is when every key is known and checked, so the one thing the schema would change is left to it:
 * an own `__proto__` key in `env`.
 */
export function dispatchPayloadOk(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const p = v as Record<string, unknown>;
  if (!onlyKeys(p, PAYLOAD) || !positive(p.runId) || !positive(p.attempt)) return false;
  if (!(typeof p.jobName === 'string' && p.jobName.length <= 256)) return false;
  if (!(typeof p.planDate === 'string' && PLAN_DATE.test(p.planDate))) return false;
  if (p.nominalAt !== null && !nonNegative(p.nominalAt)) return false;
  if (!runOk(p.run) || !stringRecord(p.env) || !strings(p.secrets)) return false;
  if (Object.hasOwn(p, 'cwd') && typeof p.cwd !== 'string') return false;
  if (Object.hasOwn(p, 'runAs') && !runAsOk(p.runAs)) return false;
  if (Object.hasOwn(p, 'timeoutMs') && !positive(p.timeoutMs)) return false;
  return nonNegative(p.killGraceMs) && positive(p.maxOutputBytes);
}

function runOk(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const r = v as Record<string, unknown>;
  if (Object.hasOwn(r, 'command')) return onlyKeys(r, RUN_COMMAND) && strings(r.command) && (r.command as string[]).length >= 1;
  if (Object.hasOwn(r, 'shell')) return onlyKeys(r, RUN_SHELL) && typeof r.shell === 'string' && r.shell.length >= 1;
  if (!Object.hasOwn(r, 'node') || !onlyKeys(r, RUN_NODE) || typeof r.node !== 'string' || r.node.length < 1) return false;
  return !Object.hasOwn(r, 'args') || strings(r.args);
}

function runAsOk(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const u = v as Record<string, unknown>;
  return onlyKeys(u, RUN_AS) && typeof u.user === 'string' && (!Object.hasOwn(u, 'group') || typeof u.group === 'string');
}

function strings(v: unknown): boolean {
  if (!Array.isArray(v)) return false;
  for (const s of v) if (typeof s !== 'string') return false;
  return true;
}

function stringRecord(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  for (const k in v) if (k === '__proto__' || typeof (v as Record<string, unknown>)[k] !== 'string') return false;
  return true;
}

const ACK = new Set(['type', 'seq']);
const DURABLE = ACK;
const ACCEPTED = new Set(['type', 'runId', 'attempt']);
const REPORT = new Set(['type', 'seq', 'item']);
const STARTED = new Set(['kind', 'runId', 'attempt', 'at', 'pid']);
const FINISHED = new Set(['kind', 'runId', 'attempt', 'at', 'exitCode', 'signal', 'timedOut', 'error', 'result']);
const DISPATCH = new Set(['type', 'payload']);
const PAYLOAD = new Set(['runId', 'attempt', 'jobName', 'planDate', 'nominalAt', 'run', 'env', 'secrets', 'cwd', 'runAs', 'timeoutMs', 'killGraceMs', 'maxOutputBytes']);
const RUN_COMMAND = new Set(['command']);
const RUN_SHELL = new Set(['shell']);
const RUN_NODE = new Set(['node', 'config', 'args']);
const RUN_AS = new Set(['user', 'group']);
const PLAN_DATE = /^\d{4}-\d{2}-\d{2}$/;

/** A strict object's test: no key beyond the known ones (own `__proto__` from JSON.parse included). */
function onlyKeys(o: Record<string, unknown>, known: Set<string>): boolean {
  for (const k in o) if (!known.has(k)) return false;
  return true;
}

/** z.number().int().nonnegative() */
function nonNegative(v: unknown): boolean {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

/** z.number().int().positive() (zod 4's int is a safe integer); every positive integer field here is ≥ 1. */
function positive(v: unknown): boolean {
  return Number.isSafeInteger(v) && (v as number) >= 1;
}
