import { describe, expect, it } from 'vitest';
import { decide, explain, type AgentView, type JobSpec, type Snapshot, type WaitingRun } from '@batchalyzer/core';

/** The dispatch decision of brief §5–§7 as a pure function: plain data in, dispatches and reasons out. */
const NOW = Date.parse('2026-06-01T12:00:00Z');
const agent = (name: string, over: Partial<AgentView> = {}): AgentView => ({
  name, draining: false, kinds: { command: true, shell: true, node: true }, active: 0, lastDispatchAt: 0, ...over,
});
const job = (over: Partial<JobSpec> = {}): JobSpec => ({ run: { shell: 'true' }, on: { group: 'all' }, ...over }) as JobSpec;
let nextId = 1;
const run = (over: Partial<WaitingRun> = {}): WaitingRun => ({
  id: nextId++, jobName: `job-${nextId}`, planDate: '2026-06-01', dueAt: NOW - 1000, priority: 0, held: false, targetAgent: null, spec: job(), ...over,
});
const snap = (over: Partial<Snapshot> = {}): Snapshot => ({
  now: NOW, waiting: [], activeByJob: new Map(), conditions: new Set(), conditionNames: new Set(), posters: new Map(),
  resources: {}, poolHolders: new Map(), rateTakes: new Map(), agents: [agent('a1'), agent('a2')], offlineAgents: new Set(),
  groups: { all: ['a1', 'a2'] }, agingMs: 60_000, ...over,
});

describe('decide', () => {
  it('waits for the due time and asks to be woken then', () => {
    const r = run({ dueAt: NOW + 5000 });
    const d = decide(snap({ waiting: [r] }));
    expect(d.dispatch).toEqual([]);
    expect(d.waiting.get(r.id)).toEqual({ code: 'not-due', until: NOW + 5000 });
    expect(d.wakeAt).toBe(NOW + 5000);
  });

  it('never dispatches a held run', () => {
    const r = run({ held: true });
    expect(decide(snap({ waiting: [r] })).waiting.get(r.id)).toEqual({ code: 'held' });
  });

  it('requires conditions of the same plan date, the previous date or any date, and any-of lists', () => {
    const same = run({ spec: job({ requires: ['a'] }) });
    const prev = run({ spec: job({ requires: [{ condition: 'b', date: 'previous' }] }) });
    const any = run({ spec: job({ requires: [{ condition: 'c', date: 'any' }] }) });
    const anyOf = run({ spec: job({ requires: [{ anyOf: ['x', 'y'] }] }) });
    const s = snap({ waiting: [same, prev, any, anyOf], conditions: new Set(['a@2026-05-31', 'b@2026-06-01', 'y@2026-06-01']), conditionNames: new Set(['c']), posters: new Map([['a', ['producer']]]) });
    const d = decide(s);
    expect(d.dispatch.map((x) => x.runId).sort()).toEqual([any.id, anyOf.id].sort());
    expect(d.waiting.get(same.id)).toEqual({ code: 'conditions', missing: [{ name: 'a', planDate: '2026-06-01', postedBy: ['producer'] }] });
    expect(d.waiting.get(prev.id)).toMatchObject({ code: 'conditions', missing: [{ name: 'b', planDate: '2026-05-31' }] });
  });

  it('a pool of 2 admits two runs that need 1 unit each; the third waits naming the pool and the holders', () => {
    const resources = { db: { pool: 2 } };
    const runs = [1, 2, 3].map((i) => run({ jobName: `p${i}`, spec: job({ resources: { db: 1 } }) }));
    const d = decide(snap({ waiting: runs, resources }));
    expect(d.dispatch).toHaveLength(2);
    const third = d.waiting.get(runs[2]!.id);
    expect(third).toMatchObject({ code: 'resource', resource: 'db', need: 1, capacity: 2 });
    expect((third as { holders: { runId: number }[] }).holders.map((h) => h.runId)).toEqual([runs[0]!.id, runs[1]!.id]);
  });

  it('a rate of 2 per minute admits 2 starts in the window and says when the next is free', () => {
    const resources = { api: { rate: '2/1m' } };
    const runs = [1, 2, 3].map((i) => run({ jobName: `r${i}`, spec: job({ resources: { api: 1 } }) }));
    const d = decide(snap({ waiting: runs, resources, rateTakes: new Map([['api', [NOW - 50_000]]]) }));
    expect(d.dispatch).toHaveLength(1);
    expect(d.waiting.get(runs[1]!.id)).toMatchObject({ code: 'rate', resource: 'api', freeAt: NOW + 10_000 });
    expect(d.wakeAt).toBe(NOW + 10_000);
  });

  it('per-agent pools send two jobs to two agents and hold the third', () => {
    const resources = { 'cpu-{agent}': { pool: 2 } };
    const runs = [1, 2, 3].map((i) => run({ jobName: `c${i}`, spec: job({ resources: { 'cpu-{agent}': 2 } }) }));
    const d = decide(snap({ waiting: runs, resources }));
    expect(d.dispatch.map((x) => [x.agent, x.pools[0]!.resource]).sort()).toEqual([['a1', 'cpu-a1'], ['a2', 'cpu-a2']]);
    expect(d.waiting.get(runs[2]!.id)).toMatchObject({ code: 'resource' });
  });

  it('targets only the named agent, and only members of nested groups', () => {
    const onA1 = run({ spec: job({ on: { agent: 'a1' } }) });
    const nested = run({ spec: job({ on: { group: 'outer' } }) });
    const s = snap({ waiting: [onA1, nested], agents: [agent('a2'), agent('a3'), agent('x')], offlineAgents: new Set(['a1']), groups: { inner: ['a3'], outer: ['inner'] } });
    const d = decide(s);
    expect(d.dispatch).toEqual([{ runId: nested.id, agent: 'a3', pools: [], rates: [] }]);
    expect(d.waiting.get(onA1.id)).toEqual({ code: 'no-agent', considered: [{ agent: 'a1', why: 'not connected' }] });
  });

  it('chooses fairly: the least busy agent, then the one idle longest', () => {
    const d = decide(snap({ waiting: [run(), run(), run()], agents: [agent('a1', { active: 1 }), agent('a2', { lastDispatchAt: 5 }), agent('a3')], groups: { all: ['a1', 'a2', 'a3'] } }));
    expect(d.dispatch.map((x) => x.agent)).toEqual(['a3', 'a2', 'a1']);
  });

  it('skips draining agents and agents that refuse the kind of job', () => {
    const r = run({ spec: job({ run: { node: 'x.js' } }) });
    const d = decide(snap({ waiting: [r], agents: [agent('a1', { draining: true }), agent('a2', { kinds: { command: true, shell: true, node: false } })] }));
    expect(d.waiting.get(r.id)).toEqual({ code: 'no-agent', considered: [{ agent: 'a1', why: 'draining' }, { agent: 'a2', why: 'refuses node jobs' }] });
  });

  it('limits concurrency per job (default 1)', () => {
    const a = run({ jobName: 'same' });
    const b = run({ jobName: 'same' });
    const c = run({ jobName: 'wide', spec: job({ concurrency: { max: 2 } }) });
    const d2 = run({ jobName: 'wide', spec: job({ concurrency: { max: 2 } }) });
    const d = decide(snap({ waiting: [a, b, c, d2] }));
    expect(d.dispatch.map((x) => x.runId).sort()).toEqual([a.id, c.id, d2.id].sort());
    expect(d.waiting.get(b.id)).toMatchObject({ code: 'concurrency', max: 1 });
  });

  it('higher priority first; a waiting run ages so that it does not starve; the blocked pool is reserved', () => {
    const resources = { one: { pool: 1 } };
    const low = run({ jobName: 'low', priority: 0, dueAt: NOW - 10 * 60_000, spec: job({ resources: { one: 1 } }) });
    const high = run({ jobName: 'high', priority: 5, spec: job({ resources: { one: 1 } }) });
    expect(decide(snap({ waiting: [low, high], resources })).dispatch.map((x) => x.runId)).toEqual([low.id]); // aged 10 > 5
    const fresh = run({ jobName: 'low2', priority: 0, spec: job({ resources: { one: 1 } }) });
    const d = decide(snap({ waiting: [fresh, high], resources }));
    expect(d.dispatch.map((x) => x.runId)).toEqual([high.id]);
    // A big request waiting for the pool keeps smaller, lower ones from taking it.
    const big = run({ jobName: 'big', priority: 9, spec: job({ resources: { two: 2 } }) });
    const small = run({ jobName: 'small', priority: 0, spec: job({ resources: { two: 1 } }) });
    const d3 = decide(snap({ waiting: [small, big], resources: { two: { pool: 2 } }, poolHolders: new Map([['two', [{ runId: 999, units: 1 }]]]) }));
    expect(d3.dispatch).toEqual([]);
    expect(d3.waiting.get(small.id)).toMatchObject({ code: 'resource', blockedBy: big.id });
  });

  it('explain lists every reason at once', () => {
    const r = run({ held: true, dueAt: NOW + 1000, spec: job({ requires: ['ready'], on: { agent: 'gone' } }) });
    const reasons = explain(r.id, snap({ waiting: [r], posters: new Map([['ready', ['maker']]]) }));
    expect(reasons.map((x) => x.code)).toEqual(['not-due', 'held', 'conditions', 'no-agent']);
    expect(reasons[3]).toEqual({ code: 'no-agent', considered: [{ agent: 'gone', why: 'not registered' }] });
  });
});

describe('dependency graph', () => {
  it('links posters to requirers through conditions and lists requirements nobody posts', async () => {
    const { dependencyGraph, emptyDefinitions } = await import('@batchalyzer/core');
    const defs = emptyDefinitions();
    defs.jobs = {
      backup: job({ posts: { success: ['backup-done'], failure: ['backup-failed'] } }),
      archive: job({ requires: ['backup-done', { condition: 'manual-ok', date: 'any' }] }),
      cleanup: job({ requires: [{ anyOf: ['backup-failed', { condition: 'backup-done', date: 'previous' }] }] }),
    };
    const g = dependencyGraph(defs);
    expect(g.jobs).toEqual(['archive', 'backup', 'cleanup']);
    expect(g.edges).toEqual([
      { from: 'backup', to: 'archive', condition: 'backup-done', on: 'success', date: 'same' },
      { from: 'backup', to: 'cleanup', condition: 'backup-failed', on: 'failure', date: 'same' },
      { from: 'backup', to: 'cleanup', condition: 'backup-done', on: 'success', date: 'previous' },
    ]);
    expect(g.unposted).toEqual([{ job: 'archive', condition: 'manual-ok' }]);
  });
});

describe('DueHeap', () => {
  it('pops due times in order', async () => {
    const { DueHeap } = await import('@batchalyzer/core');
    const h = new DueHeap<number>();
    const values = Array.from({ length: 500 }, (_, i) => (i * 7919) % 1000);
    values.forEach((v, i) => h.push(v, i));
    const out: number[] = [];
    while (h.size) out.push(h.pop()!.at);
    expect(out).toEqual([...values].sort((a, b) => a - b));
  });

  it('keeps the order when pushes and pops interleave, with many equal times', async () => {
    const { DueHeap } = await import('@batchalyzer/core');
    const h = new DueHeap<number>();
    const held: number[] = [];
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let step = 0; step < 5000; step++) {
      if (rand() < 0.6 || held.length === 0) {
        const at = Math.floor(rand() * 50);
        h.push(at, step);
        held.push(at);
      } else {
        held.sort((a, b) => a - b);
        expect(h.peek()!.at).toBe(held[0]);
        expect(h.pop()!.at).toBe(held.shift());
      }
      expect(h.size).toBe(held.length);
    }
  });
});
