/** Time-zone helpers over Intl only (no tz database of our own). Instants are epoch milliseconds. */

const zoneCache = new Map<string, boolean>();

export function isValidTimeZone(zone: string): boolean {
  let ok = zoneCache.get(zone);
  if (ok === undefined) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: zone });
      ok = zone.length > 0;
    } catch {
      ok = false;
    }
    zoneCache.set(zone, ok);
  }
  return ok;
}

export const TIMEZONE_HINT = 'use an IANA zone name such as UTC, Europe/Berlin or America/New_York';

const fmtCache = new Map<string, Intl.DateTimeFormat>();
function formatter(zone: string): Intl.DateTimeFormat {
  let f = fmtCache.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric',
      hour: 'numeric', minute: 'numeric', second: 'numeric',
    });
    fmtCache.set(zone, f);
  }
  return f;
}

export interface WallTime { year: number; month: number; day: number; hour: number; minute: number; second: number }

/** The wall-clock time in `zone` at instant `ms`, from Intl (the reference; see `wallTime`). */
export function wallTimeIntl(ms: number, zone: string): WallTime {
  const parts: Record<string, number> = {};
  for (const p of formatter(zone).formatToParts(new Date(ms))) {
    if (p.type !== 'literal') parts[p.type] = Number(p.value);
  }
  return {
    year: parts.year!, month: parts.month!, day: parts.day!,
    hour: parts.hour!, minute: parts.minute!, second: parts.second!,
  };
}

/** Offset of `zone` from UTC at instant `ms` from Intl (the reference; see `zoneOffset`). */
export function zoneOffsetIntl(ms: number, zone: string): number {
  const w = wallTimeIntl(ms, zone);
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  return asUtc - Math.floor(ms / 1000) * 1000;
}

/**
 * Offsets change a few times a year, but each Intl conversion costs microseconds and loading a plan day makes
 * hundreds of thousands of them (plan-100k). Offsets are remembered at the start of each quarter hour; where the
 * offsets at both ends of a quarter hour agree, it holds in between (no zone changes its offset twice within 15
 * minutes), otherwise the instant is converted exactly. Checked against Intl in time.test.ts.
 */
const QUARTER = 900_000;
const offsetCache = new Map<string, Map<number, number>>();

function offsetAtQuarter(q: number, zone: string, cache: Map<number, number>): number {
  let o = cache.get(q);
  if (o === undefined) {
    o = zoneOffsetIntl(q * QUARTER, zone);
    if (cache.size >= 20_000) cache.clear();
    cache.set(q, o);
  }
  return o;
}

/** Offset of `zone` from UTC at instant `ms`, in milliseconds (positive east of Greenwich). */
export function zoneOffset(ms: number, zone: string): number {
  let cache = offsetCache.get(zone);
  if (!cache) {
    if (offsetCache.size >= 1000) offsetCache.clear();
    offsetCache.set(zone, (cache = new Map()));
  }
  const q = Math.floor(ms / QUARTER);
  const o = offsetAtQuarter(q, zone, cache);
  return o === offsetAtQuarter(q + 1, zone, cache) ? o : zoneOffsetIntl(ms, zone);
}

/** The wall-clock time in `zone` at instant `ms`. */
export function wallTime(ms: number, zone: string): WallTime {
  const d = new Date(Math.floor(ms / 1000) * 1000 + zoneOffset(ms, zone));
  const year = d.getUTCFullYear();
  // Date.UTC reads years 0-99 as 19xx, so the offset is not exact there; such instants go through Intl.
  if (year < 1000 || year > 9999) return wallTimeIntl(ms, zone);
  return {
    year, month: d.getUTCMonth() + 1, day: d.getUTCDate(),
    hour: d.getUTCHours(), minute: d.getUTCMinutes(), second: d.getUTCSeconds(),
  };
}

/**
 * The instant at which the wall clock in `zone` shows `w`. A wall time inside a DST gap maps to the first
 * valid instant after the gap; one inside a repeated hour maps to its first occurrence (brief §4).
 */
export function zonedToInstant(w: WallTime, zone: string): number {
  const naive = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  // Candidate offsets are those in force a day either side; try each and keep the earliest exact match.
  const offsets = [...new Set([zoneOffset(naive - 86_400_000, zone), zoneOffset(naive, zone), zoneOffset(naive + 86_400_000, zone)])];
  const exact = offsets.map((o) => naive - o).filter((t) => zoneOffset(t, zone) === naive - t).sort((a, b) => a - b);
  if (exact.length > 0) return exact[0]!;
  // In a gap: the first valid instant after it is where the later offset takes over.
  const before = naive - Math.max(...offsets);
  const after = naive - Math.min(...offsets);
  let lo = Math.min(before, after);
  let hi = Math.max(before, after);
  const offLo = zoneOffset(lo, zone);
  while (hi - lo > 1000) {
    const mid = Math.floor((lo + hi) / 2000) * 1000;
    if (zoneOffset(mid, zone) === offLo) lo = mid;
    else hi = mid;
  }
  return hi;
}

/** Parses `HH:MM` (24 h) into minutes after midnight, or returns an error message. */
export function parseTimeOfDay(input: unknown): number | string {
  if (typeof input !== 'string') return 'expected a time of day as "HH:MM" in quotes (e.g. "06:00")';
  const m = /^([01]?\d|2[0-3]):([0-5]\d)$/.exec(input.trim());
  if (!m) return `"${input}" is not a time of day; write "HH:MM" with 00 ≤ HH ≤ 23, e.g. "06:00"`;
  return Number(m[1]) * 60 + Number(m[2]);
}

/**
 * Parses a local date-time (`2026-12-01T14:30`, seconds optional) in `zone`, or an ISO string with an explicit
 * offset or `Z`, to an instant. Returns an error message on bad input.
 */
export function parseLocalDateTime(input: unknown, zone: string): number | string {
  if (typeof input !== 'string') return 'expected a date-time such as "2026-12-01T14:30"';
  const m = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?(Z|[+-]\d{2}:?\d{2})?$/.exec(input.trim());
  if (!m) return `"${input}" is not a date-time; write YYYY-MM-DDTHH:MM (local to the schedule's zone) or add Z / +01:00`;
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6] ?? '0'].map(Number) as number[];
  const probe = new Date(Date.UTC(year!, month! - 1, day!, hour!, minute!, second!));
  if (probe.getUTCMonth() !== month! - 1 || probe.getUTCDate() !== day! || hour! > 23 || minute! > 59 || second! > 59) {
    return `"${input}" is not a real calendar date-time; check the month (01-12), the day of that month and the time (00:00-23:59)`;
  }
  if (m[7]) {
    const t = Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${String(second).padStart(2, '0')}${m[7] === 'Z' ? 'Z' : m[7].replace(/^([+-]\d{2})(\d{2})$/, '$1:$2')}`);
    return Number.isNaN(t) ? `"${input}" has an invalid offset` : t;
  }
  return zonedToInstant({ year: year!, month: month!, day: day!, hour: hour!, minute: minute!, second: second! }, zone);
}
