import { Cron } from 'croner';
import type { ParsedCron } from '../cron.js';
import { wallTime, zonedToInstant } from '../time.js';
import { nextMatchingDate, readPlainDays, readPlainTimes } from './cron-fields.js';

/**
 * Fixed-time cron expressions (the minute and hour fields, and seconds if given, do not start with `*` or its
 * alias `?`), with the brief's DST rules (§4): each selected time of day runs once per matching date; a time
 * inside a gap runs at the first valid instant after it, a time inside the repeated hour at its first occurrence.
 * Dates are matched on the UTC calendar (no DST), times are placed with `zonedToInstant`. Repeating expressions
 * keep croner's real-time semantics.
 */
export function isFixedTime(parsed: ParsedCron): boolean {
  const [sec, min, hour] = parsed.hasSeconds ? parsed.fields : ['0', ...parsed.fields];
  const repeats = (f: string) => f.startsWith('*') || f.startsWith('?');
  return !repeats(sec!) && !repeats(min!) && !repeats(hour!);
}

/** Expands a numeric cron field (`5`, `1,2`, `8-17`, `0-59/15`, `10/20`) into its sorted values. */
function expand(field: string, min: number, max: number): number[] {
  const out = new Set<number>();
  for (const part of field.split(',')) {
    const [range, stepText] = part.split('/');
    const step = stepText === undefined ? 1 : Number(stepText);
    let lo: number;
    let hi: number;
    if (range!.includes('-')) [lo, hi] = range!.split('-').map(Number) as [number, number];
    else {
      lo = Number(range);
      hi = stepText === undefined ? lo : max;
    }
    for (let v = lo; v <= hi && v <= max; v += step) if (v >= min) out.add(v);
  }
  return [...out].sort((a, b) => a - b);
}

const DAY = 86_400_000;
/** Dates searched without croner; rarer dates (29 February on a Monday...) are left to croner's 400-year search. */
const SEARCH_DAYS = 3 * 366;

/**
 * Plain fields (cron-fields.ts) are read without croner; otherwise (L, W, #, names) croner matches the dates, and
 * time fields it accepts but the plain reader does not are expanded here.
 */
export function fixedTimeNext(parsed: ParsedCron, timezone: string): (t: number) => number | null {
  const [sec, min, hour, dom, month, dow] = parsed.hasSeconds ? parsed.fields : ['0', ...parsed.fields];
  const plainTimes = readPlainTimes(parsed.fields);
  const plainDays = readPlainDays(parsed.fields, parsed.domAndDow);
  const { hours, minutes, seconds } = plainTimes ?? { hours: expand(hour!, 0, 23), minutes: expand(min!, 0, 59), seconds: expand(sec!, 0, 59) };
  const times: [number, number, number][] = [];
  for (const h of hours) for (const m of minutes) for (const s of seconds) times.push([h, m, s]);
  let croner: Cron | null = null;
  const days = () => (croner ??= new Cron(`0 0 0 ${dom} ${month} ${dow}`, { paused: true, timezone: 'UTC', domAndDow: parsed.domAndDow, mode: '6-part' }));
  // The first matching date at or after `cursor` (a UTC midnight).
  const nextDate = (cursor: number): number | null => {
    const own = plainDays ? nextMatchingDate(plainDays, cursor, SEARCH_DAYS) : undefined;
    if (own !== undefined) return own;
    return days().nextRun(new Date(cursor - 1))?.getTime() ?? null;
  };
  return (t) => {
    const w = wallTime(t, timezone);
    let cursor = Date.UTC(w.year, w.month - 1, w.day - 1); // from the day before: a time can shift across midnight
    for (let i = 0; i < 8; i++) {
      const next = nextDate(cursor);
      if (next === null) return null;
      const d = new Date(next);
      const date = { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
      let best: number | null = null;
      for (const [h, m, s] of times) {
        const at = zonedToInstant({ ...date, hour: h, minute: m, second: s }, timezone);
        if (at > t && (best === null || at < best)) best = at;
      }
      if (best !== null) return best;
      cursor = next + DAY;
    }
    return null;
  };
}
