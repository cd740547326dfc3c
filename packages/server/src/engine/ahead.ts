import { canonicalJson, type Definitions, type JobSpec, type Occurrences, type Schedule } from '@batchalyzer/core';
import type { PlanEntryRecord, RunRecord } from '@batchalyzer/store';
import type { RunMap } from './state.js';

/**
 * Runs created ahead of their due time (docs/scheduling.md, "Runs created ahead"): which jobs get them, and which
 * of them to take back when the definitions change or after downtime. The plan book creates them (plan-book.ts,
 * materializeDue), the engine commits the withdrawals (withdrawStale); what is decided here reads only what it is given.
 */

/**
 * Whether a job's runs are created ahead of their time. Not with `overlap: skip`: whether its occurrence runs or
 * is skipped depends on the runs unfinished when it comes due. Not `after` chains: their next time is only known
 * when a run ends, one run at a time. Not `mode: all`: one occurrence is a run per member agent, and members
 * joining or leaving a group, with some of those runs held or cancelled, could not be squared with taking back
 * the others.
 */
export function createdAhead(spec: JobSpec | undefined): boolean {
  return spec?.schedule !== undefined && spec.schedule.after === undefined && spec.enabled !== false &&
    spec.concurrency?.overlap !== 'skip' && spec.on.mode !== 'all';
}

/** Whether the entry has a run made ahead that is not due yet (its schedule's runs only: not manual, not orders). */
export function hasRunAhead(runs: RunMap, e: PlanEntryRecord, now: number): boolean {
  for (const r of runs.ofJob(e.jobName)) {
    if (r.dueAt > now && r.planDate === e.planDate && r.origin === 'schedule' && r.state === 'waiting') return true;
  }
  return false;
}

/**
 * A run made ahead (by the schedule, before its due time) that nothing has happened to since: it may be taken
 * back. Only facts that never change once the run is touched count: made before its nominal time (a run made
 * when due never is; a retry moves dueAt, not nominalAt), first attempt (a retry keeps the run, attempt + 1), and
 * never updated (a dispatch, a put-back after a failed delivery, a hold or release, a retry all set updatedAt;
 * wait reasons do not). The store checks the same facts when it deletes (withdrawEarlyRuns).
 */
export function untouchedAhead(r: RunRecord): boolean {
  return r.state === 'waiting' && !r.held && r.origin === 'schedule' && r.nominalAt !== null && r.createdAt < r.nominalAt &&
    r.attempt === 1 && r.updatedAt === r.createdAt;
}

export interface WithdrawalInput {
  runs: RunMap;
  defs: Definitions;
  now: number;
  /**
   * The time of the last pass of this process that decided the waiting runs (0 at start): a run due after it has
   * not been decided as due yet.
   */
  decidedAt: number;
  /** Runs that look untouched but that the store refused to withdraw (their events say otherwise): kept. */
  touched: ReadonlySet<number>;
  graceMs: number;
  compiledOf(schedule: Schedule): Occurrences;
  dayEnd(planDate: string): number;
  /** The plan entry of a job for a date, if it still exists (a removed job's entries went with it). */
  entryOf(planDate: string, jobName: string): Promise<PlanEntryRecord | undefined>;
  /**
   * The latest nominal time of the job's scheduled runs of a plan date (schedule and catch-up, ended ones
   * included), leaving out `except` (Store.lastOccurrenceAt): a cancelled run is no longer in the engine's memory.
   */
  lastOccurrenceAt(planDate: string, jobName: string, except: number[]): Promise<number | null>;
  /** Lets I/O in now and then: comparing 10,000 specs after a change holds the event loop for a while. */
  breathe(): Promise<void>;
}

export interface Withdrawal {
  ids: number[];
  /** The entries moved back, with their keys (`planDate|jobName`). */
  entries: PlanEntryRecord[];
  keys: string[];
}

/**
 * Runs created ahead that the definitions in force no longer describe (job changed, disabled or removed; its
 * schedule or the plan zone no longer gives that occurrence), so that the run made when it comes due follows the
 * current definitions: those not due yet, and those due already that no pass has decided as due (a CLI apply in
 * another process is seen by the first pass after it, often the one at the due time). Also those that came due
 * more than the grace period before any pass decided them (server down, clock jump, suspended VM, store outage):
 * the job's catch-up policy then applies to them as to any missed occurrence. Runs anything happened to (held,
 * dispatched and put back, retrying) are kept, like any waiting run.
 */
export async function planWithdrawal(input: WithdrawalInput): Promise<Withdrawal> {
  const { runs, defs, now } = input;
  const byEntry = new Map<string, { jobName: string; planDate: string; entry: PlanEntryRecord | undefined; nominal: number; ids: number[] }>();
  const texts = new Map<string, string | null>();
  const current = (jobName: string) => {
    let t = texts.get(jobName);
    if (t === undefined) {
      const spec = defs.jobs[jobName];
      texts.set(jobName, (t = spec && createdAhead(spec) ? canonicalJson(spec) : null));
    }
    return t;
  };
  const described = (r: RunRecord) => {
    const spec = defs.jobs[r.jobName];
    const text = current(r.jobName);
    return text !== null && (r.spec === spec || canonicalJson(r.spec) === text) && stillOccurs(input, r, spec!);
  };
  let n = 0;
  for (const r of runs.values()) {
    if ((++n & 255) === 0) await input.breathe();
    if (!untouchedAhead(r) || input.touched.has(r.id)) continue;
    let stale: boolean;
    if (r.dueAt > now) stale = !described(r);
    else {
      // Due already: decided as due by a pass of this process (it may be waiting for an agent, a resource…),
      // unless no pass decided since it came due and its stored reason is still the one given before its time.
      const code = (r.waitReason as { code?: string } | null)?.code;
      const undecided = r.dueAt > input.decidedAt && (code === undefined || code === 'not-due');
      stale = undecided && (r.dueAt < now - input.graceMs || !described(r));
    }
    if (!stale) continue;
    const key = `${r.planDate}|${r.jobName}`;
    const w = byEntry.get(key);
    if (w) {
      w.ids.push(r.id);
      w.nominal = Math.min(w.nominal, r.nominalAt!);
      continue;
    }
    // A removed job's entries went with it: its runs go, with no entry to move back.
    byEntry.set(key, { jobName: r.jobName, planDate: r.planDate, entry: await input.entryOf(r.planDate, r.jobName), nominal: r.nominalAt!, ids: [r.id] });
  }
  const out: Withdrawal = { ids: [], entries: [], keys: [] };
  for (const [key, w] of byEntry) {
    // The entry moves back to the earliest withdrawn occurrence, so every later untouched run made ahead for it
    // goes too, or it would be made twice. Any other later run of the entry (held, dispatched, retrying, made when
    // due) keeps the entry where it is: moving it back would make that occurrence a second time (its stale runs
    // then stay, as runs created when due would).
    let keep = false;
    for (const r of runs.ofJob(w.jobName)) {
      if (r.planDate !== w.planDate || (r.origin !== 'schedule' && r.origin !== 'catch-up')) continue;
      if (r.nominalAt === null || r.nominalAt <= w.nominal || w.ids.includes(r.id)) continue;
      if (untouchedAhead(r) && !input.touched.has(r.id)) w.ids.push(r.id);
      else keep = true;
    }
    if (keep) continue;
    // An occurrence that has a run left (ended ones too: a cancelled run made ahead, a run decided in this very
    // millisecond) is never made again: the entry moves back no further than the latest of them. One later than
    // the withdrawn runs keeps the entry where it is, as above (an ended run is not in the engine's memory).
    let kept: number | null = null;
    if (w.entry) {
      kept = await input.lastOccurrenceAt(w.planDate, w.jobName, w.ids);
      if (kept !== null && kept >= w.nominal) continue;
    }
    out.ids.push(...w.ids);
    if (!w.entry) continue;
    out.keys.push(key);
    out.entries.push(rewound(input, w.entry, w.nominal, kept));
  }
  return out;
}

/** Whether the current schedule still gives this run's occurrence (one run per occurrence: not `mode: all`). */
function stillOccurs(input: WithdrawalInput, r: RunRecord, spec: JobSpec): boolean {
  return input.compiledOf(spec.schedule!).next(r.nominalAt! - 1) === r.nominalAt && r.targetAgent === null;
}

/**
 * The entry as it would be had the withdrawn runs never been made: its next occurrence under the current
 * definitions from the earliest withdrawn one (from now, now included, for runs not yet due), but after the
 * latest occurrence that has a run left (`kept`), everything before that handled.
 */
function rewound(input: WithdrawalInput, e: PlanEntryRecord, nominal: number, kept: number | null): PlanEntryRecord {
  const spec = input.defs.jobs[e.jobName];
  // An occurrence at the pass's very millisecond is still to come (the engine's entries include `now`), unless
  // it has a run already.
  const from = Math.max(Math.min(input.now - 1, nominal - 1), kept ?? Number.NEGATIVE_INFINITY);
  let next: number | null = null;
  if (spec?.schedule && spec.enabled !== false) {
    const occ = input.compiledOf(spec.schedule);
    next = occ.kind === 'after' ? nominal : occ.next(from);
  }
  const end = input.dayEnd(e.planDate);
  return { planDate: e.planDate, jobName: e.jobName, nextDueAt: next !== null && next < end ? next : null, lastNominalAt: from, jobRevision: e.jobRevision };
}
