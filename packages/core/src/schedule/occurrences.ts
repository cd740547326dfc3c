import type { Cron } from 'croner';
import { makeCron, parseCronFields } from '../cron.js';
import { readPlainDays, readPlainTimes } from './cron-fields.js';
import { fixedTimeNext, isFixedTime } from './fixed-cron.js';
import { parseDuration } from '../duration.js';
import type { Schedule } from '../model/job.js';
import { parseLocalDateTime, parseTimeOfDay, zoneOffset } from '../time.js';
import { planDateOf, planDayBounds, type PlanCalendar } from './planday.js';

/**
 * Turns a schedule into its occurrences (brief §4). `next(t)` is the first occurrence strictly after `t`, or null.
 * Cron times follow croner's DST handling, which matches the brief: a fixed time in a gap runs at the first
 * instant after it, a fixed time in the repeated hour runs at its first occurrence only, and repeating
 * patterns follow real elapsed time. `every` and window intervals are grids of real elapsed time.
 */
export interface Occurrences {
  kind: 'once' | 'cron' | 'every' | 'window' | 'after';
  timezone: string;
  next(t: number): number | null;
  /** For `after`: the wait between the end of one run and the next. */
  afterMs?: number;
}

function cronOf(expr: string, timezone: string): Cron {
  const parsed = parseCronFields(expr);
  if (typeof parsed === 'string') throw new Error(parsed);
  return makeCron(parsed, timezone);
}

/** The first grid point strictly after t of a grid anchored at each plan day's start plus `offsetMs`. */
function gridNext(t: number, intervalMs: number, offsetMs: number, cal: PlanCalendar): number {
  let date = planDateOf(t, cal);
  for (let i = 0; i < 3; i++) {
    const { start, end } = planDayBounds(date, cal);
    const anchor = start + offsetMs;
    const candidate = t < anchor ? anchor : anchor + (Math.floor((t - anchor) / intervalMs) + 1) * intervalMs;
    if (candidate < end) return candidate;
    date = planDateOf(end, cal);
  }
  throw new Error('grid interval longer than two plan days');
}

export function compileSchedule(s: Schedule, defaultZone: string, cal: PlanCalendar): Occurrences {
  const timezone = s.timezone ?? defaultZone;
  if (s.at !== undefined) {
    const at = parseLocalDateTime(s.at, timezone);
    if (typeof at === 'string') throw new Error(at);
    return { kind: 'once', timezone, next: (t) => (at > t ? at : null) };
  }
  if (s.after !== undefined) {
    const afterMs = parseDuration(s.after) as number;
    // The first run of a plan day is at its start; later ones follow the previous run's end (engine).
    return { kind: 'after', timezone, afterMs, next: (t) => gridNext(t, 86_400_000 * 2, 0, cal) };
  }
  const zoneCal = { ...cal, timezone: cal.timezone };
  if (s.cron !== undefined && s.every !== undefined) {
    const cron = cronOf(s.cron, timezone);
    const interval = parseDuration(s.every) as number;
    return {
      kind: 'window',
      timezone,
      next(t) {
        let cursor = t;
        for (let i = 0; i < 10_000; i++) {
          const candidate = gridNext(cursor, interval, 0, zoneCal);
          // Cron fields select minutes; a grid point inside a selected minute is an occurrence.
          if (cron.match(new Date(Math.floor(candidate / 60_000) * 60_000))) return candidate;
          const windowStart = cron.nextRun(new Date(candidate));
          if (!windowStart) return null;
          cursor = Math.max(candidate, windowStart.getTime() - 1);
        }
        return null;
      },
    };
  }
  if (s.cron !== undefined) {
    const parsed = parseCronFields(s.cron);
    if (typeof parsed === 'string') throw new Error(parsed);
    if (isFixedTime(parsed)) {
      // A plain expression needs no croner instance at all: reading it is its validation (cron-fields.ts).
      if (!readPlainTimes(parsed.fields) || !readPlainDays(parsed.fields, parsed.domAndDow)) makeCron(parsed, timezone); // throws on bad syntax
      return { kind: 'cron', timezone, next: fixedTimeNext(parsed, timezone) };
    }
    const cron = makeCron(parsed, timezone);
    return { kind: 'cron', timezone, next: (t) => cron.nextRun(new Date(t))?.getTime() ?? null };
  }
  const interval = parseDuration(s.every) as number;
  const from = s.from !== undefined ? (parseTimeOfDay(s.from) as number) * 60_000 : 0;
  return { kind: 'every', timezone, next: (t) => gridNext(t, interval, from, zoneCal) };
}

/** One previewed instant with notes about daylight-saving changes since the previous one. */
export interface PreviewItem {
  at: number;
  notes: string[];
}

function formatOffset(ms: number): string {
  const sign = ms < 0 ? '-' : '+';
  const m = Math.abs(ms) / 60_000;
  return `${sign}${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
}

/** "The next N times this would run" (brief §4), with DST notes. */
export function preview(occ: Occurrences, from: number, count: number): PreviewItem[] {
  const out: PreviewItem[] = [];
  let t = from - 1;
  let prevOffset = zoneOffset(from, occ.timezone);
  for (let i = 0; i < count; i++) {
    const next = occ.next(t);
    if (next === null) break;
    const offset = zoneOffset(next, occ.timezone);
    const notes: string[] = [];
    if (offset !== prevOffset) {
      notes.push(`UTC offset of ${occ.timezone} changes from ${formatOffset(prevOffset)} to ${formatOffset(offset)} (daylight saving) before this run`);
    }
    out.push({ at: next, notes });
    prevOffset = offset;
    t = next;
  }
  return out;
}
