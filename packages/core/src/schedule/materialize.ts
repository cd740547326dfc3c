import type { JobSpec } from '../model/job.js';
import type { Occurrences } from './occurrences.js';

/**
 * Turning due plan entries into runs (brief §4): one entry per job per plan day, whose occurrences become
 * runs only as they come due. Pure: given the entry, the schedule and `now`, it returns the runs to create
 * and where the entry moves next. Catch-up after downtime follows the job's policy:
 * `none` records missed occurrences as skipped, `once` (default) collapses them into one run, `all` runs each.
 */
export interface PlanEntry {
  planDate: string;
  jobName: string;
  nextDueAt: number | null;
  lastNominalAt: number | null;
  jobRevision: number;
}

export interface PlannedRun {
  jobName: string;
  planDate: string;
  nominalAt: number;
  dueAt: number;
  origin: 'schedule' | 'catch-up';
  targetAgent: string | null;
  /** Set when the occurrence is recorded as skipped instead of run, with the reason. */
  skipped?: string;
}

export interface MaterializeInput {
  entry: PlanEntry;
  spec: JobSpec;
  occurrences: Occurrences;
  now: number;
  dayEnd: number;
  /** Occurrences older than this at processing time count as missed (server down, clock jump). */
  graceMs: number;
  /** Runs of the job that have not ended (waiting, dispatched, running). */
  /** Unfinished runs of the job, or of the job on one fan-out target (each agent's runs count separately). */
  unfinished: number | ((target: string | null) => number);
  /** For `mode: all`: the agents to fan out to (one run each). */
  fanOut: string[] | null;
}

export interface Materialized {
  runs: PlannedRun[];
  nextDueAt: number | null;
  lastNominalAt: number | null;
}

/** How many occurrences one pass takes from an entry; the rest follow in the next pass. */
export const MAX_OCCURRENCES_PER_PASS = 1000;
/** How many missed occurrences `catchUp: none` records as skipped rows, at most, per pass. */
export const MAX_SKIPPED_RECORDS = 100;

export function materialize(input: MaterializeInput): Materialized {
  const { entry, spec, occurrences: occ, now, dayEnd } = input;
  const due: number[] = [];
  let t = entry.nextDueAt;
  const repeats = occ.kind !== 'once' && occ.kind !== 'after';
  while (t !== null && t <= now && t < dayEnd && due.length < MAX_OCCURRENCES_PER_PASS) {
    due.push(t);
    t = repeats ? occ.next(t) : null;
  }
  if (due.length === 0) return { runs: [], nextDueAt: entry.nextDueAt, lastNominalAt: entry.lastNominalAt };
  const nextDueAt = t !== null && t < dayEnd ? t : null;
  const lastNominalAt = due[due.length - 1]!;

  const policy = spec.schedule?.catchUp ?? 'once';
  const isMissed = (d: number) => d < now - input.graceMs;
  let chosen: number[];
  let skipped: number[] = [];
  // Due times ascend: when the first is on time, all are (the common case, without filtering).
  if (policy === 'all' || !isMissed(due[0]!)) chosen = due;
  else if (policy === 'once') {
    // Missed occurrences collapse into the on-time ones, or into one catch-up run when none is on time.
    const onTime = due.filter((d) => !isMissed(d));
    chosen = onTime.length ? onTime : [lastNominalAt];
  }
  else {
    chosen = due.filter((d) => !isMissed(d));
    skipped = due.filter(isMissed).slice(-MAX_SKIPPED_RECORDS);
  }

  const targets = input.fanOut ?? [null];
  const runs: PlannedRun[] = [];
  // Built field by field, not spread: a plan tick builds 10,000 of them (plan-100k).
  const run = (nominal: number, target: string | null, skippedBecause?: string): PlannedRun => {
    const r: PlannedRun = {
      jobName: entry.jobName, planDate: entry.planDate, nominalAt: nominal, dueAt: nominal,
      origin: isMissed(nominal) ? 'catch-up' : 'schedule', targetAgent: target,
    };
    if (skippedBecause !== undefined) r.skipped = skippedBecause;
    return r;
  };
  for (const n of skipped) {
    for (const target of targets) runs.push(run(n, target, 'missed while the server was not running (catch-up: none)'));
  }
  // Unfinished runs only matter to `overlap: skip`; they are counted only then.
  const counts = spec.concurrency?.overlap === 'skip' ? new Map<string | null, number>() : null;
  const unfinishedOn = (counts: Map<string | null, number>, target: string | null) =>
    counts.get(target) ?? (typeof input.unfinished === 'number' ? input.unfinished : input.unfinished(target));
  for (const n of chosen) {
    for (const target of targets) {
      if (counts) {
        const unfinished = unfinishedOn(counts, target);
        if (unfinished >= (spec.concurrency?.max ?? 1)) {
          runs.push(run(n, target, 'the previous run had not ended (overlap: skip)'));
          continue;
        }
        counts.set(target, unfinished + 1);
      }
      runs.push(run(n, target));
    }
  }
  return { runs, nextDueAt, lastNominalAt };
}
