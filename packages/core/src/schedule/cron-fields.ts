/**
 * A strict reader for plain numeric cron fields, so that fixed-time schedules need no croner instance (each
 * costs ~0.1 ms and allocates a 10,000-entry year table; loading a plan day of 100,000 jobs made thousands).
 * It reads exactly what croner reads the same way — `*`, `?`, `n`, `a-b`, `*\/s`, `a-b/s` and lists of them,
 * within croner's ranges — and refuses everything else (names, L, W, #, `+`, anything croner would reject):
 * the caller then falls back to croner, so an expression never means something else here. Checked against
 * croner on random expressions in cron-fields.test.ts.
 */

/** The selected times of day of a cron expression. */
export interface PlainTimes {
  seconds: number[];
  minutes: number[];
  hours: number[];
}

/** The selected dates of a cron expression, as bit masks (bit n set when value n is selected). */
export interface PlainDays {
  /** Days of month 1-31 (bit d). */
  dom: number;
  /** Months 1-12 (bit m). */
  months: number;
  /** Days of week 0-6, Sunday 0 (bit w). */
  dow: number;
  /** croner's "*" fields (after `?` became `*`): a `*` day-of-week leaves the day to day-of-month alone. */
  starDom: boolean;
  starDow: boolean;
  /** batchalyzer's rule (ParsedCron.domAndDow): both day fields must match instead of either. */
  domAndDow: boolean;
}

interface Range {
  min: number;
  max: number;
  /** croner's step bound: the length of its value table. */
  steps: number;
  /** croner's `*\/s` start (day-of-month and month tables are 0-based, their values 1-based). */
  starStart: number;
}

const SECOND: Range = { min: 0, max: 59, steps: 60, starStart: 0 };
const HOUR: Range = { min: 0, max: 23, steps: 24, starStart: 0 };
const DOM: Range = { min: 1, max: 31, steps: 31, starStart: 1 };
const MONTH: Range = { min: 1, max: 12, steps: 12, starStart: 1 };
/** croner reads 0-7 (7 is Sunday) with a table of 7. */
const DOW: Range = { min: 0, max: 7, steps: 7, starStart: 0 };

const NUMBER = /^\d+$/;
const RANGE = /^(\d+)-(\d+)$/;
const RANGE_STEP = /^(\d+)-(\d+)\/(\d+)$/;
const STAR_STEP = /^\*\/(\d+)$/;

/** The selected values of one field, or null when the field is not plain. */
function values(field: string, r: Range): number[] | null {
  if (field === '*') return range(r.min, Math.min(r.max, r.min + r.steps - 1), 1);
  const out = new Set<number>();
  for (const part of field.split(',')) {
    let m: RegExpExecArray | null;
    let lo: number;
    let hi: number;
    let step = 1;
    if (NUMBER.test(part)) lo = hi = Number(part);
    else if ((m = RANGE.exec(part))) [lo, hi] = [Number(m[1]), Number(m[2])];
    else if ((m = RANGE_STEP.exec(part))) [lo, hi, step] = [Number(m[1]), Number(m[2]), Number(m[3])];
    else if ((m = STAR_STEP.exec(part))) [lo, hi, step] = [r.starStart, r.starStart + r.steps - 1, Number(m[1])];
    else return null;
    if (lo < r.min || hi > Math.max(r.max, r.starStart + r.steps - 1) || lo > hi || step < 1 || step > r.steps) return null;
    for (const v of range(lo, hi, step)) {
      if (v > r.max) return null;
      out.add(v);
    }
  }
  return [...out].sort((a, b) => a - b);
}

function range(lo: number, hi: number, step: number): number[] {
  const out: number[] = [];
  for (let v = lo; v <= hi; v += step) out.push(v);
  return out;
}

const mask = (vs: number[]) => vs.reduce((m, v) => m | (1 << v), 0);

/** croner turns every `?` into `*` before reading the fields; a 5-field expression has second 0. */
function sixFields(fields: string[]): string[] {
  const f = fields.map((x) => x.replaceAll('?', '*'));
  return f.length === 6 ? f : ['0', ...f];
}

/** Reads the time fields of a 5- or 6-field expression (nicknames expanded), or null when they are not plain. */
export function readPlainTimes(fields: string[]): PlainTimes | null {
  const [sec, min, hour] = sixFields(fields);
  const seconds = values(sec!, SECOND);
  const minutes = values(min!, SECOND);
  const hours = values(hour!, HOUR);
  return seconds && minutes && hours ? { seconds, minutes, hours } : null;
}

/** Reads the date fields of a 5- or 6-field expression with the day rule, or null when they are not plain. */
export function readPlainDays(fields: string[], domAndDow: boolean): PlainDays | null {
  const [, , , dom, month, dow] = sixFields(fields);
  const days = values(dom!, DOM);
  const months = values(month!, MONTH);
  const weekdays = values(dow!, DOW);
  if (!days || !months || !weekdays) return null;
  return { dom: mask(days), months: mask(months), dow: mask(weekdays.map((w) => w % 7)), starDom: dom === '*', starDow: dow === '*', domAndDow };
}

/** croner's day rule (`_matchDayValue` without L, W and #). */
export function dayMatches(c: PlainDays, month: number, day: number, weekday: number): boolean {
  if (!(c.months & (1 << month))) return false;
  const byDom = (c.dom & (1 << day)) !== 0;
  if (c.starDow) return byDom;
  const byDow = (c.dow & (1 << weekday)) !== 0;
  return !c.domAndDow && !c.starDom ? byDom || byDow : byDom && byDow;
}

const DAY = 86_400_000;

/**
 * The first UTC midnight at or after `from` (a UTC midnight) whose calendar date matches, searching `limitDays`
 * days; undefined when none matches within them (the caller asks croner, which searches 400 years).
 */
export function nextMatchingDate(c: PlainDays, from: number, limitDays: number): number | undefined {
  const d = new Date(from);
  let year = d.getUTCFullYear();
  let month = d.getUTCMonth() + 1;
  let day = d.getUTCDate();
  let weekday = d.getUTCDay();
  let length = daysIn(year, month);
  for (let i = 0; i < limitDays; i++) {
    if (dayMatches(c, month, day, weekday)) return from + i * DAY;
    weekday = (weekday + 1) % 7;
    if (++day > length) {
      day = 1;
      if (++month > 12) {
        month = 1;
        year++;
      }
      length = daysIn(year, month);
    }
  }
  return undefined;
}

function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}
