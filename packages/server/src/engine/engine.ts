import type { Logger } from 'pino';
import {
  ConflictError, type Definitions, type Occurrences, planCalendar, type PlanCalendar, planDateOf, planDayBounds, type WaitReason, canonicalJson,
  parseDuration, parseSize,
} from '@batchalyzer/core';
import { EarlyRunTouchedError, type PlanEntryRecord, type RunRecord, type Store } from '@batchalyzer/store';
import type { EventBus } from '../events.js';
import type { Service } from '../lifecycle.js';
import type { AgentLink, ConnectedAgent, DispatchPayload } from '../link.js';
import { planWithdrawal, untouchedAhead } from './ahead.js';
import { PlanBook } from './plan-book.js';
import { Reconciler } from './reconcile.js';
import { EngineState } from './state.js';

/** The engine's time source: injected, so that tests and benchmarks step it. */
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
  /** Period of the check of runs on agents against the agents' own lists; a run missing twice this far apart is decided (reconcile.ts). */
  reconcileAfterMs: number;
  /** Keep ended runs, plan days and conditions this long. */
  retentionMs: number;
  /**
   * Scheduled runs are created up to this long before they come due, so that the moment thousands come due only
   * decides them (docs/scheduling.md, "Runs created ahead"). 0: runs are created when due.
   */
  lookaheadMs: number;
  /** At most this many runs are created ahead in one pass (a pass stays short); runs already due are never limited. */
  lookaheadBudget: number;
}

export const DEFAULT_ENGINE_OPTIONS: Omit<EngineOptions, 'timezone'> = {
  graceMs: 60_000,
  agingMs: 60_000,
  maxSleepMs: 30_000,
  reconcileAfterMs: 10_000,
  retentionMs: 30 * 86_400_000,
  lookaheadMs: 5 * 60_000,
  lookaheadBudget: 2000,
};

const ACTOR = 'scheduler';

/**
 * The scheduling engine (brief §4–§7): a thin loop around the pure `materialize` and `decide` functions.
 * A pass loads nothing it already knows: it takes due plan entries, turns them into runs, decides, commits
 * dispatches through the store (which re-checks capacity atomically) and hands them to the agent link.
 * Passes are triggered by events (run ended, agent connected, condition posted, hold released, definitions
 * applied) and by the clock, never sleeping longer than `maxSleepMs`.
 */
export class Engine implements Service {
  readonly name = 'engine';
  readonly state = new EngineState();
  defs!: Definitions;
  calendar!: PlanCalendar;
  private link: AgentLink | null = null;
  private registered = new Set<string>();
  /** Plan days, plan entries, their due times and the compiled schedules (engine/plan-book.ts). */
  private readonly book: PlanBook;
  private readonly persistedReasons = new Map<number, string>();
  /**
   * Runs created ahead are to be checked (withdrawStale): at start, after a definitions change, when no pass has
   * decided for longer than the grace period (clock jump, suspended VM, store outage), or after a refusal.
   */
  private withdraw: 'start' | 'changed' | 'late' | 'refused' | null = null;
  /** `now` of the last pass that decided the waiting runs: every run due by then has been decided as due. */
  private decidedAt = 0;
  /**
   * Runs the store refused to withdraw though they look untouched here: touched within their creation millisecond
   * (a hold and release, a clock stepped back), which only the run's events tell. Kept like any touched run.
   */
  private readonly touchedAhead = new Set<number>();
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
  ) {
    this.book = new PlanBook({
      store, events, logger, options, actor: ACTOR,
      now: () => this.clock.now(),
      defs: () => this.defs,
      calendar: () => this.calendar,
      state: this.state,
      track: (r) => this.track(r),
    });
    this.reconciler = new Reconciler({
      state: this.state,
      periodMs: options.reconcileAfterMs,
      now: () => this.clock.now(),
      agents: () => this.link?.connected() ?? [],
      failed: (err, run) => run
        ? this.logger.error({ err, runId: run.id, agent: run.agentName }, 'could not record what reconciliation decided; the run is checked again')
        : this.logger.error({ err }, 'reconciliation with the agents failed; it runs again in a period'),
      lose: async (run, reason) => {
        this.logger.warn({ runId: run.id, agent: run.agentName, state: run.state }, 'run unknown to its agent; it is lost');
        await this.onLost(run.id, reason);
      },
      requeue: async (run, reason) => {
        const back = await this.store.requeueRun({ runId: run.id, at: this.clock.now(), actor: ACTOR, reason });
        if (!back) return;
        this.logger.warn({ runId: run.id, agent: run.agentName }, 'dispatched run unknown to its agent; it waits again');
        this.state.runs.set(back.id, back);
        this.state.releaseHolds(back.id);
        this.poke();
      },
    });
  }

  /** Compares the runs on agents with the agents' own lists (engine/reconcile.ts). */
  private readonly reconciler: Reconciler;

  /** The agent link is created after the engine (it reports to it), so it is attached here. */
  attachLink(link: AgentLink): void {
    this.link = link;
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.reloadDefinitions();
    const now = this.clock.now();
    await this.state.load(this.store, this.maxRateWindow(), now);
    await this.book.load();
    this.registered = new Set((await this.store.listAgents()).map((a) => a.name));
    // Jobs defined while the server was down get today's entry from now on; existing entries keep catching up.
    await this.book.syncEntries(true);
    // Runs created ahead before a crash: those the definitions no longer describe, or whose time passed while the
    // server was down (no pass of this process decided them: decidedAt is 0), are made again from the plan entries
    // (see withdrawStale), in the first pass.
    this.withdraw = 'start';
    await this.book.repairAfterChains(now);
    this.unsubscribe.push(
      this.events.on('definitions:applied', () => this.poke()),
      this.events.on('agent:connected', ({ name }) => {
        this.registered.add(name);
        this.poke();
      }),
      this.events.on('agent:disconnected', () => this.poke()),
      this.events.on('agent:draining', () => this.poke()),
    );
    await this.pass();
    this.reconciler.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const off of this.unsubscribe.splice(0)) off();
    await this.running;
    await this.reconciler.stop();
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
          // At most one pass starts in an event-loop turn: with SQLite a pass is one chain of microtasks, and an
          // agent's reports are committed in one too, so a pass started from each committed report ran them all
          // back to back in one turn (seconds with 10,000 waiting runs) while sockets, upgrades and handshakes
          // waited (restart bench). A further pass waits for the next turn; requests made until it starts are
          // coalesced into it. The first pass of a turn starts right after the caller's synchronous code: a hop
          // to the check phase first put the loop's pending I/O between a new run and its dispatch
          // (dispatch-latency, docs/performance.md).
          if (this.passInThisTurn) await new Promise((r) => setImmediate(r));
          else await Promise.resolve();
          if (this.stopped) break;
          this.again = false;
          this.markPassInThisTurn();
          await this.passOnce();
        } while (this.again && !this.stopped);
      } catch (err) {
        this.fail(err);
      } finally {
        this.running = null;
      }
    })();
  }

  /** Whether a pass started in the current event-loop turn (cleared in the turn's check phase). */
  private passInThisTurn = false;

  private markPassInThisTurn(): void {
    if (this.passInThisTurn) return;
    this.passInThisTurn = true;
    setImmediate(() => (this.passInThisTurn = false));
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
    const before = this.calendar ? canonicalJson(this.calendar) : null;
    this.calendar = planCalendar(this.defs.settings.timezone ?? this.options.timezone, this.defs.settings.newDayAt ?? '00:00');
    // Schedules are looked up again for the new definitions (compiled only when new); a changed calendar plans the
    // next plan day from now.
    this.book.reset(before !== null && before !== canonicalJson(this.calendar));
  }

  occurrencesOf(jobName: string): Occurrences | null {
    return this.book.occurrencesOf(jobName);
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
    this.slice = performance.now();
    if ((await this.store.definitionsVersion()) !== this.defsVersion) {
      await this.reloadDefinitions();
      await this.book.syncEntries();
      this.withdraw ??= 'changed';
    }
    // Runs that came due more than the grace period ago with no pass deciding them since go through catch-up.
    if (this.decidedAt > 0 && now - this.decidedAt > this.options.graceMs) this.withdraw ??= 'late';
    // A store error leaves it set (the next pass tries again); a refusal the engine could not resolve by reading
    // the runs again is retried by the next pass too, but this one goes on.
    if (this.withdraw !== null) this.withdraw = (await this.withdrawStale(now, this.withdraw)) ? null : 'refused';
    await this.book.ensurePlanDay(now);
    const aheadAt = await this.book.materializeDue(now);
    const wakeAt = await this.decideAndDispatch(now);
    this.decidedAt = now;
    let next = Math.min(wakeAt ?? Number.POSITIVE_INFINITY, this.book.nextDue() ?? Number.POSITIVE_INFINITY, aheadAt);
    next = Math.min(next, planDayBounds(planDateOf(now, this.calendar), this.calendar).end);
    this.schedule(next);
  }

  /**
   * Takes back runs created ahead that the definitions in force no longer describe, and those that came due
   * undecided longer than the grace period ago (ahead.ts, planWithdrawal), moving their entries back in the same
   * transaction. Returns false when the store refused twice (a listed run was touched meanwhile): the pass then
   * goes on without it (the other runs are made and dispatched) and the next pass tries again.
   */
  private async withdrawStale(now: number, why: string): Promise<boolean> {
    // An entry whose day has no occurrence left is not held in memory: its day's entries are read once.
    const stored = new Map<string, Map<string, PlanEntryRecord>>();
    for (let attempt = 1; ; attempt++) {
      const { ids, entries, keys } = await planWithdrawal({
        runs: this.state.runs, defs: this.defs, now, decidedAt: this.decidedAt, graceMs: this.options.graceMs, touched: this.touchedAhead,
        compiledOf: (schedule) => this.book.compiledOf(schedule),
        dayEnd: (planDate) => planDayBounds(planDate, this.calendar).end,
        entryOf: async (planDate, jobName) => {
          const e = this.book.entry(`${planDate}|${jobName}`);
          if (e) return e;
          let day = stored.get(planDate);
          if (!day) stored.set(planDate, (day = new Map((await this.store.planEntries(planDate)).map((x) => [x.jobName, x]))));
          return day.get(jobName);
        },
        lastOccurrenceAt: (planDate, jobName, except) => this.store.lastOccurrenceAt(planDate, jobName, except),
        breathe: () => this.breathe(),
      });
      if (ids.length === 0) return true;
      try {
        await this.store.withdrawEarlyRuns(ids, entries);
      } catch (err) {
        if (!(err instanceof EarlyRunTouchedError)) throw err;
        this.logger.warn({ runs: ids.length, why, attempt, err: err.message }, 'withdrawal of runs created ahead refused; the runs are read again');
        await this.refreshRefused(ids);
        for (const id of err.refused) {
          const r = this.state.runs.get(id);
          if (r && untouchedAhead(r)) this.touchedAhead.add(id);
        }
        stored.clear();
        if (attempt < 2) continue;
        return false;
      }
      for (const id of ids) {
        const r = this.state.runs.get(id)!;
        this.forget(id);
        this.events.emit('run:withdrawn', { runId: id, jobName: r.jobName, planDate: r.planDate });
      }
      for (let k = 0; k < entries.length; k++) this.book.setEntry(entries[k]!, keys[k]);
      this.logger.info({ runs: ids.length, why }, 'runs created ahead of their time withdrawn; they are made again from the current definitions');
      return true;
    }
  }

  /**
   * After a refused withdrawal the mirror is behind the store for some listed run: an operator acted on it, or
   * (PostgreSQL) an earlier withdrawal committed though its reply was lost. Each is read again; one that is gone
   * was withdrawn, so its entry is read back too (the commit moved it).
   */
  private async refreshRefused(ids: number[]): Promise<void> {
    const gone = new Set<string>();
    for (const id of ids) {
      const before = this.state.runs.get(id);
      const fresh = await this.store.getRun(id);
      if (fresh && (fresh.state === 'waiting' || fresh.state === 'dispatched' || fresh.state === 'running')) {
        this.state.runs.set(id, fresh);
        continue;
      }
      this.forget(id);
      if (before && !fresh) {
        gone.add(before.planDate);
        this.events.emit('run:withdrawn', { runId: id, jobName: before.jobName, planDate: before.planDate });
      }
    }
    for (const planDate of gone) {
      for (const e of await this.store.planEntries(planDate)) this.book.reread(e);
    }
  }

  /** Adds a newly created run to the mirror and announces it. */
  track(r: RunRecord): void {
    if (r.state === 'waiting') this.state.runs.set(r.id, r);
    this.events.emit('run:created', { runId: r.id, jobName: r.jobName, planDate: r.planDate, origin: r.origin });
    if (r.state === 'skipped') this.events.emit('run:ended', { runId: r.id, jobName: r.jobName, planDate: r.planDate, state: 'skipped', agent: null });
  }

  /** Start of the pass's current synchronous stretch (SQLite calls do not give the event loop a turn). */
  private slice = 0;

  /** Lets I/O in when the pass has held the event loop for 20 ms (burst: 1,000 runs due at once). */
  private async breathe(): Promise<void> {
    if (performance.now() - this.slice <= 20) return;
    await new Promise((r) => setImmediate(r));
    this.slice = performance.now();
  }

  private async decideAndDispatch(now: number): Promise<number | null> {
    this.state.pruneRateTakes(now - this.maxRateWindow());
    // Nothing waits: nothing to decide (agents connecting by the thousand must not cost a decision each).
    if (this.state.runs.waitingCount === 0) return null;
    await this.breathe();
    // Incremental: only the runs an event since the last pass can have changed are decided again (docs/scheduling.md).
    const decision = this.state.resolver.decide(this.state.live(now, this.defs, this.connectedAgents(), [...this.registered], this.options.agingMs));
    let applied = 0;
    try {
      for (const d of decision.dispatch) {
        // A burst of dispatches must not hold the event loop: agents' reports and heartbeats are served in between.
        await this.breathe();
        const result = await this.store.dispatchRun({ runId: d.runId, agent: d.agent, at: now, actor: ACTOR, pools: d.pools, rates: d.rates });
        applied++;
        if (!result.ok) {
          this.logger.debug({ runId: d.runId, reason: result.reason }, 'dispatch refused by the store');
          this.state.requeued(d.runId);
          continue;
        }
        // The store returns no row: the engine's copy of the waiting run, with the columns the claim changed.
        const held = this.state.runs.get(d.runId) ?? (await this.store.getRun(d.runId));
        if (!held) throw new Error(`run ${d.runId} was dispatched but is neither in the engine nor in the store`);
        const run: RunRecord = { ...held, state: 'dispatched', agentName: d.agent, dispatchedAt: now, waitReason: null, updatedAt: now };
        this.state.runs.set(d.runId, run);
        for (const p of d.pools) this.state.addHold(p.resource, d.runId, p.units);
        for (const r of d.rates) this.state.addRateTake(r.resource, now);
        this.state.lastDispatchAt.set(d.agent, now);
        this.persistedReasons.delete(d.runId);
        this.events.emit('run:dispatched', { runId: d.runId, jobName: run.jobName, agent: d.agent });
        this.deliver(run);
      }
    } finally {
      // A store error (SQLITE_BUSY, a dropped PostgreSQL connection) ends the pass: the runs decided but not
      // dispatched go back to the resolver, or they would stay filed as dispatched until a restart.
      for (const d of decision.dispatch.slice(applied)) this.state.requeued(d.runId);
    }
    await this.breathe();
    await this.persistReasons(decision.waiting);
    return decision.wakeAt;
  }

  private deliver(run: RunRecord): void {
    const link = this.link;
    const requeue = async (why: string) => {
      this.logger.warn({ runId: run.id, agent: run.agentName, why }, 'dispatch not delivered; the run waits again');
      const back = await this.store.requeueRun({ runId: run.id, at: this.clock.now(), actor: ACTOR, reason: `not delivered to ${run.agentName}: ${why}` });
      if (back) {
        this.state.runs.set(back.id, back);
        this.state.releaseHolds(back.id);
      }
      this.poke();
    };
    const secret = Object.entries(run.spec.env ?? {}).find(([, v]) => typeof v !== 'string');
    if (secret) {
      // There is no secrets store yet: running without the credential would be worse than not running.
      void this.failUndeliverable(run, `environment variable ${secret[0]} refers to secret "${(secret[1] as { secret: string }).secret}", but secrets cannot be stored yet; set the value directly or remove it`);
      return;
    }
    if (!link) {
      void requeue('no agent link').catch((e) => this.fail(e));
      return;
    }
    this.reconciler.dispatching(run.id);
    link.dispatch(run.agentName!, this.payloadOf(run)).then(() => this.reconciler.answered(run, true), (err: Error) => {
      this.reconciler.answered(run, false);
      // Put the run back only when it certainly did not reach the agent; after a timeout or a dropped connection
      // the agent may have it, so reconciliation with the agent's own list of runs decides (no double run).
      const definite = /is not connected|is draining|cannot be sent|rejected run|no agent link/.test(err.message);
      if (definite) void requeue(err.message).catch((e) => this.fail(e));
      else {
        this.logger.warn({ runId: run.id, agent: run.agentName, err: err.message }, 'dispatch unconfirmed; checking with the agent later');
      }
    });
  }

  private async failUndeliverable(run: RunRecord, reason: string): Promise<void> {
    const r = await this.store.finishRun({ runId: run.id, state: 'failed', at: this.clock.now(), actor: ACTOR, reason });
    this.forget(run.id);
    if (r.changed) this.events.emit('run:ended', { runId: run.id, jobName: run.jobName, planDate: run.planDate, state: 'failed', agent: run.agentName });
    this.poke();
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

  /** Stored form of each reason object (runs of one shape share one object, see decide): serialised once. */
  private readonly reasonText = new WeakMap<WaitReason, { text: string; stored: unknown }>();

  /**
   * A reason is rewritten in the store only when its lasting part changed. Which runs hold a pool, which run is
   * first in line and when a rate frees up change with every dispatch and completion: with a small pool and
   * many runs queued for it, rewriting them made every completion cost one row per queued run (the store keeps
   * them as of when the reason was last written, like the runs the resolver does not decide again; the mirror
   * and `explain` have the live ones).
   */
  private async persistReasons(reasons: Map<number, WaitReason>): Promise<void> {
    const changed: { runId: number; reason: unknown }[] = [];
    for (const [runId, reason] of reasons) {
      let c = this.reasonText.get(reason);
      if (!c) {
        const stored = storedReason(reason);
        c = { text: JSON.stringify(lastingPart(stored)), stored };
        this.reasonText.set(reason, c);
      }
      const run = this.state.runs.get(runId);
      if (run) run.waitReason = c.stored;
      if (this.persistedReasons.get(runId) === c.text) continue;
      this.persistedReasons.set(runId, c.text);
      changed.push({ runId, reason: c.stored });
    }
    await this.store.setWaitReasons(changed);
  }

  /** Set by the reports module (engine/reports.ts) so that reconciliation uses the same lost handling. */
  onLost: (runId: number, reason: string) => Promise<void> = async () => undefined;

  /** Runs an operator asked to kill, with who asked: their end is final, never retried. */
  readonly killRequested = new Map<number, string>();

  forget(runId: number): void {
    this.killRequested.delete(runId);
    this.reconciler.forget(runId);
    this.touchedAhead.delete(runId);
    this.state.runs.delete(runId);
    this.state.releaseHolds(runId);
    this.persistedReasons.delete(runId);
  }

  /** The `after` schedule: the next occurrence follows the end of the run, within the same plan day. */
  followAfter(run: RunRecord, endedAt: number): Promise<void> {
    return this.book.followAfter(run, endedAt);
  }

  registeredAgents(): string[] {
    return [...this.registered];
  }

  connectedAgents(): ConnectedAgent[] {
    return this.link?.connected() ?? [];
  }

  async killOnAgent(agent: string, runId: number): Promise<void> {
    if (!this.link) throw new ConflictError('no agent link is running; the run cannot be reached', { runId });
    await this.link.kill(agent, runId);
  }
}

/**
 * The persisted wait reason lists at most 20 holders / agents / active runs (else only their number): 10,000 runs waiting
 * for a pool held by 1,000 runs must not store 10,000 copies of a 1,000-entry list on every change (restart
 * bench). "Why is this not running?" (OperatorActions.why) still explains from the live state, in full.
 */
const STORED_LIST_MAX = 20;

/** A reason without what moves with every dispatch and completion (see persistReasons). */
function lastingPart(stored: unknown): unknown {
  const r = stored as { code?: string };
  if (r?.code === 'resource') {
    const { holders: _h, blockedBy: _b, holdersTotal: _t, ...rest } = r as Record<string, unknown>;
    return rest;
  }
  if (r?.code === 'rate') {
    const { freeAt: _f, ...rest } = r as Record<string, unknown>;
    return rest;
  }
  return stored;
}

function storedReason(r: WaitReason): unknown {
  // Beyond 20 entries only the count is kept: a list that changes whenever one holder ends would rewrite every
  // waiting run's reason on every completion.
  const cap = <T>(list: T[], key: string) => (list.length > STORED_LIST_MAX ? { [key]: [], [`${key}Total`]: list.length } : { [key]: list });
  switch (r.code) {
    case 'resource': {
      if (r.holders.length <= STORED_LIST_MAX) return r;
      // A large pool: which run is first in line changes with every dispatch; only the stable part is stored.
      const { blockedBy: _first, ...rest } = r;
      return { ...rest, ...cap(r.holders, 'holders') };
    }
    case 'no-agent':
      return { ...r, ...cap(r.considered, 'considered') };
    case 'concurrency':
      return { ...r, ...cap(r.active, 'active') };
    default:
      return r;
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
