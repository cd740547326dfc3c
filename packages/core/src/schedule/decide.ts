import type { JobSpec, Requirement, ResourceSpec } from '../model/job.js';
import type { Target } from '../model/fields.js';
import { parseDuration } from '../duration.js';
import { addDays } from './planday.js';

/**
 * The dispatch decision (brief §5–§7) as a pure function over plain data: `decide(snapshot) → decision`.
 * No clock, no I/O: the engine builds the snapshot, applies the dispatches through the store (which re-checks
 * capacity atomically) and persists the wait reasons. `explain` gives every reason a run is not running.
 */

export interface WaitingRun {
  id: number;
  jobName: string;
  planDate: string;
  dueAt: number;
  priority: number;
  held: boolean;
  targetAgent: string | null;
  spec: JobSpec;
}

export interface AgentView {
  name: string;
  draining: boolean;
  kinds: { command: boolean; shell: boolean; node: boolean };
  /** Runs dispatched to or running on the agent now. */
  active: number;
  lastDispatchAt: number;
}

export interface Snapshot {
  now: number;
  waiting: WaitingRun[];
  /** Dispatched or running runs per concurrency key (see concurrencyKey). */
  activeByJob: Map<string, number[]>;
  /** Condition keys `name@planDate`. */
  conditions: Set<string>;
  /** Names of conditions posted on any date (for `date: any`). */
  conditionNames: Set<string>;
  /** Which jobs post which condition (for explanations). */
  posters: Map<string, string[]>;
  resources: Record<string, ResourceSpec>;
  /** Units held per expanded pool name, and by whom. */
  poolHolders: Map<string, { runId: number; units: number }[]>;
  /** Start times within the window per expanded rate name, ascending. */
  rateTakes: Map<string, number[]>;
  agents: AgentView[];
  /** Names of registered agents that are not connected, for explanations. */
  offlineAgents: Set<string>;
  groups: Record<string, string[]>;
  /** Waiting priority grows by one step per this many ms, so that no run starves. */
  agingMs: number;
}

export type WaitReason =
  | { code: 'not-due'; until: number }
  | { code: 'held' }
  | { code: 'conditions'; missing: { name: string; planDate: string | 'any'; postedBy: string[] }[] }
  | { code: 'concurrency'; max: number; active: number[] }
  | { code: 'no-agent'; considered: { agent: string; why: string }[] }
  | { code: 'resource'; resource: string; need: number; capacity: number; holders: { runId: number; units: number }[]; blockedBy?: number }
  | { code: 'rate'; resource: string; capacity: number; windowMs: number; freeAt: number };

export interface Dispatch {
  runId: number;
  agent: string;
  pools: { resource: string; units: number; capacity: number }[];
  rates: { resource: string; capacity: number; windowMs: number }[];
}

export interface Decision {
  dispatch: Dispatch[];
  /** The first blocking reason of every run that stays waiting. */
  waiting: Map<number, WaitReason>;
  /** When the decision should be made again even if nothing happens (due times, rate windows). */
  wakeAt: number | null;
}

/** Runs of a job compete for its concurrency limit; with `mode: all` each agent's runs count separately. */
export function concurrencyKey(jobName: string, targetAgent: string | null): string {
  return targetAgent === null ? jobName : `${jobName}@${targetAgent}`;
}

export function runKind(spec: JobSpec): 'command' | 'shell' | 'node' {
  return spec.run.command ? 'command' : spec.run.shell !== undefined ? 'shell' : 'node';
}

/** All agent names a target can mean, groups expanded recursively (cycles are rejected at validation). */
export function expandTarget(target: Target, groups: Record<string, string[]>): string[] {
  const out = new Set<string>();
  const seen = new Set<string>();
  const add = (name: string) => {
    if (groups[name]) {
      if (seen.has(name)) return;
      seen.add(name);
      for (const m of groups[name]!) add(m);
    } else out.add(name);
  };
  if (target.agent !== undefined) out.add(target.agent);
  for (const a of target.agents ?? []) out.add(a);
  for (const g of target.group !== undefined ? [target.group] : target.groups ?? []) {
    if (groups[g]) add(g);
  }
  return [...out].sort();
}

export function expandResource(name: string, agent: string): string {
  return name.replaceAll('{agent}', agent);
}

function rateOf(spec: ResourceSpec): { capacity: number; windowMs: number } | null {
  if (spec.rate === undefined) return null;
  const [n, w] = spec.rate.split('/');
  return { capacity: Number(n), windowMs: parseDuration(w) as number };
}

export function missingConditions(run: WaitingRun, s: Snapshot): { name: string; planDate: string | 'any'; postedBy: string[] }[] {
  const missing: { name: string; planDate: string | 'any'; postedBy: string[] }[] = [];
  const check = (r: Exclude<Requirement, { anyOf: unknown }>): { name: string; planDate: string | 'any' } | null => {
    const name = typeof r === 'string' ? r : r.condition;
    const scope = typeof r === 'string' ? 'same' : r.date ?? 'same';
    if (scope === 'any') return s.conditionNames.has(name) ? null : { name, planDate: 'any' };
    const date = scope === 'previous' ? addDays(run.planDate, -1) : run.planDate;
    return s.conditions.has(`${name}@${date}`) ? null : { name, planDate: date };
  };
  for (const req of run.spec.requires ?? []) {
    if (typeof req === 'object' && 'anyOf' in req) {
      const results = req.anyOf.map(check);
      if (results.every((x) => x !== null)) missing.push(...results.map((m) => ({ ...m!, postedBy: s.posters.get(m!.name) ?? [] })));
    } else {
      const m = check(req);
      if (m) missing.push({ ...m, postedBy: s.posters.get(m.name) ?? [] });
    }
  }
  return missing;
}

/** What `decide` reads and updates while it walks the runs; the resolver passes overlays over the live state. */
export interface MapLike<K, V> {
  get(key: K): V | undefined;
  set(key: K, value: V): unknown;
}

export interface Working {
  agentActive: MapLike<string, number>;
  agentLast: MapLike<string, number>;
  pools: MapLike<string, { runId: number; units: number }[]>;
  rates: MapLike<string, number[]>;
  jobActive: MapLike<string, number>;
  /** Pools that a higher-priority run is waiting for: lower ones may not take them (no starvation). */
  reserved: MapLike<string, number>;
}

function poolUsed(w: Working, resource: string): number {
  return (w.pools.get(resource) ?? []).reduce((n, h) => n + h.units, 0);
}

export type ResourceWait = Extract<WaitReason, { code: 'resource' | 'rate' }>;

/** Checks resources for one agent; returns the takes or the first blocking reason. */
function resourcesFor(run: WaitingRun, agent: string, s: Snapshot, w: Working): { pools: Dispatch['pools']; rates: Dispatch['rates'] } | ResourceWait {
  const pools: Dispatch['pools'] = [];
  const rates: Dispatch['rates'] = [];
  for (const [name, units] of Object.entries(run.spec.resources ?? {})) {
    const def = s.resources[name];
    const resource = expandResource(name, agent);
    if (!def) return { code: 'resource', resource, need: units, capacity: 0, holders: [] };
    const rate = rateOf(def);
    if (rate) {
      const takes = (w.rates.get(resource) ?? []).filter((t) => t > s.now - rate.windowMs);
      if (takes.length + 1 > rate.capacity) {
        return { code: 'rate', resource, capacity: rate.capacity, windowMs: rate.windowMs, freeAt: takes[takes.length - rate.capacity]! + rate.windowMs };
      }
      rates.push({ resource, ...rate });
    } else {
      const capacity = def.pool!;
      const blockedBy = w.reserved.get(resource);
      if (poolUsed(w, resource) + units > capacity || blockedBy !== undefined) {
        return { code: 'resource', resource, need: units, capacity, holders: w.pools.get(resource) ?? [], ...(blockedBy !== undefined ? { blockedBy } : {}) };
      }
      pools.push({ resource, units, capacity });
    }
  }
  return { pools, rates };
}

export function effectivePriority(run: WaitingRun, s: Snapshot): number {
  return run.priority + Math.max(0, Math.floor((s.now - run.dueAt) / s.agingMs));
}

export function decide(s: Snapshot): Decision {
  const w: Working = {
    agentActive: new Map(s.agents.map((a) => [a.name, a.active])),
    agentLast: new Map(s.agents.map((a) => [a.name, a.lastDispatchAt])),
    pools: new Map([...s.poolHolders].map(([k, v]) => [k, [...v]])),
    rates: new Map([...s.rateTakes].map(([k, v]) => [k, [...v]])),
    jobActive: new Map([...s.activeByJob].map(([k, v]) => [k, v.length])),
    reserved: new Map(),
  };
  const agents = new Map(s.agents.map((a) => [a.name, a]));
  const dispatch: Dispatch[] = [];
  const waiting = new Map<number, WaitReason>();
  let wakeAt: number | null = null;
  const wake = (t: number) => {
    if (wakeAt === null || t < wakeAt) wakeAt = t;
  };

  // Effective priorities once per run, not once per comparison.
  const prio = new Map<number, number>();
  for (const r of s.waiting) prio.set(r.id, effectivePriority(r, s));
  const ordered = [...s.waiting].sort((a, b) => prio.get(b.id)! - prio.get(a.id)! || a.dueAt - b.dueAt || a.id - b.id);
  // Runs of the same shape (target, kind, resources) that found no agent get the same answer until something in
  // the working state changes (a dispatch, a new reservation): with thousands of runs waiting for the same full
  // pool, each is then checked in O(1) instead of against every candidate agent (docs/performance.md, resolve).
  let version = 0;
  const blocked = new Map<string, { version: number; reason: WaitReason }>();
  const targets = new Map<string, string[]>();
  for (const run of ordered) {
    if (run.dueAt > s.now) {
      waiting.set(run.id, { code: 'not-due', until: run.dueAt });
      wake(run.dueAt);
      continue;
    }
    if (run.held) {
      waiting.set(run.id, { code: 'held' });
      continue;
    }
    const missing = missingConditions(run, s);
    if (missing.length) {
      waiting.set(run.id, { code: 'conditions', missing });
      continue;
    }
    const max = run.spec.concurrency?.max ?? 1;
    const ckey = concurrencyKey(run.jobName, run.targetAgent);
    if ((w.jobActive.get(ckey) ?? 0) >= max) {
      waiting.set(run.id, { code: 'concurrency', max, active: s.activeByJob.get(ckey) ?? [] });
      continue;
    }
    const kind = runKind(run.spec);
    const onKey = run.targetAgent !== null ? `@${run.targetAgent}` : JSON.stringify(run.spec.on);
    const shape = `${onKey}|${kind}|${run.spec.resources ? JSON.stringify(run.spec.resources) : ''}`;
    const known = blocked.get(shape);
    if (known && known.version === version) {
      waiting.set(run.id, known.reason);
      if (known.reason.code === 'rate') wake(known.reason.freeAt);
      continue;
    }
    let candidates = targets.get(onKey);
    if (!candidates) {
      candidates = run.targetAgent ? [run.targetAgent] : expandTarget(run.spec.on, s.groups);
      targets.set(onKey, candidates);
    }
    const { best, considered, resourceReason } = placeRun(run, kind, candidates, agents, s, w);
    if (!best) {
      const before = version;
      let reason: WaitReason;
      if (resourceReason) {
        reason = resourceReason;
        if (resourceReason.code === 'rate') wake(resourceReason.freeAt);
        else if (resourceReason.blockedBy === undefined) {
          w.reserved.set(resourceReason.resource, run.id);
          version++;
        }
      } else reason = noPlaceReason(candidates, { best, considered, resourceReason });
      waiting.set(run.id, reason);
      // Remembered only when computing it changed nothing, so that the next run of this shape gets what it would compute.
      if (version === before) blocked.set(shape, { version, reason });
      continue;
    }
    version++;
    dispatch.push(take(run, ckey, best, s, w));
  }
  return { dispatch, waiting, wakeAt };
}

export interface Placement {
  best: { agent: AgentView; take: { pools: Dispatch['pools']; rates: Dispatch['rates'] } } | null;
  considered: { agent: string; why: string }[];
  resourceReason: ResourceWait | null;
}

/** Tries every candidate agent for a run that passed the gates (due, not held, conditions, concurrency). */
export function placeRun(run: WaitingRun, kind: 'command' | 'shell' | 'node', candidates: string[], agents: Map<string, AgentView>, s: Snapshot, w: Working): Placement {
  const considered: { agent: string; why: string }[] = [];
  let best: { agent: AgentView; take: { pools: Dispatch['pools']; rates: Dispatch['rates'] } } | null = null;
  let resourceReason: ResourceWait | null = null;
  // Resources without `{agent}` are the same on every agent: checked once, not once per candidate (50 agents).
  const perAgent = Object.keys(run.spec.resources ?? {}).some((n) => n.includes('{agent}'));
  let shared: ReturnType<typeof resourcesFor> | null = null;
  for (const name of candidates) {
    const a = agents.get(name);
    if (!a) {
      considered.push({ agent: name, why: s.offlineAgents.has(name) ? 'not connected' : 'not registered' });
      continue;
    }
    if (a.draining) {
      considered.push({ agent: name, why: 'draining' });
      continue;
    }
    if (!a.kinds[kind]) {
      considered.push({ agent: name, why: `refuses ${kind} jobs` });
      continue;
    }
    const take = perAgent ? resourcesFor(run, name, s, w) : (shared ??= resourcesFor(run, name, s, w));
    if ('code' in take) {
      // Once a resource blocks, the reason is that resource and `considered` is not used: not built (10,000 runs
      // waiting for a pool, 50 agents each).
      resourceReason ??= take;
      continue;
    }
    // Fair choice: the least busy agent, then the one that waited longest for work, then by name.
    const busy = w.agentActive.get(name) ?? 0;
    if (
      !best ||
      busy < (w.agentActive.get(best.agent.name) ?? 0) ||
      (busy === (w.agentActive.get(best.agent.name) ?? 0) && (w.agentLast.get(name) ?? 0) < (w.agentLast.get(best.agent.name) ?? 0))
    ) {
      best = { agent: a, take };
    }
  }
  return { best, considered, resourceReason };
}

/** Records a dispatch in the working state. */
export function take(run: WaitingRun, ckey: string, best: NonNullable<Placement['best']>, s: Snapshot, w: Working): Dispatch {
  const name = best.agent.name;
  w.agentActive.set(name, (w.agentActive.get(name) ?? 0) + 1);
  w.agentLast.set(name, s.now);
  w.jobActive.set(ckey, (w.jobActive.get(ckey) ?? 0) + 1);
  for (const p of best.take.pools) w.pools.set(p.resource, [...(w.pools.get(p.resource) ?? []), { runId: run.id, units: p.units }]);
  for (const r of best.take.rates) w.rates.set(r.resource, [...(w.rates.get(r.resource) ?? []), s.now]);
  return { runId: run.id, agent: name, ...best.take };
}

/** The reason of a run no agent could take: a resource (reserving a full pool), or why each agent was refused. */
export function noPlaceReason(candidates: string[], p: Placement): WaitReason {
  return p.resourceReason ?? { code: 'no-agent', considered: candidates.length ? p.considered : [{ agent: '(none)', why: 'the target matches no agent' }] };
}

/** Every reason a waiting run is not running (not only the first), for "why is this not running?". */
export function explain(runId: number, s: Snapshot): WaitReason[] {
  const run = s.waiting.find((r) => r.id === runId);
  if (!run) return [];
  const reasons: WaitReason[] = [];
  if (run.dueAt > s.now) reasons.push({ code: 'not-due', until: run.dueAt });
  if (run.held) reasons.push({ code: 'held' });
  const missing = missingConditions(run, s);
  if (missing.length) reasons.push({ code: 'conditions', missing });
  const max = run.spec.concurrency?.max ?? 1;
  const active = s.activeByJob.get(concurrencyKey(run.jobName, run.targetAgent)) ?? [];
  if (active.length >= max) reasons.push({ code: 'concurrency', max, active });
  // Agents and resources are judged as if the run were due now and first in line.
  const probe = decide({ ...s, waiting: [{ ...run, dueAt: Math.min(run.dueAt, s.now), held: false, spec: { ...run.spec, requires: [] } }], activeByJob: new Map() });
  const r = probe.waiting.get(run.id);
  if (r) reasons.push(r);
  return reasons;
}
