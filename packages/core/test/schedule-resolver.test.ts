import { describe, expect, it } from 'vitest';
import {
  concurrencyKey, decide, type AgentView, type JobSpec, type LiveState, Resolver, type ResourceSpec, type WaitingRun, type WaitReason,
} from '@batchalyzer/core';

/**
 * The incremental resolver must give exactly what the reference `decide` gives on the same state: the same
 * dispatches in the same order, and for every waiting run the same reason, on random sequences of events.
 */
const T0 = Date.parse('2026-06-01T12:00:00Z');
const DATE = '2026-06-01';
const AGENTS = ['a1', 'a2', 'a3', 'a4'];
const resources: Record<string, ResourceSpec> = {
  p1: { pool: 2 }, p2: { pool: 3 }, 'cpu-{agent}': { pool: 1 }, big: { pool: 4 }, r1: { rate: '2/1m' }, r2: { rate: '3/30s' },
};
const groups = { all: AGENTS, g12: ['a1', 'a2'] };

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

/** A small world kept like the engine's mirror, reporting every change to the resolver. */
class World {
  now = T0;
  waiting = new Map<number, WaitingRun>();
  active = new Map<number, { ckey: string; agent: string }>();
  activeByJob = new Map<string, number[]>();
  conditions = new Set<string>();
  names = new Map<string, number>();
  holders = new Map<string, { runId: number; units: number }[]>();
  takes = new Map<string, number[]>();
  connected = new Map<string, { draining: boolean; kinds: AgentView['kinds'] }>();
  last = new Map<string, number>();
  nextId = 1;
  readonly resolver = new Resolver();

  constructor(readonly r: () => number, readonly mixed: boolean) {}

  pick<T>(xs: T[]): T {
    return xs[Math.floor(this.r() * xs.length)]!;
  }

  addRun(): void {
    const r = this.r;
    const requires: JobSpec['requires'] = [];
    if (r() < 0.5) requires.push(`c${Math.floor(r() * 4)}`);
    if (r() < 0.15) requires.push({ condition: `c${Math.floor(r() * 4)}`, date: r() < 0.5 ? 'previous' : 'any' });
    if (r() < 0.1) requires.push({ anyOf: [`c${Math.floor(r() * 4)}`, { condition: 'c9', date: 'any' }] });
    const res: Record<string, number> = {};
    if (r() < 0.5) res.p1 = 1;
    if (r() < 0.3) res.p2 = r() < 0.5 ? 1 : 2;
    if (r() < 0.2) res['cpu-{agent}'] = 1;
    if (r() < 0.15) res.big = 3;
    if (r() < 0.2) res.r1 = 1;
    if (r() < 0.1) res.r2 = 1;
    if (r() < 0.03) res.nosuch = 1;
    const on = this.pick([{ group: 'all' }, { group: 'all' }, { group: 'g12' }, { agent: 'a3' }, { agents: ['a4', 'a9'] }, { group: 'nosuch' }]);
    const spec = {
      run: this.pick([{ shell: 'true' }, { command: ['/bin/true'] }, { node: 'x.js' }]), on,
      ...(requires.length ? { requires } : {}), ...(Object.keys(res).length ? { resources: res } : {}),
      ...(r() < 0.3 ? { concurrency: { max: 1 + Math.floor(r() * 3) } } : {}),
    } as JobSpec;
    const id = this.nextId++;
    const run: WaitingRun = {
      id, jobName: `j${Math.floor(r() * 12)}`, planDate: DATE, dueAt: this.now + Math.floor((r() - 0.7) * 200_000),
      priority: this.mixed && r() < 0.4 ? Math.floor(r() * 3) : 0, held: r() < 0.08,
      targetAgent: r() < 0.1 ? this.pick(AGENTS) : null, spec,
    };
    this.waiting.set(id, run);
    this.resolver.upsert(run);
  }

  step(): void {
    const r = this.r();
    if (r < 0.3) for (let i = Math.floor(this.r() * 4); i >= 0; i--) this.addRun();
    else if (r < 0.45) this.finishOne();
    else if (r < 0.55) {
      const c = `c${Math.floor(this.r() * 4)}`;
      const date = this.r() < 0.8 ? DATE : '2026-05-31';
      if (!this.conditions.has(`${c}@${date}`)) {
        this.conditions.add(`${c}@${date}`);
        this.names.set(c, (this.names.get(c) ?? 0) + 1);
      }
      this.resolver.conditionAdded(c, date);
    } else if (r < 0.57 && this.conditions.size) {
      const key = this.pick([...this.conditions]);
      this.conditions.delete(key);
      const name = key.split('@')[0]!;
      const n = this.names.get(name)! - 1;
      if (n) this.names.set(name, n);
      else this.names.delete(name);
      this.resolver.conditionRemoved();
    } else if (r < 0.65 && this.waiting.size) {
      const run = this.pick([...this.waiting.values()]);
      const next = { ...run, held: !run.held };
      this.waiting.set(run.id, next);
      this.resolver.upsert(next);
    } else if (r < 0.8) this.now += Math.floor(this.r() * 90_000);
    else if (r < 0.9) {
      const name = this.pick(AGENTS);
      if (this.connected.has(name) && this.r() < 0.5) this.connected.delete(name);
      else {
        const kinds = { command: true, shell: this.r() < 0.8, node: this.r() < 0.8 };
        this.connected.set(name, { draining: this.r() < 0.15, kinds });
      }
    }
  }

  finishOne(): void {
    if (!this.active.size) return;
    const id = this.pick([...this.active.keys()]);
    const a = this.active.get(id)!;
    this.active.delete(id);
    this.activeByJob.set(a.ckey, this.activeByJob.get(a.ckey)!.filter((x) => x !== id));
    if (this.activeByJob.get(a.ckey)!.length === 0) this.activeByJob.delete(a.ckey);
    this.resolver.activeChanged(a.ckey);
    for (const [res, list] of [...this.holders]) {
      if (!list.some((h) => h.runId === id)) continue;
      const kept = list.filter((h) => h.runId !== id);
      if (kept.length) this.holders.set(res, kept);
      else this.holders.delete(res);
      this.resolver.resourceChanged(res);
    }
  }

  live(): LiveState {
    const agents: AgentView[] = [...this.connected].map(([name, c]) => ({
      name, draining: c.draining, kinds: c.kinds, lastDispatchAt: this.last.get(name) ?? 0,
      active: [...this.active.values()].filter((a) => a.agent === name).length,
    }));
    for (const [res, list] of [...this.takes]) this.takes.set(res, list.filter((t) => t > this.now - 60_000));
    return {
      now: this.now, activeByJob: this.activeByJob, conditions: this.conditions, conditionNames: new Set(this.names.keys()),
      posters: new Map([['c1', ['poster']]]), resources, poolHolders: this.holders, rateTakes: this.takes, agents,
      offlineAgents: new Set(AGENTS.filter((a) => !this.connected.has(a))), groups, agingMs: 60_000,
    };
  }

  /** One pass of both; the resolver's dispatches are then applied as the engine would. */
  compare(): number {
    const live = this.live();
    const full = decide({ ...live, waiting: [...this.waiting.values()] });
    const inc = this.resolver.decide(live);
    expect(inc.dispatch).toEqual(full.dispatch);
    // Runs decided again in this pass: exactly decide's reason. The others keep theirs, except what changes
    // with every dispatch of a pool they queue for (holders, first in line) or with a rate's window (free time).
    const ids = [...this.waiting.keys()].filter((id) => full.waiting.has(id));
    const now = (id: number) => (inc.waiting.has(id) ? this.resolver.reasonOf(id) : stable(this.resolver.reasonOf(id)));
    const ref = (id: number) => (inc.waiting.has(id) ? full.waiting.get(id) : stable(full.waiting.get(id) ?? null));
    expect(ids.map((id) => [id, now(id)])).toEqual(ids.map((id) => [id, ref(id)]));
    if (full.wakeAt !== null) expect(inc.wakeAt).not.toBeNull();
    if (full.wakeAt !== null) expect(inc.wakeAt!).toBeLessThanOrEqual(full.wakeAt);
    for (const d of inc.dispatch) {
      const run = this.waiting.get(d.runId)!;
      this.waiting.delete(d.runId);
      this.resolver.remove(d.runId);
      const ckey = concurrencyKey(run.jobName, run.targetAgent);
      this.active.set(d.runId, { ckey, agent: d.agent });
      this.activeByJob.set(ckey, [...(this.activeByJob.get(ckey) ?? []), d.runId]);
      this.resolver.activeChanged(ckey);
      this.last.set(d.agent, this.now);
      for (const p of d.pools) {
        this.holders.set(p.resource, [...(this.holders.get(p.resource) ?? []), { runId: d.runId, units: p.units }]);
        this.resolver.resourceChanged(p.resource);
      }
      for (const q of d.rates) this.takes.set(q.resource, [...(this.takes.get(q.resource) ?? []), this.now]);
    }
    return inc.dispatch.length;
  }
}

function stable(r: WaitReason | null): unknown {
  if (r?.code === 'resource') return { ...r, holders: 'any', blockedBy: 'any' };
  if (r?.code === 'rate') return { ...r, freeAt: 'any' };
  return r;
}

describe('incremental resolver', () => {
  for (const mixed of [false, true]) {
    it(`gives the same dispatches and reasons as decide on random event sequences (${mixed ? 'mixed priorities' : 'one priority'})`, () => {
      let dispatched = 0;
      for (let seed = 1; seed <= 40; seed++) {
        const w = new World(rng(seed * 7919 + (mixed ? 1 : 0)), mixed);
        w.connected.set('a1', { draining: false, kinds: { command: true, shell: true, node: true } });
        w.connected.set('a2', { draining: false, kinds: { command: true, shell: true, node: true } });
        for (let i = 0; i < 20; i++) w.addRun();
        for (let step = 0; step < 150; step++) {
          w.step();
          // Passes do not happen after every event: several changes often land in one pass.
          if (w.r() < 0.7) dispatched += w.compare();
        }
      }
      // The sequences must exercise dispatching, not only waiting.
      expect(dispatched).toBeGreaterThan(500);
    });
  }

  it('re-decides only the runs filed under what changed', () => {
    const w = new World(rng(5), false);
    w.connected.set('a1', { draining: false, kinds: { command: true, shell: true, node: true } });
    const spec = (i: number) => ({ run: { shell: 'true' }, on: { agent: 'a1' }, requires: [`c${i}`], resources: { p1: 1 } }) as JobSpec;
    for (let i = 0; i < 100; i++) {
      const run: WaitingRun = { id: w.nextId++, jobName: `j${i}`, planDate: DATE, dueAt: T0 - 1000, priority: 0, held: false, targetAgent: null, spec: spec(i % 10) };
      w.waiting.set(run.id, run);
      w.resolver.upsert(run);
    }
    expect(w.resolver.decide(w.live()).waiting.size).toBe(100);
    // Nothing changed: nothing is decided again.
    expect(w.resolver.decide(w.live()).waiting.size).toBe(0);
    // One condition: only the 10 runs that required it.
    w.conditions.add(`c3@${DATE}`);
    w.names.set('c3', 1);
    w.resolver.conditionAdded('c3', DATE);
    expect(w.compare()).toBe(2);
    const d = w.resolver.decide(w.live());
    // The pool's holders changed with the two dispatches: the first run in line for it is decided again (it
    // reserves the pool); the 7 behind it were blocked by that reservation before and still are.
    expect([...d.waiting.keys()]).toEqual([24]);
    expect(d.waiting.get(24)).toMatchObject({ code: 'resource', resource: 'p1', holders: [{ runId: 4 }, { runId: 14 }] });
    // One of the two ends: the first in line takes its place, the next one reserves the pool.
    w.finishOne();
    expect(w.compare()).toBe(1);
  });
});
