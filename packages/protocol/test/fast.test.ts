import { describe, expect, it } from 'vitest';
import { agentFast, serverFast } from '../src/fast.js';
import { agentMessage, serverMessage } from '../src/messages.js';
import { parseAgentMessage, parseServerMessage } from '../src/index.js';

// Values that sit on every edge of the schema's number rules, and values of other types.
const VALUES: unknown[] = [
  0, -0, 1, 2, -1, 1.5, 255, 256, 2 ** 53 - 1, 2 ** 53, -(2 ** 53), 1e300, '1', '', 'x'.repeat(16), 'x'.repeat(17), 'x'.repeat(256),
  'x'.repeat(257), 'x'.repeat(2048), 'x'.repeat(2049), '2026-01-01', '2026-1-01', null, true, false, [], {}, [1], [''], ['a', 'b'],
  { a: 1 }, { a: 'b' }, { command: ['/bin/true'] }, { shell: 'echo' }, { node: 'a.js', args: ['x'], config: { y: 1 } }, { user: 'u' },
];
const KEYS = [
  'type', 'runId', 'attempt', 'seq', 'item', 'kind', 'at', 'pid', 'x', '__proto__', 'constructor', 'exitCode', 'signal', 'timedOut',
  'error', 'result',
];
const PAYLOAD_KEYS = [
  'runId', 'attempt', 'jobName', 'planDate', 'nominalAt', 'run', 'env', 'secrets', 'cwd', 'runAs', 'timeoutMs', 'killGraceMs',
  'maxOutputBytes', 'x', '__proto__',
];

/** A small deterministic generator (the test must not be flaky). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

function mutate(base: Record<string, unknown>, r: () => number, keys = KEYS): Record<string, unknown> {
  const o: Record<string, unknown> = { ...base };
  const n = Math.floor(r() * 3);
  for (let i = 0; i < n; i++) {
    const k = keys[Math.floor(r() * keys.length)]!;
    const what = r();
    if (what < 0.3) delete o[k];
    else o[k] = VALUES[Math.floor(r() * VALUES.length)];
  }
  return o;
}

/** Frames as the wire would carry them: through JSON text (an own `__proto__` key stays a key). */
function frames(): string[] {
  const r = rng(42);
  const out: string[] = [];
  for (let i = 0; i < 20_000; i++) {
    const kind = r();
    let v: unknown;
    if (kind < 0.25) v = mutate({ type: 'accepted', runId: 7, attempt: 1 }, r);
    else if (kind < 0.35) v = mutate({ type: 'durable', seq: r() < 0.5 ? 0 : 3 }, r);
    else {
      const item = r() < 0.5
        ? mutate({ kind: r() < 0.9 ? 'started' : 'finished', runId: 7, attempt: 2, at: 1_700_000_000_000, ...(r() < 0.5 ? { pid: 4242 } : {}) }, r)
        : mutate({
          kind: r() < 0.9 ? 'finished' : 'lost', runId: 7, attempt: 2, at: 1_700_000_000_000, exitCode: r() < 0.5 ? 0 : null,
          signal: r() < 0.5 ? null : 'SIGTERM', timedOut: false, ...(r() < 0.3 ? { error: 'cannot start' } : {}), ...(r() < 0.3 ? { result: { rows: 3 } } : {}),
        }, r);
      v = r() < 0.5 ? { type: 'report', seq: 3, item } : mutate({ type: 'report', seq: 3, item }, r);
    }
    out.push(JSON.stringify(v).replace('"x":', r() < 0.3 ? '"__proto__":' : '"x":'));
  }
  return out;
}

describe('agent frames by the quick path', () => {
  it('accepts exactly what the schema accepts, with the same result', () => {
    let quick = 0;
    let refused = 0;
    for (const f of frames()) {
      const raw = JSON.parse(f);
      const schema = agentMessage.safeParse(raw);
      const fast = agentFast(JSON.parse(f));
      if (fast !== undefined) {
        quick++;
        expect(schema.success, f).toBe(true);
        expect(fast, f).toEqual(schema.data);
      } else if (!schema.success) refused++;
      else expect(schema.data.type === 'report' && !['started', 'finished'].includes(schema.data.item.kind), f).toBe(true); // only other shapes fall through
    }
    // The generator reaches both sides of every rule.
    expect(quick).toBeGreaterThan(2_000);
    expect(refused).toBeGreaterThan(2_000);
  });

  it('takes the commonest frames quickly and leaves the errors to the schema', () => {
    expect(agentFast({ type: 'accepted', runId: 1, attempt: 1 })).toEqual({ type: 'accepted', runId: 1, attempt: 1 });
    expect(agentFast({ type: 'report', seq: 1, item: { kind: 'started', runId: 1, attempt: 1, at: 0, pid: -3 } }))
      .toEqual({ type: 'report', seq: 1, item: { kind: 'started', runId: 1, attempt: 1, at: 0, pid: -3 } });
    expect(agentFast({ type: 'durable', seq: 0 })).toEqual({ type: 'durable', seq: 0 });
    for (const bad of ['{"type":"durable","seq":-1}', '{"type":"durable","seq":1.5}', '{"type":"durable"}', '{"type":"durable","seq":1,"x":1}',
      '{"type":"accepted","runId":0,"attempt":1}', '{"type":"accepted","runId":1,"attempt":1,"__proto__":{}}',
      '{"type":"report","seq":1,"item":{"kind":"started","runId":1,"attempt":1,"at":-1}}', '{"type":"report","seq":1,"item":{"kind":"started","runId":1,"attempt":1,"at":0,"pid":1.5}}']) {
      expect(agentFast(JSON.parse(bad)), bad).toBeUndefined();
      expect(parseAgentMessage(bad)).toMatchObject({ ok: false, error: { code: 'invalid' } });
    }
  });
});

/** Dispatch frames around a valid payload, and acks: through JSON text like the wire. */
function serverFrames(): string[] {
  const r = rng(7);
  const out: string[] = [];
  const runs = [{ command: ['/bin/true', '-x'] }, { shell: 'echo hi' }, { node: 'job.js' }, { node: 'job.js', args: ['a'], config: { k: [1] } }];
  for (let i = 0; i < 20_000; i++) {
    if (r() < 0.1) {
      out.push(JSON.stringify(mutate({ type: 'ack', seq: 5 }, r)));
      continue;
    }
    let run: Record<string, unknown> = runs[Math.floor(r() * runs.length)]!;
    if (r() < 0.3) run = mutate(run, r, ['command', 'shell', 'node', 'args', 'config', 'x']);
    let env: Record<string, unknown> = { PATH: '/bin', HOME: '/root' };
    if (r() < 0.2) env = mutate(env, r, ['PATH', 'HOME', '__proto__']);
    let runAs: Record<string, unknown> | undefined = r() < 0.2 ? { user: 'nobody', ...(r() < 0.5 ? { group: 'nogroup' } : {}) } : undefined;
    if (runAs && r() < 0.3) runAs = mutate(runAs, r, ['user', 'group', 'x']);
    let payload: Record<string, unknown> = {
      runId: 11, attempt: 1, jobName: 'nightly.load', planDate: '2026-11-29', nominalAt: r() < 0.5 ? null : 1_700_000_000_000, run, env,
      secrets: r() < 0.5 ? [] : ['s3cret'], ...(r() < 0.3 ? { cwd: '/tmp' } : {}), ...(runAs ? { runAs } : {}),
      ...(r() < 0.5 ? { timeoutMs: 60_000 } : {}), killGraceMs: 5_000, maxOutputBytes: 1 << 20,
    };
    if (r() < 0.5) payload = mutate(payload, r, PAYLOAD_KEYS);
    const frame = r() < 0.9 ? { type: 'dispatch', payload } : mutate({ type: 'dispatch', payload }, r);
    out.push(JSON.stringify(frame).replaceAll('"x":', r() < 0.3 ? '"__proto__":' : '"x":'));
  }
  return out;
}

describe('server frames by the quick path', () => {
  it('accepts exactly what the schema accepts, with the same result', () => {
    let quick = 0;
    let refused = 0;
    for (const f of serverFrames()) {
      const schema = serverMessage.safeParse(JSON.parse(f));
      const fast = serverFast(JSON.parse(f));
      if (fast !== undefined) {
        quick++;
        expect(schema.success, f).toBe(true);
        expect(fast, f).toEqual(schema.data);
      } else if (!schema.success) refused++;
      else expect(f).toContain('__proto__'); // the one thing left to the schema: it drops an own __proto__ key of env
    }
    expect(quick).toBeGreaterThan(3_000);
    expect(refused).toBeGreaterThan(3_000);
  });

  it('leaves invalid dispatches to the schema, which words the error', () => {
    const ok = { runId: 1, attempt: 1, jobName: 'j', planDate: '2026-01-01', nominalAt: null, run: { command: ['/bin/true'] }, env: {}, secrets: [], killGraceMs: 0, maxOutputBytes: 1 };
    expect(serverFast({ type: 'dispatch', payload: ok })).toEqual({ type: 'dispatch', payload: ok });
    for (const bad of [{ ...ok, run: { command: [] } }, { ...ok, run: { command: ['a'], shell: 'b' } }, { ...ok, env: { A: 1 } }, { ...ok, planDate: '2026-1-1' },
      { ...ok, killGraceMs: -1 }, { ...ok, timeoutMs: 0 }, { ...ok, runAs: { group: 'g' } }, { ...ok, jobName: 'j'.repeat(257) }]) {
      const frame = JSON.stringify({ type: 'dispatch', payload: bad });
      expect(serverFast(JSON.parse(frame)), frame).toBeUndefined();
      expect(parseServerMessage(frame)).toMatchObject({ ok: false, error: { code: 'invalid' } });
    }
  });

  it('takes a finished report quickly, and leaves a bad one to the schema', () => {
    const item = { kind: 'finished', runId: 3, attempt: 1, at: 5, exitCode: 0, signal: null, timedOut: false, result: null };
    expect(agentFast({ type: 'report', seq: 9, item })).toEqual({ type: 'report', seq: 9, item });
    for (const bad of [{ ...item, exitCode: 256 }, { ...item, signal: 'S'.repeat(17) }, { ...item, timedOut: 0 }, { ...item, error: 'e'.repeat(2049) }]) {
      const frame = JSON.stringify({ type: 'report', seq: 9, item: bad });
      expect(agentFast(JSON.parse(frame)), frame).toBeUndefined();
      expect(parseAgentMessage(frame)).toMatchObject({ ok: false, error: { code: 'invalid' } });
    }
  });
});
