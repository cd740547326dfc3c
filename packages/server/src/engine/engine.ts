import type { Logger } from 'pino';
import {
  compileSchedule, ConflictError, DueHeap, type Definitions, expandTarget, type JobSpec, materialize, type Occurrences, type Schedule, planCalendar, type PlanCalendar,
  addDays, planDateOf, planDayBounds, type WaitReason, canonicalJson, parseDuration, parseSize,
} from '@batchalyzer/core';
import { EarlyRunTouchedError, type NewRun, type PlanEntryRecord, type RunRecord, type Store } from '@batchalyzer/store';
import type { EventBus } from '../events.js';
import type { Service } from '../lifecycle.js';
import type { AgentLink, ConnectedAgent, DispatchPayload } from '../link.js';
import { createdAhead, hasRunAhead, planWithdrawal, untouchedAhead } from './ahead.js';
import { Reconciler } from './reconcile.js';
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

export class Engine implements Service {
  readonly name = 'engine';
  readonly state = new EngineState();
  defs!: Definitions;
  calendar!: PlanCalendar;
  private link: AgentLink | null = null;
  private registered = new Set<string>();
  private readonly entries = new Map<string, PlanEntryRecord>();
  /** Due times of `entries`, ordered; stale heap items (entry moved or gone) are skipped when popped. */
  private readonly due = new DueHeap<string>();
  private readonly loadedDays = new Set<string>();
  /**
   * Compiled schedules shared by every job with the same schedule (a cron library instance costs ~0.6 ms and
   * tens of KB; 100,000 jobs usually have far fewer distinct schedules), each remembering its last answer, so
   * that loading a plan day asks each distinct schedule once (docs/performance.md, plan-100k).
   */
  private readonly compiled = new Map<string, Occurrences>();
  /**
   * The same by schedule object, for the current definitions and calendar (replaced together, and this with
   * them): filled while loading a plan day, so that a tick finds a due job's schedule without serialising it
   * (10,000 due jobs at once, plan-100k).
   */
  private bySchedule = new Map<object, Occurrences>();
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
    for (const d of await this.store.planDays()) this.loadedDays.add(d.planDate);
    for (const e of await this.store.pendingPlanEntries()) this.setEntry(e);
    this.registered = new Set((await this.store.listAgents()).map((a) => a.name));
    // Jobs defined while the server was down get today's entry from now on; existing entries keep catching up.
    await this.syncEntries(true);
    // Runs created ahead before a crash: those the definitions no longer describe, or whose time passed while the
    // server was down (no pass of this process decided them: decidedAt is 0), are made again from the plan entries
    // (see withdrawStale), in the first pass.
    this.withdraw = 'start';
    await this.repairAfterChains(now);
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

  private setEntry(e: PlanEntryRecord, key = `${e.planDate}|${e.jobName}`): void {
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

  /** Set when the plan zone or new-day time changed: the next plan day is planned from now. */
  private calendarChanged = false;

  async reloadDefinitions(): Promise<void> {
    this.defsVersion = await this.store.definitionsVersion();
    this.defs = await this.store.loadDefinitions();
    this.bySchedule = new Map();
    const before = this.calendar ? canonicalJson(this.calendar) : null;
    this.calendar = planCalendar(this.defs.settings.timezone ?? this.options.timezone, this.defs.settings.newDayAt ?? '00:00');
    if (before !== null && before !== canonicalJson(this.calendar)) this.calendarChanged = true;
  }

  occurrencesOf(jobName: string): Occurrences | null {
    const spec = this.defs.jobs[jobName];
    return spec?.schedule ? this.compiledOf(spec.schedule) : null;
  }

  /** The shared compilation of a schedule. */
  private compiledOf(schedule: Schedule): Occurrences {
    let occ = this.bySchedule.get(schedule);
    if (occ) return occ;
    // Equal texts mean equal schedules (a different key order only costs one more compilation); canonical JSON
    // of 100,000 schedules was a tenth of the plan-day load.
    const key = `${this.calendar.timezone}|${this.calendar.newDayAtMinutes}|${JSON.stringify(schedule)}`;
    occ = this.compiled.get(key);
    if (!occ) {
      occ = rememberLast(compileSchedule(schedule, this.calendar.timezone, this.calendar));
      this.compiled.set(key, occ);
    }
    this.bySchedule.set(schedule, occ);
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
    this.slice = performance.now();
    if ((await this.store.definitionsVersion()) !== this.defsVersion) {
      await this.reloadDefinitions();
      await this.syncEntries();
      this.withdraw ??= 'changed';
    }
    // Runs that came due more than the grace period ago with no pass deciding them since go through catch-up.
    if (this.decidedAt > 0 && now - this.decidedAt > this.options.graceMs) this.withdraw ??= 'late';
    // A store error leaves it set (the next pass tries again); a refusal the engine could not resolve by reading
    // the runs again is retried by the next pass too, but this one goes on.
    if (this.withdraw !== null) this.withdraw = (await this.withdrawStale(now, this.withdraw)) ? null : 'refused';
    await this.ensurePlanDay(now);
    const aheadAt = await this.materializeDue(now);
    const wakeAt = await this.decideAndDispatch(now);
    this.decidedAt = now;
    let next = Math.min(wakeAt ?? Number.POSITIVE_INFINITY, this.nextDue() ?? Number.POSITIVE_INFINITY, aheadAt);
    next = Math.min(next, planDayBounds(planDateOf(now, this.calendar), this.calendar).end);
    this.schedule(next);
  }

  /** Loads the plan day containing `now` once: one entry per job whose schedule can fire that day. */
  private async ensurePlanDay(now: number): Promise<void> {
    const date = planDateOf(now, this.calendar);
    if (this.loadedDays.has(date)) return;
    // Whole plan days that passed while the server was down (or the clock jumped) are loaded too, oldest first,
    // so that their occurrences go through each job's catch-up policy instead of vanishing (bounded by retention).
    const fresh = this.loadedDays.size === 0 || this.calendarChanged;
    const last = [...this.loadedDays].sort().at(-1);
    const missed: string[] = [];
    if (!fresh && last !== undefined) {
      const oldest = planDateOf(now - this.options.retentionMs, this.calendar);
      for (let d = addDays(last, 1); d < date; d = addDays(d, 1)) if (d >= oldest) missed.push(d);
    }
    for (const d of [...missed, date]) {
      const { start, end } = planDayBounds(d, this.calendar);
      // On the very first start, or after the plan zone or new-day time changed, there is nothing to catch up:
      // plan from now (less the grace), not from the day's start.
      const from = fresh ? Math.max(start, now - this.options.graceMs) : start;
      const entries: PlanEntryRecord[] = [];
      for (const jobName of Object.keys(this.defs.jobs)) {
        const e = this.firstEntry(jobName, d, from, end);
        if (e) entries.push(e);
      }
      const created = await this.store.createPlanDay({ planDate: d, timezone: this.calendar.timezone, startsAt: start, endsAt: end, loadedAt: now }, entries);
      this.loadedDays.add(d);
      // Entries of a plan day are only written once its row exists, so a day created here holds exactly these
      // entries; reading 100,000 of them back cost a third of a second (plan-100k). A day created by another
      // process holds its entries, not ours.
      for (const e of created ? entries : await this.store.planEntries(d)) this.setEntry(e);
      this.events.emit('plan:loaded', { planDate: d, entries: entries.length });
      this.logger.info({ planDate: d, entries: entries.length, missed: d !== date }, 'plan day loaded');
    }
    this.calendarChanged = false;
    // Retention (brief §12): a new day is the moment to forget what is older than the retention period.
    const cutoff = now - this.options.retentionMs;
    const pruned = await this.store.pruneBefore(cutoff, planDateOf(cutoff, this.calendar));
    if (pruned.runs) this.logger.info({ runs: pruned.runs }, 'pruned ended runs past retention');
  }

  private firstEntry(jobName: string, date: string, from: number, end: number): PlanEntryRecord | null {
    const spec = this.defs.jobs[jobName]!;
    if (spec.enabled === false || !spec.schedule) return null;
    const occ = this.compiledOf(spec.schedule);
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
      // A due occurrence not yet turned into a run stays due: the change applies from the next one.
      if (e.nextDueAt !== null && e.nextDueAt <= now) continue;
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

  private fanOut(spec: JobSpec): string[] | null {
    return spec.on.mode === 'all' ? expandTarget(spec.on, this.defs.groups) : null;
  }

  /**
   * Turns the due plan entries into runs, and those coming due within `lookaheadMs` too, up to `lookaheadBudget`
   * of them (docs/scheduling.md, "Runs created ahead"): one store transaction for the runs and the entries' next
   * times. Returns when a pass should next create runs ahead (now: budget used up; +∞: nothing to create ahead).
   */
  private async materializeDue(now: number): Promise<number> {
    const updates: PlanEntryRecord[] = [];
    const keys: string[] = [];
    const runs: NewRun[] = [];
    const seen = new Set<string>();
    /** Entries within the window that are not created ahead (overlap: skip): back on the heap after the loop. */
    const later: string[] = [];
    const aheadKeys = new Set<string>();
    const creatingAhead = this.options.lookaheadMs > 0 && this.options.lookaheadBudget > 0;
    const horizon = creatingAhead ? now + this.options.lookaheadMs : now;
    let budget = this.options.lookaheadBudget;
    let aheadAt = Number.POSITIVE_INFINITY;
    // A tick's due entries are nearly all of one plan day: its bounds computed once, not per entry.
    const dayEnds = new Map<string, number>();
    while (this.due.size) {
      const top = this.due.peek()!;
      const e = this.entries.get(top.key);
      if (!e || e.nextDueAt !== top.at || seen.has(top.key)) {
        this.due.pop();
        continue;
      }
      const ahead = top.at > now;
      if (ahead && (top.at > horizon || budget <= 0)) {
        // The window is refilled when its first uncreated occurrence is half a window away: passes that create
        // runs ahead come in batches, not one per due time.
        if (creatingAhead) aheadAt = budget <= 0 ? now : top.at - this.options.lookaheadMs / 2;
        break;
      }
      this.due.pop();
      const spec = this.defs.jobs[e.jobName];
      // One run ahead per entry: the next is made once that one is due. Fewer runs to take back when the
      // definitions change, and none made for an occurrence whose predecessor has not come due yet.
      if (ahead && (!createdAhead(spec) || hasRunAhead(this.state.runs, e, now))) {
        later.push(top.key);
        continue;
      }
      if (ahead) aheadKeys.add(top.key);
      seen.add(top.key);
      keys.push(top.key);
      if (!spec?.schedule || spec.enabled === false) {
        updates.push({ planDate: e.planDate, jobName: e.jobName, nextDueAt: null, lastNominalAt: e.lastNominalAt, jobRevision: e.jobRevision });
        continue;
      }
      let end = dayEnds.get(e.planDate);
      if (end === undefined) dayEnds.set(e.planDate, (end = planDayBounds(e.planDate, this.calendar).end));
      // Ahead of time the entry's next occurrence is taken as if it were due now: exactly that one, on time.
      const m = materialize({
        entry: e, spec, occurrences: this.compiledOf(spec.schedule), now: ahead ? top.at : now, dayEnd: end, graceMs: this.options.graceMs,
        unfinished: (target) => this.state.unfinishedOf(e.jobName).filter((r) => r.targetAgent === target).length,
        fanOut: this.fanOut(spec),
      });
      // Records built field by field, not spread: 10,000 of each in one tick (plan-100k).
      updates.push({ planDate: e.planDate, jobName: e.jobName, nextDueAt: m.nextDueAt, lastNominalAt: m.lastNominalAt, jobRevision: e.jobRevision });
      const priority = spec.priority ?? 0;
      for (const r of m.runs) {
        const run: NewRun = { jobName: r.jobName, planDate: r.planDate, nominalAt: r.nominalAt, dueAt: r.dueAt, origin: r.origin, priority, targetAgent: r.targetAgent, spec };
        if (r.skipped !== undefined) run.skipped = r.skipped;
        runs.push(run);
      }
      if (ahead) budget -= m.runs.length;
    }
    for (const key of later) this.due.push(this.entries.get(key)!.nextDueAt!, key);
    if (updates.length === 0) return aheadAt;
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
    for (let k = 0; k < updates.length; k++) {
      const u = updates[k]!;
      this.setEntry(u, keys[k]);
      // A due entry moved to a time inside the window: the next pass makes its next run ahead.
      if (u.nextDueAt !== null && u.nextDueAt <= horizon && !aheadKeys.has(keys[k]!) && createdAhead(this.defs.jobs[u.jobName])) aheadAt = now;
    }
    for (const r of created) {
      this.track(r);
      // An `after` chain continues past a skipped occurrence: the next one follows from now.
      if (r.state === 'skipped') await this.followAfter(r, now);
    }
    return aheadAt;
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
        compiledOf: (schedule) => this.compiledOf(schedule),
        dayEnd: (planDate) => planDayBounds(planDate, this.calendar).end,
        entryOf: async (planDate, jobName) => {
          const e = this.entries.get(`${planDate}|${jobName}`);
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
      for (let k = 0; k < entries.length; k++) this.setEntry(entries[k]!, keys[k]);
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
      for (const e of await this.store.planEntries(planDate)) {
        const key = `${e.planDate}|${e.jobName}`;
        if (e.nextDueAt === null) this.entries.delete(key);
        else if (this.entries.get(key)?.nextDueAt !== e.nextDueAt) this.setEntry(e, key);
      }
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

  /**
   * A crash between recording a run's end and moving its `after` entry on would stop the chain for the day:
   * at start, an `after` entry with no next time, no unfinished run and room left in the day continues it.
   */
  private async repairAfterChains(now: number): Promise<void> {
    const date = planDateOf(now, this.calendar);
    if (!this.loadedDays.has(date)) return;
    const { end } = planDayBounds(date, this.calendar);
    const fixes: PlanEntryRecord[] = [];
    for (const e of await this.store.planEntries(date)) {
      const occ = e.nextDueAt === null && e.lastNominalAt !== null ? this.occurrencesOf(e.jobName) : null;
      if (occ?.kind !== 'after' || this.state.unfinishedOf(e.jobName).length > 0) continue;
      const last = (await this.store.listRuns({ job: e.jobName, planDate: date }, { limit: 1 })).items[0];
      const next = Math.max(now, (last?.endedAt ?? now) + occ.afterMs!);
      if (next < end) fixes.push({ ...e, nextDueAt: next });
    }
    await this.store.upsertPlanEntries(fixes);
    for (const e of fixes) this.setEntry(e);
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

const STORED_LIST_MAX = 20;


/**
 * The persisted wait reason lists at most 20 holders / agents / active runs (else only their number): 10,000 runs waiting
 * for a pool held by 1,000 runs must not store 10,000 copies of a 1,000-entry list on every change (restart
 * bench). "Why is this not running?" (OperatorActions.why) still explains from the live state, in full.
 */
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

/** Wraps a schedule so that asking again for the same instant costs nothing (pure functions, same answer). */
function rememberLast(occ: Occurrences): Occurrences {
  let lastT = Number.NaN;
  let lastV: number | null = null;
  return {
    ...occ,
    next(t: number): number | null {
      if (t !== lastT) {
        lastV = occ.next(t);
        lastT = t;
      }
      return lastV;
    },
  };
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
