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
  ckey: string;
  /** `j:` + ckey: the key of the run's concurrency index. */
  jkey: string;
  shapeKey: string;
  gate: Gate;
  /** Keys of unordered indexes (conditions, concurrency) the run is filed under. */
  keys: string[];
  /** Resources whose ordered list the run is in (contenders), with the run as filed (its place in the order). */
  resources: string[];
  filedShape: string | null;
  filedRun: WaitingRun | null;
  /** The resource this run reserves (it is the first in line blocked on it). */
  reserved: string | null;
  reason: WaitReason | null;
  /** Resources its last placement looked at: a change of any other cannot change its outcome. */
  touched: string[] | null;
  queued: number;
  done: number;
}

/** Walks one resource's runs in order from a position; stops where the rest cannot have changed (see `settled`). */
interface Cursor {
  resource: string;
  after: WaitingRun | null;
  head: Entry | undefined;
}

interface Shape {
  candidates: string[];
  kind: 'command' | 'shell' | 'node';
  /** No candidate is connected, accepting and not draining: the reason depends on the agents only. */
  noAgent: boolean;
  /** Every resource the run could take on any candidate. */
  resources: string[];
}

type Item = Entry | Cursor;

export class Resolver {
  private readonly entries = new Map<number, Entry>();
  /**
   * Runs per key of the unordered indexes: one run as itself, a set from the second on (a plan tick files 10,000
   * new runs of 10,000 jobs under their own concurrency keys: a set per key was most of filing them, plan-100k).
   */
  private readonly byKey = new Map<string, Entry | Set<Entry>>();
  /** Contenders per resource, in decision order (one base priority: due time, id). */
  private readonly byResource = new Map<string, Entry[]>();
  private readonly due = new DueHeap<number>();
  private readonly reservations = new Map<string, Entry>();
  /** Reservations and full rates as the last pass left them: where the runs after them were already blocked. */
  private lastReserved = new Map<string, WaitingRun>();
  private lastFull = new Map<string, WaitingRun | 'start'>();
  private readonly priorities = new Map<number, number>();
  private readonly dirtyRuns = new Set<Entry>();
  private readonly dirtyKeys = new Set<string>();
  private readonly dirtyResources = new Set<string>();
  private readonly rates = new Map<string, { capacity: number; windowMs: number }>();
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
  private queue: Item[] = [];
  private cascaded = new Set<string>();
  private cursors = new Map<string, Cursor>();
  /** With several base priorities aging can reorder runs, so resource lists are not walked lazily. */
  private eager = false;
  private full_ = new Map<string, WaitingRun | 'start'>();
  private w: Working | null = null;
  private touched: string[] | null = null;
  private readonly touch = (resource: string): void => {
    if (this.touched && !this.touched.includes(resource)) this.touched.push(resource);
  };
  /** Every run past the static gates is queued in this pass: nothing to cascade. */
  private everything = false;

  get size(): number {
    return this.entries.size;
  }

  /** A run that waits (new, or changed: held, released, put back after a refused dispatch). */
  upsert(run: WaitingRun): void {
    let e = this.entries.get(run.id);
    if (e) {
      this.countPriority(e.run.priority, -1);
      if (e.gate === 'dispatched') e.gate = 'new';
      e.filedShape = null;
    } else {
      e = { run, ckey: '', jkey: '', shapeKey: '', gate: 'new', keys: [], resources: [], filedShape: null, filedRun: null, reserved: null, reason: null, touched: null, queued: -1, done: -1 };
      this.entries.set(run.id, e);
    }
    e.run = run;
    e.ckey = concurrencyKey(run.jobName, run.targetAgent);
    e.jkey = `j:${e.ckey}`;
    const onKey = run.targetAgent !== null ? `@${run.targetAgent}` : JSON.stringify(run.spec.on);
    e.shapeKey = `${onKey}|${runKind(run.spec)}|${run.spec.resources ? JSON.stringify(run.spec.resources) : ''}`;
    this.countPriority(run.priority, 1);
    this.dirtyRuns.add(e);
  }

  /** The runs filed under an unordered index key. */
  private filed(key: string): Iterable<Entry> {
    const f = this.byKey.get(key);
    return f === undefined ? [] : f instanceof Set ? f : [f];
  }

  /** A run that no longer waits (dispatched, ended, deleted). */
  remove(runId: number): void {
    const e = this.entries.get(runId);
    if (!e) return;
    this.unfile(e);
    this.unfileResources(e);
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
    this.dirtyResources.add(resource);
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
    this.cursors = new Map();
    this.eager = this.priorities.size > 1;
    const agentSig = agentSignature(s);
    if (agentSig !== this.agentSig && this.full === 'no') this.full = 'past-gates';
    this.agentSig = agentSig;
    if (this.eager && s.now !== this.lastNow && this.full === 'no') this.full = 'past-gates';
    this.lastNow = s.now;
    // A rate frees up as its takes leave the window: seen as a change of the takes within the window.
    this.full_ = new Map();
    for (const [key, rate] of this.rates) {
      const takes = s.rateTakes.get(key) ?? [];
      let n = 0;
      for (const t of takes) if (t > s.now - rate.windowMs) n++;
      if (n >= rate.capacity) this.full_.set(key, 'start');
      const sig = `${n}:${takes[takes.length - 1]}`;
      if (this.rateSig.get(key) !== sig) this.dirtyResources.add(key);
      this.rateSig.set(key, sig);
    }

    this.everything = this.full !== 'no';
    if (this.full !== 'no') {
      if (this.full === 'all') {
        this.rates.clear();
        this.rateSig.clear();
      }
      this.dirtyResources.clear();
      this.shapes = new Map();
      this.reservations.clear();
      this.lastReserved = new Map();
      this.lastFull = new Map();
      this.rateWake.clear();
      for (const e of this.entries.values()) {
        e.reserved = null;
        if (this.full === 'all' || (e.gate !== 'due' && e.gate !== 'held' && e.gate !== 'conditions' && e.gate !== 'dispatched')) this.enqueue(e);
      }
      this.full = 'no';
    }
    for (const key of this.dirtyKeys) {
      this.cascaded.add(key);
      for (const e of this.filed(key)) this.enqueue(e);
    }
    this.dirtyKeys.clear();
    for (const r of this.dirtyResources) {
      this.rateWake.delete(r);
      this.walkResource(r, null);
    }
    this.dirtyResources.clear();
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
    if (this.queue.length === 0) {
      this.lastFull = this.full_;
      return { dispatch, waiting, wakeAt: this.wakeAt() };
    }
    const jobOwn = new Map<string, number>();
    this.w = {
      agentActive: new Map(s.agents.map((a) => [a.name, a.active])),
      agentLast: new Map(s.agents.map((a) => [a.name, a.lastDispatchAt])),
      pools: overlay(s.poolHolders, this.touch),
      rates: overlay(s.rateTakes, this.touch),
      jobActive: { get: (k) => jobOwn.get(k) ?? s.activeByJob.get(k)?.length, set: (k, v) => jobOwn.set(k, v) },
      reserved: {
        get: (resource) => {
          this.touch(resource);
          const x = this.reservations.get(resource);
          if (!x) return undefined;
          if (x.done === this.pass || this.before(x.run, this.current!.run)) return x.run.id;
          // Reserved by a run after this one: not in its way, but the answer depends on the position.
          this.orderDependent = true;
          return undefined;
        },
        set: () => undefined,
      },
    };
    const agents = new Map(s.agents.map((a) => [a.name, a]));
    const snapshot = { ...s, waiting: [] } as Snapshot;
    const ctx: Pass = { s, snapshot, agents, dispatch, version: 0, blocked: new Map(), noAgent: new Map() };
    for (let item = this.pop(); item; item = this.pop()) {
      let e: Entry;
      if ('resource' in item) {
        const head = item.head!;
        item.after = head.run;
        if (head.done !== this.pass && this.settled(item.resource, head)) {
          this.cursors.delete(item.resource);
          continue;
        }
        item.head = this.next(item.resource, head.run);
        if (item.head) this.push(item);
        else this.cursors.delete(item.resource);
        if (head.done === this.pass) continue;
        // Blocked before reaching this resource (on another one, on every agent): its change changes nothing here.
        if (!this.eager && head.gate === 'contender' && head.touched !== null && !head.touched.includes(item.resource)) continue;
        e = head;
      } else {
        if (item.done === this.pass) continue;
        e = item;
      }
      this.current = e;
      e.done = this.pass;
      const before = e.reserved;
      if (before !== null && this.reservations.get(before) === e) this.reservations.delete(before);
      e.reserved = null;
      const reason = this.decideRun(e, ctx);
      if (before !== e.reserved) {
        if (before !== null) this.cascade(before, e);
        if (e.reserved !== null) this.cascade(e.reserved, e);
      }
      e.reason = reason;
      if (reason) waiting.set(e.run.id, reason);
    }
    this.current = null;
    this.w = null;
    this.lastReserved = new Map([...this.reservations].map(([k, e]) => [k, e.run]));
    this.lastFull = this.full_;
    return { dispatch, waiting, wakeAt: this.wakeAt() };
  }

  /**
   * One reason object per due time: runs created ahead of their time (thousands due in the same minute) then
   * share it, and their stored reasons are written as ranges of ids instead of one row at a time.
   */
  private readonly notDueReasons = new Map<number, WaitReason>();

  private notDue(until: number): WaitReason {
    let r = this.notDueReasons.get(until);
    if (r === undefined) {
      if (this.notDueReasons.size >= 10_000) this.notDueReasons.clear();
      this.notDueReasons.set(until, (r = { code: 'not-due', until }));
    }
    return r;
  }

  private wakeAt(): number | null {
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
    return wakeAt;
  }

  /** The gates in `decide`'s order, then the agents and resources. Null: dispatched. */
  private decideRun(e: Entry, ctx: Pass): WaitReason | null {
    const run = e.run;
    const s = ctx.s;
    const w = this.w!;
    if (run.dueAt > s.now) {
      this.refile(e, 'due');
      this.due.push(run.dueAt, run.id);
      return this.notDue(run.dueAt);
    }
    if (run.held) {
      this.refile(e, 'held');
      return { code: 'held' };
    }
    const missing = run.spec.requires?.length ? missingConditions(run, ctx.snapshot) : [];
    if (missing.length) {
      this.refile(e, 'conditions', missing.map((m) => (m.planDate === 'any' ? `a:${m.name}` : `c:${m.name}@${m.planDate}`)));
      return { code: 'conditions', missing };
    }
    const ckey = e.ckey;
    const max = run.spec.concurrency?.max ?? 1;
    if ((w.jobActive.get(ckey) ?? 0) >= max) {
      this.refile(e, 'concurrency', e.jkey);
      return { code: 'concurrency', max, active: s.activeByJob.get(ckey) ?? [] };
    }
    const shape = this.shapeOf(e.shapeKey, run, ctx.agents, s);
    if (shape.noAgent) {
      this.refile(e, 'agent', e.jkey);
      let r = ctx.noAgent.get(e.shapeKey);
      if (!r) ctx.noAgent.set(e.shapeKey, (r = noPlaceReason(shape.candidates, placeRun(run, shape.kind, shape.candidates, ctx.agents, ctx.snapshot, w))));
      return r;
    }
    if (e.gate !== 'contender' || e.filedShape !== e.shapeKey) {
      this.refile(e, 'contender', e.jkey);
      for (const r of shape.resources) this.fileResource(e, r);
      e.filedShape = e.shapeKey;
    }
    const known = ctx.blocked.get(e.shapeKey);
    if (known && known.version === ctx.version) {
      e.touched = known.touched;
      return this.noted(known.reason);
    }
    this.orderDependent = false;
    this.touched = [];
    const placed = placeRun(run, shape.kind, shape.candidates, ctx.agents, ctx.snapshot, w);
    e.touched = this.touched;
    this.touched = null;
    if (placed.best) {
      ctx.version++;
      this.refile(e, 'dispatched');
      const d = take(run, ckey, placed.best, ctx.snapshot, w);
      ctx.dispatch.push(d);
      for (const p of d.pools) this.cascade(p.resource, e);
      for (const q of d.rates) {
        const rate = this.rates.get(q.resource);
        if (rate && !this.full_.has(q.resource) && this.inWindow(q.resource, rate.windowMs).length >= rate.capacity) this.full_.set(q.resource, run);
        this.cascade(q.resource, e);
      }
      this.cascadeKey(e.jkey, e);
      return null;
    }
    const r = noPlaceReason(shape.candidates, placed);
    const v = ctx.version;
    if (r.code === 'resource' && r.blockedBy === undefined) {
      this.reservations.set(r.resource, e);
      e.reserved = r.resource;
      ctx.version++;
    }
    if (ctx.version === v && !this.orderDependent) ctx.blocked.set(e.shapeKey, { version: ctx.version, reason: r, touched: e.touched });
    return this.noted(r);
  }

  /**
   * Whether `e` and every run after it on `resource` are blocked by it exactly as in the last pass, so that the
   * change of the resource cannot change their outcome: a pool reserved by an earlier run now and then, or a rate
   * full at this point now and then. (Their reasons keep the holders, first-in-line and free time of when they
   * were last decided; "why is this not running?" explains from the live state.)
   */
  private settled(resource: string, e: Entry): boolean {
    if (this.eager) return false;
    const rate = this.rates.get(resource);
    if (rate) {
      const then = this.lastFull.get(resource);
      if (then === undefined || (then !== 'start' && !this.before(then, e.run))) return false;
      const takes = this.inWindow(resource, rate.windowMs);
      if (takes.length < rate.capacity) return false;
      const freeAt = takes[takes.length - rate.capacity]! + rate.windowMs;
      this.rateWake.set(resource, Math.min(this.rateWake.get(resource) ?? Number.POSITIVE_INFINITY, freeAt));
      return true;
    }
    const x = this.reservations.get(resource);
    const then = this.lastReserved.get(resource);
    return x !== undefined && x !== e && (x.done === this.pass || this.before(x.run, e.run)) && then !== undefined && then.id !== e.run.id && this.before(then, e.run);
  }

  private inWindow(resource: string, windowMs: number): number[] {
    return (this.w!.rates.get(resource) ?? []).filter((t) => t > this.now - windowMs);
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
    const resources = new Set<string>();
    for (const name of Object.keys(run.spec.resources ?? {})) {
      const def = s.resources[name];
      for (const a of candidates) {
        const key = expandResource(name, a);
        resources.add(key);
        if (def?.rate !== undefined && !this.rates.has(key)) {
          const [n, w] = def.rate.split('/');
          this.rates.set(key, { capacity: Number(n), windowMs: parseDuration(w!) as number });
        }
      }
    }
    shape = { candidates, kind, noAgent, resources: [...resources] };
    this.shapes.set(key, shape);
    return shape;
  }

  /** The runs after `from` on `resource` are decided again in this pass, as far as they can have changed. */
  private cascade(resource: string, from: Entry): void {
    this.rateWake.delete(resource);
    this.walkResource(resource, from.run);
  }

  private walkResource(resource: string, after: WaitingRun | null): void {
    if (this.everything) return;
    if (this.eager) {
      const list = this.byResource.get(resource) ?? [];
      if (this.cascaded.has(`r:${resource}`)) return;
      this.cascaded.add(`r:${resource}`);
      for (const e of list) if (after === null || this.before(after, e.run)) this.enqueue(e);
      return;
    }
    // A cursor still on its way covers everything after its position, which is behind the current run.
    if (this.cursors.has(resource)) return;
    const c: Cursor = { resource, after, head: this.next(resource, after) };
    if (!c.head) return;
    this.cursors.set(resource, c);
    this.push(c);
  }

  private cascadeKey(key: string, from: Entry): void {
    if (this.everything || this.cascaded.has(key)) return;
    this.cascaded.add(key);
    for (const e of this.filed(key)) if (e.done !== this.pass && this.before(from.run, e.run)) this.enqueue(e);
  }

  /** A run that leaves gives up its reservation: the runs waiting on that resource are decided again. */
  private letGo(e: Entry): void {
    if (e.reserved !== null && this.reservations.get(e.reserved) === e) {
      this.reservations.delete(e.reserved);
      this.dirtyResources.add(e.reserved);
    }
    e.reserved = null;
  }

  private refile(e: Entry, gate: Gate, keys: string | string[] = []): void {
    this.unfile(e);
    this.unfileResources(e);
    e.filedShape = null;
    e.gate = gate;
    if (typeof keys === 'string') this.fileKey(e, keys);
    else for (const key of keys) this.fileKey(e, key);
  }

  private fileKey(e: Entry, key: string): void {
    const f = this.byKey.get(key);
    if (f === undefined) this.byKey.set(key, e);
    else if (f instanceof Set) f.add(e);
    else if (f !== e) this.byKey.set(key, new Set([f, e]));
    e.keys.push(key);
  }

  private unfile(e: Entry): void {
    for (const key of e.keys) {
      const f = this.byKey.get(key);
      if (f === e) this.byKey.delete(key);
      else if (f instanceof Set) {
        f.delete(e);
        if (f.size === 0) this.byKey.delete(key);
      }
    }
    // Emptied in place: the list belongs to the entry alone.
    e.keys.length = 0;
  }

  private fileResource(e: Entry, resource: string): void {
    let list = this.byResource.get(resource);
    if (!list) this.byResource.set(resource, (list = []));
    e.filedRun ??= e.run;
    list.splice(this.lowerBound(list, e.filedRun), 0, e);
    e.resources.push(resource);
  }

  private unfileResources(e: Entry): void {
    for (const resource of e.resources) {
      const list = this.byResource.get(resource)!;
      const i = this.lowerBound(list, e.filedRun!);
      if (list[i] === e) list.splice(i, 1);
      else list.splice(list.indexOf(e), 1);
      if (list.length === 0) this.byResource.delete(resource);
    }
    e.resources = [];
    e.filedRun = null;
  }

  /** First index whose run is not before `run` in the base order. */
  private lowerBound(list: Entry[], run: WaitingRun): number {
    let lo = 0;
    let hi = list.length;
    if (hi > 0 && baseBefore(list[hi - 1]!.filedRun!, run)) return hi;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (baseBefore(list[mid]!.filedRun!, run)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The first run on `resource` after `after` (all when null). */
  private next(resource: string, after: WaitingRun | null): Entry | undefined {
    const list = this.byResource.get(resource);
    if (!list) return undefined;
    if (after === null) return list[0];
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (!baseBefore(after, list[mid]!.filedRun!)) lo = mid + 1;
      else hi = mid;
    }
    return list[lo];
  }

  private countPriority(p: number, d: number): void {
    const n = (this.priorities.get(p) ?? 0) + d;
    if (n > 0) this.priorities.set(p, n);
    else this.priorities.delete(p);
  }

  /** Decision order of `decide`: effective priority, then due time, then id. */
  private before(a: WaitingRun, b: WaitingRun): boolean {
    // Same base priority: the earlier due has aged at least as much, so due time and id decide.
    if (a.priority !== b.priority) {
      const pa = a.priority + Math.max(0, Math.floor((this.now - a.dueAt) / this.agingMs));
      const pb = b.priority + Math.max(0, Math.floor((this.now - b.dueAt) / this.agingMs));
      if (pa !== pb) return pa > pb;
    }
    if (a.dueAt !== b.dueAt) return a.dueAt < b.dueAt;
    return a.id < b.id;
  }

  private headOf(item: Item): WaitingRun {
    return 'resource' in item ? item.head!.run : item.run;
  }

  private enqueue(e: Entry): void {
    if (e.queued === this.pass || e.gate === 'dispatched') return;
    e.queued = this.pass;
    this.push(e);
  }

  // A binary heap of runs and cursors in decision order.
  private push(item: Item): void {
    const q = this.queue;
    const run = this.headOf(item);
    q.push(item);
    let i = q.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(run, this.headOf(q[p]!))) break;
      q[i] = q[p]!;
      i = p;
    }
    q[i] = item;
  }

  private pop(): Item | undefined {
    const q = this.queue;
    const top = q[0];
    const last = q.pop();
    if (q.length > 0 && last) {
      const run = this.headOf(last);
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = l < q.length && this.before(this.headOf(q[l]!), run) ? l : -1;
        if (r < q.length && this.before(this.headOf(q[r]!), m === -1 ? run : this.headOf(q[l]!))) m = r;
        if (m === -1) break;
        q[i] = q[m]!;
        i = m;
      }
      q[i] = last;
    }
    return top;
  }
}

interface Pass {
  s: LiveState;
  snapshot: Snapshot;
  agents: Map<string, AgentView>;
  dispatch: Dispatch[];
  /** As in decide: runs of one shape share an answer while nothing in the working state changed. */
  version: number;
  blocked: Map<string, { version: number; reason: WaitReason; touched: string[] | null }>;
  noAgent: Map<string, WaitReason>;
}

/** The static order of resource lists: with one base priority it is the decision order at any time. */
function baseBefore(a: WaitingRun, b: WaitingRun): boolean {
  if (a.priority !== b.priority) return a.priority > b.priority;
  if (a.dueAt !== b.dueAt) return a.dueAt < b.dueAt;
  return a.id < b.id;
}

function overlay<V>(base: ReadonlyMap<string, V>, touch: (k: string) => void): MapLike<string, V> {
  const own = new Map<string, V>();
  return {
    get: (k) => {
      touch(k);
      return own.has(k) ? own.get(k) : base.get(k);
    },
    set: (k, v) => own.set(k, v),
  };
}

function agentSignature(s: LiveState): string {
  // In the order given (the link's, stable): a reordering only costs one pass that decides everything again.
  let sig = '';
  for (const a of s.agents) sig += `${a.name}:${a.draining ? 1 : 0}${a.kinds.command ? 1 : 0}${a.kinds.shell ? 1 : 0}${a.kinds.node ? 1 : 0},`;
  sig += '|';
  for (const n of s.offlineAgents) sig += `${n},`;
  return sig;
}
