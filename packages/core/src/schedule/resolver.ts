import {
  type AgentView, concurrencyKey, type Decision, type Dispatch, expandResource, expandTarget, type MapLike, missingConditions, noPlaceReason, placeRun, runKind,
  type Snapshot, take, type WaitingRun, type WaitReason, type Working,
} from './decide.js';
import { parseDuration } from '../duration.js';
import { DueHeap } from './heap.js';

/**
 * Incremental dispatch decision: the same answers as `decide` (the reference, see the property test), but a pass
 * re-decides only the runs that an event can have changed, not every waiting run (docs/performance.md, resolve).
 *
 * Waiting runs are filed under what blocks them: a due-time heap (not due), the held set, each missing condition
 * key, and, once past those gates, their concurrency key and every resource they could take. The engine reports
 * changes (a condition posted, a pool's holders changed, a job's active runs changed, a run added or gone); a pass
 * re-decides the runs filed under a changed key, in decision order. Runs that are not re-decided keep their
 * outcome: in a pass the working state only fills up (pools and rates are only taken, reservations only added),
 * so a run whose keys did not change is blocked as before, for the same reason.
 *
 * Priority reservation crosses runs: the first run in order blocked on a full pool reserves it. Reservations
 * survive between passes with their run; a reservation held by a run later in order than the one being decided
 * is not visible to it (as in `decide`, which walks in order), and when a decided run takes, reserves or lets go
 * of a resource, the runs after it filed under that resource are re-decided in the same pass.
 *
 * Aging changes the order only between runs of different base priority: with more than one base priority among
 * the waiting runs, a pass at a new instant re-decides every run past the static gates (as `decide` would).
 * Agents connecting, leaving or draining, and definitions changing, do the same.
 */

/** What the decision reads, live from the engine's mirror: a Snapshot without the list of waiting runs. */
export type LiveState = Omit<Snapshot, 'waiting'>;

type Gate = 'new' | 'due' | 'held' | 'conditions' | 'concurrency' | 'agent' | 'contender' | 'dispatched';

interface Entry {
  run: WaitingRun;
  gate: Gate;
  /** Index keys the run is filed under. */
  keys: string[];
  /** The resource this run reserves (it is the first in line blocked on it). */
  reserved: string | null;
  reason: WaitReason | null;
  queued: number;
  done: number;
}

interface Shape {
  candidates: string[];
  kind: 'command' | 'shell' | 'node';
  /** No candidate is connected, accepting and not draining: the reason depends on the agents only. */
  noAgent: boolean;
  /** Every resource the run could take on any candidate, with the window of the rates. */
  resources: { key: string; rateWindowMs: number | null }[];
}

export class Resolver {
  private readonly entries = new Map<number, Entry>();
  private readonly byKey = new Map<string, Set<Entry>>();
  private readonly due = new DueHeap<number>();
  private readonly reservations = new Map<string, Entry>();
  private readonly priorities = new Map<number, number>();
  private readonly dirtyRuns = new Set<Entry>();
  private readonly dirtyKeys = new Set<string>();
  private readonly rateKeys = new Map<string, number>();
  private readonly rateSig = new Map<string, string>();
  private readonly rateWake = new Map<string, number>();
  private shapes = new Map<string, Shape>();
  /** Everything past the static gates is re-decided at the next pass; `all`: every run, gates included. */
  private full: 'no' | 'past-gates' | 'all' = 'all';
  private agentSig = '';
  private lastNow = Number.NaN;
  private pass = 0;

  // State of the pass in progress.
  private now = 0;
  private agingMs = 1;
  private current: Entry | null = null;
  private orderDependent = false;
  private queue: Entry[] = [];
  private cascaded = new Set<string>();

  get size(): number {
    return this.entries.size;
  }

  /** A run that waits (new, or changed: held, released, put back after a refused dispatch). */
  upsert(run: WaitingRun): void {
    let e = this.entries.get(run.id);
    if (e) {
      this.countPriority(e.run.priority, -1);
      e.run = run;
      if (e.gate === 'dispatched') e.gate = 'new';
    } else {
      e = { run, gate: 'new', keys: [], reserved: null, reason: null, queued: -1, done: -1 };
      this.entries.set(run.id, e);
    }
    this.countPriority(run.priority, 1);
    this.dirtyRuns.add(e);
  }

  /** A run that no longer waits (dispatched, ended, deleted). */
  remove(runId: number): void {
    const e = this.entries.get(runId);
    if (!e) return;
    this.unfile(e);
    this.letGo(e);
    this.countPriority(e.run.priority, -1);
    this.dirtyRuns.delete(e);
    this.entries.delete(runId);
  }

  conditionAdded(name: string, planDate: string): void {
    this.dirtyKeys.add(`c:${name}@${planDate}`);
    this.dirtyKeys.add(`a:${name}`);
  }

  /** A condition taken back: runs that passed it may wait again. Rare (operator action): everything is re-decided. */
  conditionRemoved(): void {
    this.full = 'all';
  }

  /** The dispatched or running runs of a concurrency key changed. */
  activeChanged(ckey: string): void {
    this.dirtyKeys.add(`j:${ckey}`);
  }

  /** A pool's holders changed. */
  resourceChanged(resource: string): void {
    this.dirtyKeys.add(`r:${resource}`);
  }

  /** Definitions changed (resources, groups, posters): every run is decided again. */
  reset(): void {
    this.full = 'all';
  }

  /** The last reason computed for a waiting run (tests compare it with `decide`). */
  reasonOf(runId: number): WaitReason | null {
    return this.entries.get(runId)?.reason ?? null;
  }

  /**
   * One pass: dispatches in decision order and the reasons of the runs decided again (the others keep theirs).
   * Dispatched runs are left out until the engine reports them gone (`remove`) or back (`upsert`).
   */
  decide(s: LiveState): Decision {
    this.pass++;
    this.now = s.now;
    this.agingMs = s.agingMs;
    this.queue = [];
    this.cascaded = new Set();
    const agentSig = agentSignature(s);
    if (agentSig !== this.agentSig && this.full === 'no') this.full = 'past-gates';
    this.agentSig = agentSig;
    if (this.priorities.size > 1 && s.now !== this.lastNow && this.full === 'no') this.full = 'past-gates';
    this.lastNow = s.now;

    if (this.full !== 'no') {
      this.shapes = new Map();
      this.reservations.clear();
      this.rateWake.clear();
      for (const e of this.entries.values()) {
        e.reserved = null;
        if (this.full === 'all' || (e.gate !== 'due' && e.gate !== 'held' && e.gate !== 'conditions' && e.gate !== 'dispatched')) this.enqueue(e);
      }
      this.full = 'no';
    }
    // A rate frees up as its takes leave the window: seen as a change of the takes within the window.
    for (const [key, windowMs] of this.rateKeys) {
      const sig = rateSignature(s.rateTakes.get(key), s.now - windowMs);
      if (this.rateSig.get(key) !== sig) this.dirtyKeys.add(`r:${key}`);
      this.rateSig.set(key, sig);
    }
    for (const key of this.dirtyKeys) {
      if (key.startsWith('r:')) this.rateWake.delete(key.slice(2));
      this.cascaded.add(key);
      for (const e of this.byKey.get(key) ?? []) this.enqueue(e);
    }
    this.dirtyKeys.clear();
    for (const e of this.dirtyRuns) this.enqueue(e);
    this.dirtyRuns.clear();
    for (let top = this.due.peek(); top && top.at <= s.now; top = this.due.peek()) {
      this.due.pop();
      const e = this.entries.get(top.key);
      if (e?.gate === 'due' && e.run.dueAt === top.at) this.enqueue(e);
    }
    return this.walk(s);
  }

  private walk(s: LiveState): Decision {
    const dispatch: Dispatch[] = [];
    const waiting = new Map<number, WaitReason>();
    const agents = new Map(s.agents.map((a) => [a.name, a]));
    const jobOwn = new Map<string, number>();
    const w: Working = {
      agentActive: new Map(s.agents.map((a) => [a.name, a.active])),
      agentLast: new Map(s.agents.map((a) => [a.name, a.lastDispatchAt])),
      pools: overlay(s.poolHolders),
      rates: overlay(s.rateTakes),
      jobActive: { get: (k) => jobOwn.get(k) ?? s.activeByJob.get(k)?.length, set: (k, v) => jobOwn.set(k, v) },
      reserved: {
        get: (resource) => {
          const x = this.reservations.get(resource);
          if (!x) return undefined;
          if (x.done === this.pass || this.before(x, this.current!)) return x.run.id;
          // Reserved by a run after this one: not in its way, but the answer depends on the position.
          this.orderDependent = true;
          return undefined;
        },
        set: () => undefined,
      },
    };
    const snapshot = { ...s, waiting: [] } as Snapshot;
    // As in decide: runs of one shape share an answer while nothing in the working state changed.
    let version = 0;
    const blocked = new Map<string, { version: number; reason: WaitReason }>();
    const noAgent = new Map<string, WaitReason>();
    for (let e = this.pop(); e; e = this.pop()) {
      this.current = e;
      e.done = this.pass;
      this.unfile(e);
      const before = e.reserved;
      if (before !== null && this.reservations.get(before) === e) this.reservations.delete(before);
      e.reserved = null;
      const run = e.run;
      const reason = ((): WaitReason | null => {
        if (run.dueAt > s.now) {
          e.gate = 'due';
          this.due.push(run.dueAt, run.id);
          return { code: 'not-due', until: run.dueAt };
        }
        if (run.held) {
          e.gate = 'held';
          return { code: 'held' };
        }
        const missing = missingConditions(run, snapshot);
        if (missing.length) {
          e.gate = 'conditions';
          for (const m of missing) this.file(e, m.planDate === 'any' ? `a:${m.name}` : `c:${m.name}@${m.planDate}`);
          return { code: 'conditions', missing };
        }
        const ckey = concurrencyKey(run.jobName, run.targetAgent);
        this.file(e, `j:${ckey}`);
        const max = run.spec.concurrency?.max ?? 1;
        if ((w.jobActive.get(ckey) ?? 0) >= max) {
          e.gate = 'concurrency';
          return { code: 'concurrency', max, active: s.activeByJob.get(ckey) ?? [] };
        }
        const onKey = run.targetAgent !== null ? `@${run.targetAgent}` : JSON.stringify(run.spec.on);
        const shapeKey = `${onKey}|${runKind(run.spec)}|${run.spec.resources ? JSON.stringify(run.spec.resources) : ''}`;
        const shape = this.shapeOf(shapeKey, run, agents, s);
        if (shape.noAgent) {
          e.gate = 'agent';
          let r = noAgent.get(shapeKey);
          if (!r) noAgent.set(shapeKey, (r = noPlaceReason(shape.candidates, placeRun(run, shape.kind, shape.candidates, agents, snapshot, w))));
          return r;
        }
        e.gate = 'contender';
        for (const r of shape.resources) {
          this.file(e, `r:${r.key}`);
          if (r.rateWindowMs !== null && !this.rateKeys.has(r.key)) this.rateKeys.set(r.key, r.rateWindowMs);
        }
        const known = blocked.get(shapeKey);
        if (known && known.version === version) return this.noted(known.reason);
        this.orderDependent = false;
        const placed = placeRun(run, shape.kind, shape.candidates, agents, snapshot, w);
        if (placed.best) {
          version++;
          this.unfile(e);
          e.gate = 'dispatched';
          const d = take(run, ckey, placed.best, snapshot, w);
          dispatch.push(d);
          for (const p of d.pools) this.cascade(`r:${p.resource}`, e);
          for (const r of d.rates) this.cascade(`r:${r.resource}`, e);
          this.cascade(`j:${ckey}`, e);
          return null;
        }
        const r = noPlaceReason(shape.candidates, placed);
        const v = version;
        if (r.code === 'resource' && r.blockedBy === undefined) {
          this.reservations.set(r.resource, e);
          e.reserved = r.resource;
          version++;
        }
        if (version === v && !this.orderDependent) blocked.set(shapeKey, { version, reason: r });
        return this.noted(r);
      })();
      if (before !== e.reserved) {
        if (before !== null) this.cascade(`r:${before}`, e);
        if (e.reserved !== null) this.cascade(`r:${e.reserved}`, e);
      }
      e.reason = reason;
      if (reason) waiting.set(run.id, reason);
    }
    this.current = null;
    let wakeAt: number | null = null;
    for (let top = this.due.peek(); top; top = this.due.peek()) {
      const e = this.entries.get(top.key);
      if (e?.gate === 'due' && e.run.dueAt === top.at) {
        wakeAt = top.at;
        break;
      }
      this.due.pop();
    }
    for (const t of this.rateWake.values()) if (wakeAt === null || t < wakeAt) wakeAt = t;
    return { dispatch, waiting, wakeAt };
  }

  /** Rate waits wake the engine when the rate frees up. */
  private noted(r: WaitReason): WaitReason {
    if (r.code === 'rate') this.rateWake.set(r.resource, Math.min(this.rateWake.get(r.resource) ?? Number.POSITIVE_INFINITY, r.freeAt));
    return r;
  }

  private shapeOf(key: string, run: WaitingRun, agents: Map<string, AgentView>, s: LiveState): Shape {
    let shape = this.shapes.get(key);
    if (shape) return shape;
    const kind = runKind(run.spec);
    const candidates = run.targetAgent ? [run.targetAgent] : expandTarget(run.spec.on, s.groups);
    const noAgent = !candidates.some((n) => {
      const a = agents.get(n);
      return a !== undefined && !a.draining && a.kinds[kind];
    });
    const resources = new Map<string, number | null>();
    for (const name of Object.keys(run.spec.resources ?? {})) {
      const def = s.resources[name];
      const windowMs = def?.rate !== undefined ? rateWindow(def.rate) : null;
      for (const a of candidates) resources.set(expandResource(name, a), windowMs);
    }
    shape = { candidates, kind, noAgent, resources: [...resources].map(([k, rateWindowMs]) => ({ key: k, rateWindowMs })) };
    this.shapes.set(key, shape);
    return shape;
  }

  /** The runs after `from` filed under `key` are decided again in this pass (once per key and pass). */
  private cascade(key: string, from: Entry): void {
    if (this.cascaded.has(key)) return;
    this.cascaded.add(key);
    if (key.startsWith('r:')) this.rateWake.delete(key.slice(2));
    for (const e of this.byKey.get(key) ?? []) if (e.done !== this.pass && this.before(from, e)) this.enqueue(e);
  }

  /** A run that leaves gives up its reservation: the runs waiting on that resource are decided again. */
  private letGo(e: Entry): void {
    if (e.reserved !== null && this.reservations.get(e.reserved) === e) {
      this.reservations.delete(e.reserved);
      this.dirtyKeys.add(`r:${e.reserved}`);
    }
    e.reserved = null;
  }

  private file(e: Entry, key: string): void {
    let set = this.byKey.get(key);
    if (!set) this.byKey.set(key, (set = new Set()));
    set.add(e);
    e.keys.push(key);
  }

  private unfile(e: Entry): void {
    for (const key of e.keys) {
      const set = this.byKey.get(key);
      set?.delete(e);
      if (set?.size === 0) this.byKey.delete(key);
    }
    e.keys = [];
  }

  private countPriority(p: number, d: number): void {
    const n = (this.priorities.get(p) ?? 0) + d;
    if (n > 0) this.priorities.set(p, n);
    else this.priorities.delete(p);
  }

  private effective(r: WaitingRun): number {
    return r.priority + Math.max(0, Math.floor((this.now - r.dueAt) / this.agingMs));
  }

  /** Decision order of `decide`: effective priority, then due time, then id. */
  private before(a: Entry, b: Entry): boolean {
    const pa = this.effective(a.run);
    const pb = this.effective(b.run);
    if (pa !== pb) return pa > pb;
    if (a.run.dueAt !== b.run.dueAt) return a.run.dueAt < b.run.dueAt;
    return a.run.id < b.run.id;
  }

  // A binary heap of entries in decision order.
  private enqueue(e: Entry): void {
    if (e.queued === this.pass || e.gate === 'dispatched') return;
    e.queued = this.pass;
    const q = this.queue;
    q.push(e);
    let i = q.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(e, q[p]!)) break;
      q[i] = q[p]!;
      i = p;
    }
    q[i] = e;
  }

  private pop(): Entry | undefined {
    const q = this.queue;
    const top = q[0];
    const last = q.pop();
    if (q.length > 0 && last) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = l < q.length && this.before(q[l]!, last) ? l : -1;
        if (r < q.length && this.before(q[r]!, m === -1 ? last : q[l]!)) m = r;
        if (m === -1) break;
        q[i] = q[m]!;
        i = m;
      }
      q[i] = last;
    }
    return top;
  }
}

function overlay<V>(base: ReadonlyMap<string, V>): MapLike<string, V> {
  const own = new Map<string, V>();
  return { get: (k) => (own.has(k) ? own.get(k) : base.get(k)), set: (k, v) => own.set(k, v) };
}

function agentSignature(s: LiveState): string {
  const parts = s.agents.map((a) => `${a.name}:${a.draining ? 1 : 0}${a.kinds.command ? 1 : 0}${a.kinds.shell ? 1 : 0}${a.kinds.node ? 1 : 0}`).sort();
  return `${parts.join(',')}|${[...s.offlineAgents].sort().join(',')}`;
}

/** Takes within the window: their number and the latest (a take added or one expiring changes it). */
function rateSignature(takes: number[] | undefined, after: number): string {
  if (!takes) return '0';
  let n = 0;
  for (const t of takes) if (t > after) n++;
  return `${n}:${takes[takes.length - 1]}`;
}

function rateWindow(rate: string): number {
  return parseDuration(rate.split('/')[1]!) as number;
}
