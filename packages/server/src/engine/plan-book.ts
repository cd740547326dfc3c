import type { Logger } from 'pino';
import {
  addDays, compileSchedule, type Definitions, DueHeap, expandTarget, type JobSpec, materialize, type Occurrences, planDateOf, planDayBounds,
  type PlanCalendar, type Schedule,
} from '@batchalyzer/core';
import type { NewRun, PlanEntryRecord, RunRecord, Store } from '@batchalyzer/store';
import type { EventBus } from '../events.js';
import { createdAhead, hasRunAhead } from './ahead.js';
import type { EngineState } from './state.js';

/** What the plan book is given by the engine; never the Engine itself. */
export interface PlanBookDeps {
  store: Store;
  events: EventBus;
  logger: Logger;
  /** The engine's options (the same object): only these are read here. */
  options: { graceMs: number; retentionMs: number; lookaheadMs: number; lookaheadBudget: number };
  /** Actor recorded on the runs and entries this writes. */
  actor: string;
  now(): number;
  /** The definitions and plan calendar in force; the engine replaces them on reload and then calls `reset`. */
  defs(): Definitions;
  calendar(): PlanCalendar;
  /** The engine's run mirror: whether an entry has a run made ahead, a job's unfinished runs. */
  state: Pick<EngineState, 'runs' | 'unfinishedOf'>;
  /** Adds a newly created run to the engine's mirror and announces it. */
  track(r: RunRecord): void;
}

/**
 * The engine's plan book (brief §4, docs/scheduling.md): the plan days it has loaded, one plan entry per job and
 * day with its next due time, the due times in order, and the compiled schedules. It loads plan days, follows
 * definitions changes and `after` chains, and turns due entries into runs (materializeDue). The engine owns the
 * definitions, the plan calendar and the run mirror; what this needs of them it is given (PlanBookDeps).
 */
export class PlanBook {
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
  /** Set when the plan zone or new-day time changed: the next plan day is planned from now. */
  private calendarChanged = false;

  constructor(private readonly deps: PlanBookDeps) {}

  private get defs(): Definitions {
    return this.deps.defs();
  }

  private get calendar(): PlanCalendar {
    return this.deps.calendar();
  }

  /** At start: the plan days already loaded and their pending entries. */
  async load(): Promise<void> {
    for (const d of await this.deps.store.planDays()) this.loadedDays.add(d.planDate);
    for (const e of await this.deps.store.pendingPlanEntries()) this.setEntry(e);
  }

  /** The definitions (and with them the calendar) were replaced; `calendarChanged`: the plan zone or new-day time differs. */
  reset(calendarChanged: boolean): void {
    this.bySchedule = new Map();
    if (calendarChanged) this.calendarChanged = true;
  }

  entry(key: string): PlanEntryRecord | undefined {
    return this.entries.get(key);
  }

  /** Holds an entry under `key` and queues its due time; an entry with no next time is dropped. */
  setEntry(e: PlanEntryRecord, key = `${e.planDate}|${e.jobName}`): void {
    if (e.nextDueAt === null) {
      this.entries.delete(key);
      return;
    }
    this.entries.set(key, e);
    this.due.push(e.nextDueAt, key);
  }

  /** An entry read back from the store: held as read, unless this already holds it with the same next time. */
  reread(e: PlanEntryRecord): void {
    const key = `${e.planDate}|${e.jobName}`;
    if (e.nextDueAt === null) this.entries.delete(key);
    else if (this.entries.get(key)?.nextDueAt !== e.nextDueAt) this.setEntry(e, key);
  }

  /** The earliest pending due time, dropping heap items that no longer match their entry. */
  nextDue(): number | null {
    for (let top = this.due.peek(); top; top = this.due.peek()) {
      if (this.entries.get(top.key)?.nextDueAt === top.at) return top.at;
      this.due.pop();
    }
    return null;
  }

  occurrencesOf(jobName: string): Occurrences | null {
    const spec = this.defs.jobs[jobName];
    return spec?.schedule ? this.compiledOf(spec.schedule) : null;
  }

  /** The shared compilation of a schedule. */
  compiledOf(schedule: Schedule): Occurrences {
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

  /** Loads the plan day containing `now` once: one entry per job whose schedule can fire that day. */
  async ensurePlanDay(now: number): Promise<void> {
    const date = planDateOf(now, this.calendar);
    if (this.loadedDays.has(date)) return;
    // Whole plan days that passed while the server was down (or the clock jumped) are loaded too, oldest first,
    // so that their occurrences go through each job's catch-up policy instead of vanishing (bounded by retention).
    const fresh = this.loadedDays.size === 0 || this.calendarChanged;
    const last = [...this.loadedDays].sort().at(-1);
    const missed: string[] = [];
    if (!fresh && last !== undefined) {
      const oldest = planDateOf(now - this.deps.options.retentionMs, this.calendar);
      for (let d = addDays(last, 1); d < date; d = addDays(d, 1)) if (d >= oldest) missed.push(d);
    }
    for (const d of [...missed, date]) {
      const { start, end } = planDayBounds(d, this.calendar);
      // On the very first start, or after the plan zone or new-day time changed, there is nothing to catch up:
      // plan from now (less the grace), not from the day's start.
      const from = fresh ? Math.max(start, now - this.deps.options.graceMs) : start;
      const entries: PlanEntryRecord[] = [];
      for (const jobName of Object.keys(this.defs.jobs)) {
        const e = this.firstEntry(jobName, d, from, end);
        if (e) entries.push(e);
      }
      const created = await this.deps.store.createPlanDay({ planDate: d, timezone: this.calendar.timezone, startsAt: start, endsAt: end, loadedAt: now }, entries);
      this.loadedDays.add(d);
      // Entries of a plan day are only written once its row exists, so a day created here holds exactly these
      // entries; reading 100,000 of them back cost a third of a second (plan-100k). A day created by another
      // process holds its entries, not ours.
      for (const e of created ? entries : await this.deps.store.planEntries(d)) this.setEntry(e);
      this.deps.events.emit('plan:loaded', { planDate: d, entries: entries.length });
      this.deps.logger.info({ planDate: d, entries: entries.length, missed: d !== date }, 'plan day loaded');
    }
    this.calendarChanged = false;
    // Retention (brief §12): a new day is the moment to forget what is older than the retention period.
    const cutoff = now - this.deps.options.retentionMs;
    const pruned = await this.deps.store.pruneBefore(cutoff, planDateOf(cutoff, this.calendar));
    if (pruned.runs) this.deps.logger.info({ runs: pruned.runs }, 'pruned ended runs past retention');
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
  async syncEntries(onlyMissing = false): Promise<void> {
    const now = this.deps.now();
    const date = planDateOf(now, this.calendar);
    if (!this.loadedDays.has(date)) return;
    const { end } = planDayBounds(date, this.calendar);
    const existing = new Map((await this.deps.store.planEntries(date)).map((e) => [e.jobName, e]));
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
    await this.deps.store.upsertPlanEntries(updates);
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
  async materializeDue(now: number): Promise<number> {
    const { options, state } = this.deps;
    const updates: PlanEntryRecord[] = [];
    const keys: string[] = [];
    const runs: NewRun[] = [];
    const seen = new Set<string>();
    /** Entries within the window that are not created ahead (overlap: skip): back on the heap after the loop. */
    const later: string[] = [];
    const aheadKeys = new Set<string>();
    const creatingAhead = options.lookaheadMs > 0 && options.lookaheadBudget > 0;
    const horizon = creatingAhead ? now + options.lookaheadMs : now;
    let budget = options.lookaheadBudget;
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
        if (creatingAhead) aheadAt = budget <= 0 ? now : top.at - options.lookaheadMs / 2;
        break;
      }
      this.due.pop();
      const spec = this.defs.jobs[e.jobName];
      // One run ahead per entry: the next is made once that one is due. Fewer runs to take back when the
      // definitions change, and none made for an occurrence whose predecessor has not come due yet.
      if (ahead && (!createdAhead(spec) || hasRunAhead(state.runs, e, now))) {
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
        entry: e, spec, occurrences: this.compiledOf(spec.schedule), now: ahead ? top.at : now, dayEnd: end, graceMs: options.graceMs,
        unfinished: (target) => state.unfinishedOf(e.jobName).filter((r) => r.targetAgent === target).length,
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
      created = await this.deps.store.advancePlan(updates, runs, this.deps.actor, now);
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
      this.deps.track(r);
      // An `after` chain continues past a skipped occurrence: the next one follows from now.
      if (r.state === 'skipped') await this.followAfter(r, now);
    }
    return aheadAt;
  }

  /**
   * A crash between recording a run's end and moving its `after` entry on would stop the chain for the day:
   * at start, an `after` entry with no next time, no unfinished run and room left in the day continues it.
   */
  async repairAfterChains(now: number): Promise<void> {
    const date = planDateOf(now, this.calendar);
    if (!this.loadedDays.has(date)) return;
    const { end } = planDayBounds(date, this.calendar);
    const fixes: PlanEntryRecord[] = [];
    for (const e of await this.deps.store.planEntries(date)) {
      const occ = e.nextDueAt === null && e.lastNominalAt !== null ? this.occurrencesOf(e.jobName) : null;
      if (occ?.kind !== 'after' || this.deps.state.unfinishedOf(e.jobName).length > 0) continue;
      const last = (await this.deps.store.listRuns({ job: e.jobName, planDate: date }, { limit: 1 })).items[0];
      const next = Math.max(now, (last?.endedAt ?? now) + occ.afterMs!);
      if (next < end) fixes.push({ ...e, nextDueAt: next });
    }
    await this.deps.store.upsertPlanEntries(fixes);
    for (const e of fixes) this.setEntry(e);
  }

  /** The `after` schedule: the next occurrence follows the end of the run, within the same plan day. */
  async followAfter(run: RunRecord, endedAt: number): Promise<void> {
    const occ = this.occurrencesOf(run.jobName);
    if (occ?.kind !== 'after' || run.origin === 'manual' || run.origin === 'rerun') return;
    const { end } = planDayBounds(run.planDate, this.calendar);
    const next = endedAt + occ.afterMs!;
    const entry = (await this.deps.store.planEntries(run.planDate)).find((e) => e.jobName === run.jobName);
    if (!entry || next >= end) return;
    const e = { ...entry, nextDueAt: next };
    await this.deps.store.upsertPlanEntries([e]);
    this.setEntry(e);
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
