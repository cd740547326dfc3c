import { describe, expect, it } from 'vitest';
import { agentFast } from '../src/fast.js';
import { agentMessage } from '../src/messages.js';
import { parseAgentMessage } from '../src/index.js';

// Values that sit on every edge of the schema's number rules, and values of other types.
const VALUES: unknown[] = [0, -0, 1, 2, -1, 1.5, 2 ** 53 - 1, 2 ** 53, -(2 ** 53), 1e300, '1', '', null, true, [], {}, [1], { a: 1 }];
const KEYS = ['type', 'runId', 'attempt', 'seq', 'item', 'kind', 'at', 'pid', 'x', '__proto__', 'constructor'];

/** A small deterministic generator (the test must not be flaky). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

function mutate(base: Record<string, unknown>, r: () => number): Record<string, unknown> {
  const o: Record<string, unknown> = { ...base };
  const n = Math.floor(r() * 3);
  for (let i = 0; i < n; i++) {
    const k = KEYS[Math.floor(r() * KEYS.length)]!;
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
    if (kind < 0.3) v = mutate({ type: 'accepted', runId: 7, attempt: 1 }, r);
    else {
      const item = mutate({ kind: r() < 0.9 ? 'started' : 'finished', runId: 7, attempt: 2, at: 1_700_000_000_000, ...(r() < 0.5 ? { pid: 4242 } : {}) }, r);
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
      else expect(schema.data.type === 'report' && schema.data.item.kind !== 'started', f).toBe(true); // only other shapes fall through
    }
    // The generator reaches both sides of every rule.
    expect(quick).toBeGreaterThan(2_000);
    expect(refused).toBeGreaterThan(2_000);
  });

  it('takes the commonest frames quickly and leaves the errors to the schema', () => {
    expect(agentFast({ type: 'accepted', runId: 1, attempt: 1 })).toEqual({ type: 'accepted', runId: 1, attempt: 1 });
    expect(agentFast({ type: 'report', seq: 1, item: { kind: 'started', runId: 1, attempt: 1, at: 0, pid: -3 } }))
      .toEqual({ type: 'report', seq: 1, item: { kind: 'started', runId: 1, attempt: 1, at: 0, pid: -3 } });
    for (const bad of ['{"type":"accepted","runId":0,"attempt":1}', '{"type":"accepted","runId":1,"attempt":1,"__proto__":{}}',
      '{"type":"report","seq":1,"item":{"kind":"started","runId":1,"attempt":1,"at":-1}}', '{"type":"report","seq":1,"item":{"kind":"started","runId":1,"attempt":1,"at":0,"pid":1.5}}']) {
      expect(agentFast(JSON.parse(bad)), bad).toBeUndefined();
      expect(parseAgentMessage(bad)).toMatchObject({ ok: false, error: { code: 'invalid' } });
    }
  });
});
