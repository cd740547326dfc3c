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

export function addDays(date: string, days: number): string {
  const [y, m, d] = date.split('-').map(Number) as [number, number, number];
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

export function planDayStart(date: string, cal: PlanCalendar): number {
  const [year, month, day] = date.split('-').map(Number) as [number, number, number];
  return zonedToInstant(
    { year, month, day, hour: Math.floor(cal.newDayAtMinutes / 60), minute: cal.newDayAtMinutes % 60, second: 0 },
    cal.timezone,
  );
}

export function planDayBounds(date: string, cal: PlanCalendar): { start: number; end: number } {
  return { start: planDayStart(date, cal), end: planDayStart(addDays(date, 1), cal) };
}

/** The plan date that contains instant `t`. */
export function planDateOf(t: number, cal: PlanCalendar): string {
  const w = wallTime(t, cal.timezone);
  const date = `${w.year}-${String(w.month).padStart(2, '0')}-${String(w.day).padStart(2, '0')}`;
  // Before today's new-day time the instant still belongs to yesterday's plan day.
  return t < planDayStart(date, cal) ? addDays(date, -1) : t >= planDayStart(addDays(date, 1), cal) ? addDays(date, 1) : date;
}
