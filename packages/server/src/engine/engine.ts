import type { Logger } from 'pino';
import {
  compileSchedule, ConflictError, decide, DueHeap, type Definitions, expandTarget, materialize, type Occurrences, planCalendar, type PlanCalendar,
  planDateOf, planDayBounds, type WaitReason, canonicalJson, parseDuration, parseSize,
} from '@batchalyzer/core';
import type { NewRun, PlanEntryRecord, RunRecord, Store } from '@batchalyzer/store';
import type { EventBus } from '../events.js';
import type { Service } from '../lifecycle.js';
import type { AgentLink, ConnectedAgent, DispatchPayload } from '../link.js';
import { EngineState } from './state.js';

/**
 * The scheduling engine (brief §4–§7): a thin loop around the pure `materialize` and `decide` functions.
 * A pass loads nothing it already knows: it takes due plan entries, turns them into runs, decides, commits
 * dispatches through the store (which re-checks capacity atomically) and hands them to the agent link.
 * Passes are triggered by events (run ended, agent connected, condition posted, hold released, definitions
 * applied) and by the clock, never sleeping longer than `maxSleepMs`.
 */
export interface Clock {
  now(): number;
}

export interface EngineOptions {
  /** Default zone for plan days and schedules when the definitions set none. */
  timezone: string;
  /** Occurrences older than this when processed count as missed (downtime, clock jump). */
  graceMs: number;
  agingMs: number;
  maxSleepMs: number;
  /** After an agent reconnects, how long to wait for its queued reports before declaring its unknown runs lost. */
  reconcileAfterMs: number;
  /** Keep ended runs, plan days and conditions this long. */
  retentionMs: number;
}

export const DEFAULT_ENGINE_OPTIONS: Omit<EngineOptions, 'timezone'> = {
  graceMs: 60_000,
  agingMs: 60_000,
  maxSleepMs: 30_000,
  reconcileAfterMs: 10_000,
  retentionMs: 30 * 86_400_000,
};

const ACTOR = 'scheduler';

export class Engine implements Service {
  readonly name = 'engine';
  readonly state = new EngineState();
  defs!: Definitions;
  calendar!: PlanCalendar;
  private link: AgentLink | null = null;
  private registered: string[] = [];
  private readonly entries = new Map<string, PlanEntryRecord>();
  /** Due times of `entries`, ordered; stale heap items (entry moved or gone) are skipped when popped. */
  private readonly due = new DueHeap<string>();
  private readonly loadedDays = new Set<string>();
  private readonly schedules = new Map<string, { key: string; occ: Occurrences }>();
  private readonly persistedReasons = new Map<number, string>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = true;
  private lastNow = 0;
  private unsubscribe: (() => void)[] = [];

  constructor(
    readonly store: Store,
    readonly events: EventBus,
    readonly logger: Logger,
    readonly clock: Clock,
    readonly options: EngineOptions,
  ) {}

  /** The agent link is created after the engine (it reports to it), so it is attached here. */
  attachLink(link: AgentLink): void {
    this.link = link;
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.reloadDefinitions();
    const now = this.clock.now();
    await this.state.load(this.store, this.maxRateWindow(), now);
    for (const d of await this.store.planDays()) this.loadedDays.add(d.planDate);
    for (const e of await this.store.pendingPlanEntries()) this.setEntry(e);
    this.registered = (await this.store.listAgents()).map((a) => a.name);
    // Jobs defined while the server was down get today's entry from now on; existing entries keep catching up.
    await this.syncEntries(true);
    this.unsubscribe.push(
      this.events.on('definitions:applied', () => this.poke()),
      this.events.on('agent:connected', ({ name }) => {
        if (!this.registered.includes(name)) this.registered.push(name);
        this.poke();
        setTimeout(() => void this.reconcileAgent(name).catch((err) => this.fail(err)), this.options.reconcileAfterMs).unref();
      }),
      this.events.on('agent:disconnected', () => this.poke()),
      this.events.on('agent:draining', () => this.poke()),
    );
    await this.pass();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const off of this.unsubscribe.splice(0)) off();
    await this.running;
  }

  private setEntry(e: PlanEntryRecord): void {
    const key = `${e.planDate}|${e.jobName}`;
    if (e.nextDueAt === null) {
      this.entries.delete(key);
      return;
    }
    this.entries.set(key, e);
    this.due.push(e.nextDueAt, key);
  }

  /** The earliest pending due time, dropping heap items that no longer match their entry. */
  private nextDue(): number | null {
    for (let top = this.due.peek(); top; top = this.due.peek()) {
      if (this.entries.get(top.key)?.nextDueAt === top.at) return top.at;
      this.due.pop();
    }
    return null;
  }

  /** Requests a decision as soon as possible; passes never overlap, requests during a pass cause one more. */
  poke(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.passOnce();
        } while (this.again && !this.stopped);
      } catch (err) {
        this.fail(err);
      } finally {
        this.running = null;
      }
    })();
  }

  /** One full pass, awaited (tests and start-up use it; the loop uses poke). */
  async pass(): Promise<void> {
    while (this.running) await this.running;
    this.poke();
    await this.running;
  }

  private fail(err: unknown): void {
    this.logger.error({ err }, 'scheduling pass failed; retrying');
    if (!this.stopped) this.schedule(this.clock.now() + 1000);
  }

  private maxRateWindow(): number {
    let max = 0;
    for (const r of Object.values(this.defs?.resources ?? {})) {
      if (r.rate) max = Math.max(max, compileRateWindow(r.rate));
    }
    return max;
  }

  private defsVersion = -1;

  async reloadDefinitions(): Promise<void> {
    this.defsVersion = await this.store.definitionsVersion();
    this.defs = await this.store.loadDefinitions();
    this.calendar = planCalendar(this.defs.settings.timezone ?? this.options.timezone, this.defs.settings.newDayAt ?? '00:00');
  }

  occurrencesOf(jobName: string): Occurrences | null {
    const spec = this.defs.jobs[jobName];
    if (!spec?.schedule) return null;
    const key = canonicalJson([spec.schedule, this.calendar]);
    const cached = this.schedules.get(jobName);
    if (cached?.key === key) return cached.occ;
    const occ = compileSchedule(spec.schedule, this.calendar.timezone, this.calendar);
    this.schedules.set(jobName, { key, occ });
    return occ;
  }

  private schedule(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    const delay = Math.max(0, Math.min(at - this.clock.now(), this.options.maxSleepMs));
    this.timer = setTimeout(() => this.poke(), delay);
    this.timer.unref?.();
  }

  private async passOnce(): Promise<void> {
    const now = this.clock.now();
    if (now < this.lastNow - 1000) this.logger.warn({ from: this.lastNow, to: now }, 'the clock moved backwards; nothing runs twice');
    this.lastNow = now;
    if ((await this.store.definitionsVersion()) !== this.defsVersion) {
      await this.reloadDefinitions();
      await this.syncEntries();
    }
    await this.ensurePlanDay(now);
    await this.materializeDue(now);
    const wakeAt = await this.decideAndDispatch(now);
    let next = Math.min(wakeAt ?? Number.POSITIVE_INFINITY, this.nextDue() ?? Number.POSITIVE_INFINITY);
    next = Math.min(next, planDayBounds(planDateOf(now, this.calendar), this.calendar).end);
    this.schedule(next);
  }

  /** Loads the plan day containing `now` once: one entry per job whose schedule can fire that day. */
  private async ensurePlanDay(now: number): Promise<void> {
    const date = planDateOf(now, this.calendar);
    if (this.loadedDays.has(date)) return;
    const { start, end } = planDayBounds(date, this.calendar);
    // On the very first start there is nothing to catch up: plan from now (less the grace), not from the day's start.
    const from = this.loadedDays.size === 0 ? Math.max(start, now - this.options.graceMs) : start;
    const entries: PlanEntryRecord[] = [];
    for (const jobName of Object.keys(this.defs.jobs)) {
      const e = this.firstEntry(jobName, date, from, end);
      if (e) entries.push(e);
    }
    await this.store.createPlanDay({ planDate: date, timezone: this.calendar.timezone, startsAt: start, endsAt: end, loadedAt: now }, entries);
    this.loadedDays.add(date);
    for (const e of await this.store.planEntries(date)) this.setEntry(e);
    this.events.emit('plan:loaded', { planDate: date, entries: entries.length });
    // Retention (brief §12): a new day is the moment to forget what is older than the retention period.
    const cutoff = now - this.options.retentionMs;
    const pruned = await this.store.pruneBefore(cutoff, planDateOf(cutoff, this.calendar));
    if (pruned.runs) this.logger.info({ runs: pruned.runs }, 'pruned ended runs past retention');
    this.logger.info({ planDate: date, entries: entries.length }, 'plan day loaded');
  }

  private firstEntry(jobName: string, date: string, from: number, end: number): PlanEntryRecord | null {
    const spec = this.defs.jobs[jobName]!;
    if (spec.enabled === false) return null;
    const occ = this.occurrencesOf(jobName);
    if (!occ) return null;
    const first = occ.kind === 'after' ? from : occ.next(from - 1);
    if (first === null || first >= end) return null;
    return { planDate: date, jobName, nextDueAt: first, lastNominalAt: null, jobRevision: 0 };
  }

  /** After definitions change: today's entries follow the new schedules from now on; removed jobs stop. */
  private async syncEntries(onlyMissing = false): Promise<void> {
    const now = this.clock.now();
    const date = planDateOf(now, this.calendar);
    if (!this.loadedDays.has(date)) return;
    const { end } = planDayBounds(date, this.calendar);
    const existing = new Map((await this.store.planEntries(date)).map((e) => [e.jobName, e]));
    const updates: PlanEntryRecord[] = [];
    for (const [jobName, e] of onlyMissing ? [] : existing) {
      const spec = this.defs.jobs[jobName];
      const occ = spec && spec.enabled !== false ? this.occurrencesOf(jobName) : null;
      const from = Math.max(now, (e.lastNominalAt ?? now - 1) + 1);
      const next = occ ? (occ.kind === 'after' ? e.nextDueAt : occ.next(from - 1)) : null;
      const nextDueAt = next !== null && next < end ? next : null;
      if (nextDueAt !== e.nextDueAt) updates.push({ ...e, nextDueAt });
    }
    for (const jobName of Object.keys(this.defs.jobs)) {
      if (existing.has(jobName)) continue;
      const e = this.firstEntry(jobName, date, now, end);
      if (e) updates.push(e);
    }
    await this.store.upsertPlanEntries(updates);
    for (const e of updates) this.setEntry(e);
  }

  private fanOut(jobName: string): string[] | null {
    const spec = this.defs.jobs[jobName]!;
    return spec.on.mode === 'all' ? expandTarget(spec.on, this.defs.groups) : null;
  }

  private async materializeDue(now: number): Promise<void> {
    const updates: PlanEntryRecord[] = [];
    const runs: NewRun[] = [];
    const seen = new Set<string>();
    while (this.due.size) {
      const top = this.due.peek()!;
      const e = this.entries.get(top.key);
      if (!e || e.nextDueAt !== top.at || seen.has(top.key)) {
        this.due.pop();
        continue;
      }
      if (top.at > now) break;
      this.due.pop();
      seen.add(top.key);
      const spec = this.defs.jobs[e.jobName];
      const occ = this.occurrencesOf(e.jobName);
      if (!spec || !occ || spec.enabled === false) {
        updates.push({ ...e, nextDueAt: null });
        this.entries.delete(top.key);
        continue;
      }
      const { end } = planDayBounds(e.planDate, this.calendar);
      const m = materialize({
        entry: e, spec, occurrences: occ, now, dayEnd: end, graceMs: this.options.graceMs,
        unfinished: this.state.unfinishedOf(e.jobName).length, fanOut: this.fanOut(e.jobName),
      });
      updates.push({ ...e, nextDueAt: m.nextDueAt, lastNominalAt: m.lastNominalAt });
      for (const r of m.runs) {
        runs.push({ ...r, priority: spec.priority ?? 0, spec, ...(r.skipped !== undefined ? { skipped: r.skipped } : {}) });
      }
    }
    if (updates.length === 0) return;
    let created: RunRecord[];
    try {
      created = await this.store.advancePlan(updates, runs, ACTOR, now);
    } catch (err) {
      for (const key of seen) {
        const e = this.entries.get(key);
        if (e?.nextDueAt != null) this.due.push(e.nextDueAt, key);
      }
      throw err;
    }
    // Entries move on only once the runs are committed: a crash in between repeats nothing and loses nothing.
    for (const u of updates) this.setEntry(u);
    for (const r of created) this.track(r);
  }

  /** Adds a newly created run to the mirror and announces it. */
  track(r: RunRecord): void {
    if (r.state === 'waiting') this.state.runs.set(r.id, r);
    this.events.emit('run:created', { runId: r.id, jobName: r.jobName, planDate: r.planDate, origin: r.origin });
    if (r.state === 'skipped') this.events.emit('run:ended', { runId: r.id, jobName: r.jobName, planDate: r.planDate, state: 'skipped', agent: null });
  }

  private async decideAndDispatch(now: number): Promise<number | null> {
    this.state.pruneRateTakes(now - this.maxRateWindow());
    const snapshot = this.state.snapshot(now, this.defs, this.connectedAgents(), this.registered, this.options.agingMs);
    const decision = decide(snapshot);
    for (const d of decision.dispatch) {
      const result = await this.store.dispatchRun({ runId: d.runId, agent: d.agent, at: now, actor: ACTOR, pools: d.pools, rates: d.rates });
      if (!result.ok) {
        this.logger.debug({ runId: d.runId, reason: result.reason }, 'dispatch refused by the store');
        continue;
      }
      this.state.runs.set(d.runId, result.run);
      for (const p of d.pools) this.state.addHold(p.resource, d.runId, p.units);
      for (const r of d.rates) this.state.addRateTake(r.resource, now);
      this.state.lastDispatchAt.set(d.agent, now);
      this.persistedReasons.delete(d.runId);
      this.events.emit('run:dispatched', { runId: d.runId, jobName: result.run.jobName, agent: d.agent });
      this.deliver(result.run);
    }
    await this.persistReasons(decision.waiting);
    return decision.wakeAt;
  }

  private deliver(run: RunRecord): void {
    const link = this.link;
    const fail = async (err: unknown) => {
      this.logger.warn({ runId: run.id, agent: run.agentName, err: (err as Error).message }, 'dispatch not delivered; the run waits again');
      const back = await this.store.requeueRun({ runId: run.id, at: this.clock.now(), actor: ACTOR, reason: `not delivered to ${run.agentName}: ${(err as Error).message}` });
      if (back) {
        this.state.runs.set(back.id, back);
        this.state.releaseHolds(back.id);
      }
      this.poke();
    };
    if (!link) {
      void fail(new Error('no agent link'));
      return;
    }
    link.dispatch(run.agentName!, this.payloadOf(run)).catch((err) => fail(err).catch((e) => this.fail(e)));
  }

  payloadOf(run: RunRecord): DispatchPayload {
    const spec = run.spec;
    const env: Record<string, string> = {};
    const secrets: string[] = [];
    for (const [k, v] of Object.entries(spec.env ?? {})) {
      // Secret values come from the secrets store (brief §13); unknown secrets are passed empty and masked.
      env[k] = typeof v === 'string' ? v : '';
    }
    const run_ = spec.run.command ? { command: spec.run.command } : spec.run.shell !== undefined ? { shell: spec.run.shell } : {
      node: spec.run.node!, ...(spec.run.config !== undefined ? { config: spec.run.config } : {}), ...(spec.run.args ? { args: spec.run.args } : {}),
    };
    return {
      runId: run.id, attempt: run.attempt, jobName: run.jobName, planDate: run.planDate, nominalAt: run.nominalAt,
      run: run_, env, secrets,
      ...(spec.cwd ? { cwd: spec.cwd } : {}),
      ...(spec.runAs ? { runAs: spec.runAs } : {}),
      ...(spec.timeout ? { timeoutMs: durationMs(spec.timeout) } : {}),
      killGraceMs: spec.killGrace ? durationMs(spec.killGrace) : 10_000,
      maxOutputBytes: spec.maxOutput ? sizeBytes(spec.maxOutput) : 1024 * 1024,
    };
  }

  private async persistReasons(reasons: Map<number, WaitReason>): Promise<void> {
    const changed: { runId: number; reason: unknown }[] = [];
    for (const [runId, reason] of reasons) {
      const text = JSON.stringify(reason);
      if (this.persistedReasons.get(runId) === text) continue;
      this.persistedReasons.set(runId, text);
      changed.push({ runId, reason });
      const run = this.state.runs.get(runId);
      if (run) run.waitReason = reason;
    }
    await this.store.setWaitReasons(changed);
  }

  /** Runs the store believes are on `agent` but the reconnected agent does not know are lost there. */
  private async reconcileAgent(name: string): Promise<void> {
    const agent = this.link?.connected().find((a) => a.name === name);
    if (!agent) return;
    const known = new Set(agent.activeRuns);
    for (const r of [...this.state.runs.values()]) {
      if (r.agentName === name && r.state !== 'waiting' && !known.has(r.id) && r.dispatchedAt !== null && r.dispatchedAt < this.clock.now() - this.options.reconcileAfterMs) {
        await this.onLost(r.id, `agent ${name} reconnected without run ${r.id}`);
      }
    }
  }

  /** Set by the reports module (engine/reports.ts) so that reconciliation uses the same lost handling. */
  onLost: (runId: number, reason: string) => Promise<void> = async () => undefined;

  forget(runId: number): void {
    this.state.runs.delete(runId);
    this.state.releaseHolds(runId);
    this.persistedReasons.delete(runId);
  }

  /** The `after` schedule: the next occurrence follows the end of the run, within the same plan day. */
  async followAfter(run: RunRecord, endedAt: number): Promise<void> {
    const occ = this.occurrencesOf(run.jobName);
    if (occ?.kind !== 'after' || run.origin === 'manual' || run.origin === 'rerun') return;
    const { end } = planDayBounds(run.planDate, this.calendar);
    const next = endedAt + occ.afterMs!;
    const entry = (await this.store.planEntries(run.planDate)).find((e) => e.jobName === run.jobName);
    if (!entry || next >= end) return;
    const e = { ...entry, nextDueAt: next };
    await this.store.upsertPlanEntries([e]);
    this.setEntry(e);
  }

  registeredAgents(): string[] {
    return this.registered;
  }

  connectedAgents(): ConnectedAgent[] {
    return this.link?.connected() ?? [];
  }

  async killOnAgent(agent: string, runId: number): Promise<void> {
    if (!this.link) throw new ConflictError('no agent link is running; the run cannot be reached', { runId });
    await this.link.kill(agent, runId);
  }
}

function compileRateWindow(rate: string): number {
  return durationMs(rate.split('/')[1]!);
}

/** Stored specs hold canonical durations and sizes, so parsing cannot fail here. */
function durationMs(d: string): number {
  return parseDuration(d) as number;
}

function sizeBytes(s: string): number {
  return parseSize(s) as number;
}
