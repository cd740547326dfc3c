import type { AgentView, Definitions, LiveState, Snapshot, WaitingRun } from '@batchalyzer/core';
import { concurrencyKey, requirementNames, Resolver } from '@batchalyzer/core';
import type { RunRecord, Store } from '@batchalyzer/store';
import type { ConnectedAgent } from '../link.js';

/**
 * The engine's in-memory mirror of what the decision needs: unfinished runs, conditions, resource holders and
 * rate takes. The store stays the source of truth; this mirror is rebuilt from it at start (so usage is always
 * recomputed from holders, brief §7) and then updated by the engine's own committed writes.
 */
/**
 * The unfinished runs by id, with the indexes a pass needs kept up to date on every change (the engine, the
 * reports and the operator actions all write through `set`/`delete`): runs per job, and the number waiting.
 * Without them each due plan entry scanned every unfinished run (O(due × unfinished) per tick, plan-100k).
 */
export class RunMap extends Map<number, RunRecord> {
  /**
   * Ids per job: one id as a number, a set from the second on (a plan tick adds 10,000 runs of 10,000 jobs, one
   * each: a set per job was a tenth of registering them, plan-100k).
   */
  private readonly byJob = new Map<string, number | Set<number>>();
  waitingCount = 0;
  /** Told of every change, so that the resolver and the active-run indexes follow the mirror. */
  onChange: (old: RunRecord | undefined, run: RunRecord | undefined) => void = () => undefined;

  override set(id: number, run: RunRecord): this {
    const old = super.get(id);
    if (old) this.unindex(old);
    super.set(id, run);
    this.onChange(old, run);
    // Map's constructor calls set before the fields above exist; no entries are passed to it here.
    const ids = this.byJob.get(run.jobName);
    if (ids === undefined) this.byJob.set(run.jobName, id);
    else if (typeof ids === 'number') {
      if (ids !== id) this.byJob.set(run.jobName, new Set([ids, id]));
    } else ids.add(id);
    if (run.state === 'waiting') this.waitingCount++;
    return this;
  }

  override delete(id: number): boolean {
    const old = super.get(id);
    if (!old) return false;
    this.unindex(old);
    super.delete(id);
    this.onChange(old, undefined);
    return true;
  }

  override clear(): void {
    super.clear();
    this.byJob.clear();
    this.waitingCount = 0;
  }

  private unindex(run: RunRecord): void {
    const ids = this.byJob.get(run.jobName);
    if (ids === run.id) this.byJob.delete(run.jobName);
    else if (typeof ids === 'object') {
      ids.delete(run.id);
      if (ids.size === 0) this.byJob.delete(run.jobName);
    }
    if (run.state === 'waiting') this.waitingCount--;
  }

  ofJob(jobName: string): RunRecord[] {
    const ids = this.byJob.get(jobName);
    if (ids === undefined) return [];
    if (typeof ids === 'number') return [super.get(ids)!];
    return [...ids].map((id) => super.get(id)!);
  }
}

export class EngineState {
  readonly runs = new RunMap();
  readonly conditions = new Set<string>();
  private readonly conditionNameCounts = new Map<string, number>();
  /** Names with a condition on some date, kept live for the resolver (`date: any`). */
  private readonly conditionNames = new Set<string>();
  readonly holds = new Map<string, { runId: number; units: number }[]>();
  readonly rateTakes = new Map<string, number[]>();
  readonly lastDispatchAt = new Map<string, number>();
  /**
   * Dispatched or running runs per concurrency key and per agent, kept up to date on every change of the mirror.
   * Lists are replaced, never changed in place: wait reasons handed out earlier refer to them.
   */
  readonly activeByJob = new Map<string, number[]>();
  private readonly activeByAgent = new Map<string, number>();
  /** Decides only what changed since the last pass; told of every change below. */
  resolver = new Resolver();
  private resolverDefs: Definitions | null = null;

  constructor() {
    this.runs.onChange = (old, run) => this.runChanged(old, run);
  }

  private runChanged(old: RunRecord | undefined, run: RunRecord | undefined): void {
    if (old && old.state !== 'waiting') this.setActive(old, -1);
    if (run && run.state !== 'waiting') this.setActive(run, 1);
    // The record itself is the resolver's view of the run (a RunRecord is a WaitingRun): a change of what the
    // resolver reads replaces the record, never changes it in place (only the wait reason is set in place), and a
    // copy per new run was a tenth of a plan tick's garbage (plan-100k).
    if (run?.state === 'waiting') this.resolver.upsert(run);
    else if (old?.state === 'waiting') this.resolver.remove(old.id);
  }

  private setActive(r: RunRecord, d: 1 | -1): void {
    const key = concurrencyKey(r.jobName, r.targetAgent);
    const list = (this.activeByJob.get(key) ?? []).filter((id) => id !== r.id);
    if (d > 0) list.push(r.id);
    if (list.length) this.activeByJob.set(key, list);
    else this.activeByJob.delete(key);
    this.resolver.activeChanged(key);
    if (r.agentName) {
      const n = (this.activeByAgent.get(r.agentName) ?? 0) + d;
      if (n > 0) this.activeByAgent.set(r.agentName, n);
      else this.activeByAgent.delete(r.agentName);
    }
  }

  /** A dispatch the store refused: the run is decided again. */
  requeued(runId: number): void {
    const run = this.runs.get(runId);
    if (run?.state === 'waiting') this.resolver.upsert(run);
  }

  async load(store: Store, maxRateWindowMs: number, now: number): Promise<void> {
    this.runs.clear();
    this.holds.clear();
    this.rateTakes.clear();
    this.conditions.clear();
    this.conditionNameCounts.clear();
    this.conditionNames.clear();
    this.activeByJob.clear();
    this.activeByAgent.clear();
    this.resolver = new Resolver();
    this.resolverDefs = null;
    const [runs, holds, takes, conditions] = await Promise.all([
      store.activeRuns(),
      store.allResourceHolds(),
      store.rateTakesAfter(now - maxRateWindowMs),
      store.listConditions({}),
    ]);
    for (const r of runs) this.runs.set(r.id, r);
    for (const h of holds) this.addHold(h.resource, h.runId, h.units);
    for (const t of takes) this.addRateTake(t.resource, t.at);
    for (const c of conditions) this.addCondition(c.name, c.planDate);
  }

  addCondition(name: string, planDate: string): void {
    const key = `${name}@${planDate}`;
    if (this.conditions.has(key)) return;
    this.conditions.add(key);
    this.conditionNameCounts.set(name, (this.conditionNameCounts.get(name) ?? 0) + 1);
    this.conditionNames.add(name);
    this.resolver.conditionAdded(name, planDate);
  }

  removeCondition(name: string, planDate: string): void {
    if (!this.conditions.delete(`${name}@${planDate}`)) return;
    const n = (this.conditionNameCounts.get(name) ?? 1) - 1;
    if (n <= 0) {
      this.conditionNameCounts.delete(name);
      this.conditionNames.delete(name);
    } else this.conditionNameCounts.set(name, n);
    this.resolver.conditionRemoved();
  }

  // Holder lists and rate takes are replaced, never changed in place: wait reasons handed out refer to them.
  addHold(resource: string, runId: number, units: number): void {
    this.holds.set(resource, [...(this.holds.get(resource) ?? []), { runId, units }]);
    this.resolver.resourceChanged(resource);
  }

  releaseHolds(runId: number): void {
    for (const [resource, list] of this.holds) {
      if (!list.some((h) => h.runId === runId)) continue;
      const kept = list.filter((h) => h.runId !== runId);
      if (kept.length) this.holds.set(resource, kept);
      else this.holds.delete(resource);
      this.resolver.resourceChanged(resource);
    }
  }

  addRateTake(resource: string, at: number): void {
    this.rateTakes.set(resource, [...(this.rateTakes.get(resource) ?? []), at]);
  }

  pruneRateTakes(before: number): void {
    for (const [resource, list] of this.rateTakes) {
      if (list[0]! > before) continue;
      const kept = list.filter((t) => t > before);
      if (kept.length) this.rateTakes.set(resource, kept);
      else this.rateTakes.delete(resource);
    }
  }

  unfinishedOf(jobName: string): RunRecord[] {
    return this.runs.ofJob(jobName);
  }

  private postersOf: { defs: Definitions; posters: Map<string, string[]> } | null = null;

  /** Which jobs post which condition; computed once per definitions, not on every pass (100,000 jobs). */
  posters(defs: Definitions): Map<string, string[]> {
    if (this.postersOf?.defs === defs) return this.postersOf.posters;
    const posters = new Map<string, string[]>();
    const add = (c: string, name: string) => {
      let list = posters.get(c);
      if (!list) posters.set(c, (list = []));
      list.push(name);
    };
    // A plain loop without intermediate arrays: at 100,000 jobs this ran in the cold start's profile (plan-100k).
    for (const name in defs.jobs) {
      const posts = defs.jobs[name]!.posts;
      if (!posts) continue;
      for (const c of posts.success ?? []) add(c, name);
      for (const c of posts.failure ?? []) add(c, name);
      for (const c of posts.warning ?? []) add(c, name);
    }
    this.postersOf = { defs, posters };
    return posters;
  }

  /**
   * The state the resolver reads, without the waiting runs (it keeps those itself): O(agents), not O(runs).
   * New definitions (resources, groups, posters) make the resolver decide every run again.
   */
  live(now: number, defs: Definitions, agents: ConnectedAgent[], registered: string[], agingMs: number): LiveState {
    if (defs !== this.resolverDefs) {
      this.resolver.reset();
      this.resolverDefs = defs;
    }
    const online = new Set(agents.map((a) => a.name));
    return {
      now,
      activeByJob: this.activeByJob,
      conditions: this.conditions,
      conditionNames: this.conditionNames,
      posters: this.posters(defs),
      resources: defs.resources,
      poolHolders: this.holds,
      rateTakes: this.rateTakes,
      agents: agents.map((a) => this.view(a, this.activeByAgent.get(a.name) ?? 0)),
      offlineAgents: new Set(registered.filter((n) => !online.has(n))),
      groups: defs.groups,
      agingMs,
    };
  }

  private view(a: ConnectedAgent, active: number): AgentView {
    return {
      name: a.name,
      draining: a.draining,
      kinds: { command: a.capabilities.command, shell: a.capabilities.shell, node: a.capabilities.node },
      active,
      lastDispatchAt: this.lastDispatchAt.get(a.name) ?? 0,
    };
  }

  /** Everything `decide`/`explain` need, built from scratch: O(runs), for "why is this not running?". */
  snapshot(now: number, defs: Definitions, agents: ConnectedAgent[], registered: string[], agingMs: number): Snapshot {
    const waiting: WaitingRun[] = [];
    const activeByJob = new Map<string, number[]>();
    const activeByAgent = new Map<string, number>();
    for (const r of this.runs.values()) {
      if (r.state === 'waiting') {
        waiting.push(waitingView(r));
      } else {
        const key = concurrencyKey(r.jobName, r.targetAgent);
        const list = activeByJob.get(key);
        if (list) list.push(r.id);
        else activeByJob.set(key, [r.id]);
        if (r.agentName) activeByAgent.set(r.agentName, (activeByAgent.get(r.agentName) ?? 0) + 1);
      }
    }
    const posters = this.posters(defs);
    const views: AgentView[] = agents.map((a) => this.view(a, activeByAgent.get(a.name) ?? 0));
    const online = new Set(agents.map((a) => a.name));
    return {
      now,
      waiting,
      activeByJob,
      conditions: this.conditions,
      conditionNames: new Set(this.conditionNameCounts.keys()),
      posters,
      resources: defs.resources,
      poolHolders: this.holds,
      rateTakes: this.rateTakes,
      agents: views,
      offlineAgents: new Set(registered.filter((n) => !online.has(n))),
      groups: defs.groups,
      agingMs,
    };
  }
}

function waitingView(r: RunRecord): WaitingRun {
  return { id: r.id, jobName: r.jobName, planDate: r.planDate, dueAt: r.dueAt, priority: r.priority, held: r.held, targetAgent: r.targetAgent, spec: r.spec };
}

/** Conditions a job requires, for the dependency graph (brief §6). */
export function requiredConditions(defs: Definitions, job: string): string[] {
  return (defs.jobs[job]?.requires ?? []).flatMap(requirementNames);
}
