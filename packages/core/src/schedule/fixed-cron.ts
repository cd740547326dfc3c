import { Cron } from 'croner';
import type { ParsedCron } from '../cron.js';
import { wallTime, zonedToInstant } from '../time.js';

/**
 * Fixed-time cron expressions (the minute and hour fields, and seconds if given, do not start with `*`), with
 * the brief's DST rules (§4): each selected time of day runs once per matching date; a time inside a gap runs at
 * the first valid instant after it, a time inside the repeated hour at its first occurrence. Dates are matched
 * by croner in UTC (calendar only, no DST), times are placed with `zonedToInstant`. Repeating expressions keep
 * croner's real-time semantics.
 */
export function isFixedTime(parsed: ParsedCron): boolean {
  const [sec, min, hour] = parsed.hasSeconds ? parsed.fields : ['0', ...parsed.fields];
  return !sec!.startsWith('*') && !min!.startsWith('*') && !hour!.startsWith('*');
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

export function fixedTimeNext(parsed: ParsedCron, timezone: string): (t: number) => number | null {
  const [sec, min, hour, dom, month, dow] = parsed.hasSeconds ? parsed.fields : ['0', ...parsed.fields];
  const times: [number, number, number][] = [];
  for (const h of expand(hour!, 0, 23)) for (const m of expand(min!, 0, 59)) for (const s of expand(sec!, 0, 59)) times.push([h, m, s]);
  const days = new Cron(`0 0 0 ${dom} ${month} ${dow}`, { paused: true, timezone: 'UTC', domAndDow: parsed.domAndDow, mode: '6-part' });
  return (t) => {
    const w = wallTime(t, timezone);
    let cursor = Date.UTC(w.year, w.month - 1, w.day - 1); // from the day before: a time can shift across midnight
    for (let i = 0; i < 8; i++) {
      const next = days.nextRun(new Date(cursor - 1));
      if (!next) return null;
      const d = new Date(next.getTime());
      const date = { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
      let best: number | null = null;
      for (const [h, m, s] of times) {
        const at = zonedToInstant({ ...date, hour: h, minute: m, second: s }, timezone);
        if (at > t && (best === null || at < best)) best = at;
      }
      if (best !== null) return best;
      cursor = next.getTime() + 86_400_000;
    }
    return null;
  };
}
