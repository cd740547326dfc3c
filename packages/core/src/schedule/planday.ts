import { parseTimeOfDay, wallTime, zonedToInstant } from '../time.js';

/**
 * Plan days (brief §4): a plan date `YYYY-MM-DD` covers [start, end) where start is `newDayAt` on that
 * calendar date in the plan zone and end is `newDayAt` on the next date. On DST days a plan day is 23 or 25 h.
 */
export interface PlanCalendar {
  timezone: string;
  /** Minutes after midnight at which a plan day starts. */
  newDayAtMinutes: number;
}

export function planCalendar(timezone: string, newDayAt = '00:00'): PlanCalendar {
  const m = parseTimeOfDay(newDayAt);
  return { timezone, newDayAtMinutes: typeof m === 'number' ? m : 0 };
}

/**
 * Every engine pass asks for the day after today (the plan day's end): a Date and an ISO string each time were a
 * visible part of a pass (dispatch-latency); the answer never changes, so the recent ones are remembered.
 */
const dayCache = new Map<string, string>();

export function addDays(date: string, days: number): string {
  const key = `${date}|${days}`;
  const hit = dayCache.get(key);
  if (hit !== undefined) return hit;
  const [y, m, d] = date.split('-').map(Number) as [number, number, number];
  const out = new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
  if (dayCache.size >= 10_000) dayCache.clear();
  dayCache.set(key, out);
  return out;
}

/**
 * Plan-day starts are asked for constantly (every pass, every grid occurrence) and each costs several Intl
 * time-zone conversions; they never change for a (date, zone, new-day time), so they are remembered.
 */
const startCache = new Map<string, number>();

export function planDayStart(date: string, cal: PlanCalendar): number {
  const key = `${date}|${cal.timezone}|${cal.newDayAtMinutes}`;
  const hit = startCache.get(key);
  if (hit !== undefined) return hit;
  const [year, month, day] = date.split('-').map(Number) as [number, number, number];
  const start = zonedToInstant(
    { year, month, day, hour: Math.floor(cal.newDayAtMinutes / 60), minute: cal.newDayAtMinutes % 60, second: 0 },
    cal.timezone,
  );
  if (startCache.size >= 10_000) startCache.clear();
  startCache.set(key, start);
  return start;
}

export function planDayBounds(date: string, cal: PlanCalendar): { start: number; end: number } {
  return { start: planDayStart(date, cal), end: planDayStart(addDays(date, 1), cal) };
}

/** The plan date that contains instant `t`. */
const lastDay = new Map<string, { date: string; start: number; end: number }>();

export function planDateOf(t: number, cal: PlanCalendar): string {
  // Most calls fall in the same plan day as the previous one for this calendar: no time-zone conversion then.
  const ckey = `${cal.timezone}|${cal.newDayAtMinutes}`;
  const last = lastDay.get(ckey);
  if (last && t >= last.start && t < last.end) return last.date;
  const date = planDateOfSlow(t, cal);
  if (lastDay.size >= 100) lastDay.clear();
  lastDay.set(ckey, { date, ...planDayBounds(date, cal) });
  return date;
}

function planDateOfSlow(t: number, cal: PlanCalendar): string {
  const w = wallTime(t, cal.timezone);
  const date = `${w.year}-${String(w.month).padStart(2, '0')}-${String(w.day).padStart(2, '0')}`;
  // Before today's new-day time the instant still belongs to yesterday's plan day.
  return t < planDayStart(date, cal) ? addDays(date, -1) : t >= planDayStart(addDays(date, 1), cal) ? addDays(date, 1) : date;
}
