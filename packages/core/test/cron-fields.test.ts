import { Cron } from 'croner';
import { describe, expect, it } from 'vitest';
import {
  compileSchedule, nextMatchingDate, parseCronFields, planCalendar, readPlainDays, readPlainTimes, wallTime, zonedToInstant, type ParsedCron,
} from '@batchalyzer/core';

/**
 * The own reader of plain cron fields (schedule/cron-fields.ts) against croner, on random expressions: whatever it
 * accepts, croner accepts and matches the same dates; fixed-time schedules built on it give, in random zones and
 * around DST changes, exactly the brief's occurrences (§4) of the dates and times croner selects.
 */

// A fixed seed: a failure prints the expression, zone and instant, which reproduce it.
let seed = 20261129;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;

/** One part of a field: mostly valid for the range, sometimes out of range, reversed, or syntax croner refuses. */
function part(lo: number, hi: number, extras: readonly string[]): string {
  const a = int(lo, hi);
  const b = int(a, hi);
  switch (int(0, 9)) {
    case 0: return `${a}-${b}`;
    case 1: return `${a}-${b}/${int(1, 4)}`;
    case 2: return `*/${int(1, hi - lo + 1)}`;
    case 3: return pick(extras);
    case 4: return pick([`${hi + 1}`, `${b}-${a}`, `${a}/${int(1, 5)}`, `*/0`, `${a}-${b}/${hi + 3}`, `0${a}`, `${lo - 1}`, '']);
    default: return `${a}`;
  }
}
const field = (lo: number, hi: number, extras: readonly string[] = []) =>
  Array.from({ length: pick([1, 1, 1, 2, 3]) }, () => part(lo, hi, extras)).join(',');
const dayField = (lo: number, hi: number, extras: readonly string[]) => (random() < 0.3 ? pick(['*', '?']) : field(lo, hi, extras));

function days(): string[] {
  return [
    dayField(1, 31, ['L', '15W', 'LW', '*/2']),
    random() < 0.5 ? '*' : dayField(1, 12, ['jan', 'feb-apr', '*/3']),
    dayField(0, 7, ['mon', 'fri#2', '5L', 'mon-fri', '+1', '*/2']),
  ];
}

function cronerAccepts(fields: string[], domAndDow: boolean): Cron | null {
  try {
    return new Cron(fields.join(' '), { paused: true, timezone: 'UTC', domAndDow, mode: fields.length === 6 ? '6-part' : '5-part' });
  } catch {
    return null;
  }
}

describe('plain cron fields against croner', () => {
  it('accepts only what croner accepts, and then matches the same dates', () => {
    let accepted = 0;
    for (let i = 0; i < 1500; i++) {
      const parsed = parseCronFields(`0 0 ${days().join(' ')}`) as ParsedCron;
      if (typeof parsed === 'string') continue;
      const fields = ['0', ...parsed.fields];
      const plain = readPlainDays(fields, parsed.domAndDow);
      if (!plain) continue;
      const croner = cronerAccepts(fields, parsed.domAndDow);
      expect(croner, fields.join(' ')).not.toBeNull();
      accepted++;
      let ref = Date.UTC(int(2000, 2090), int(0, 11), int(1, 28));
      let own = ref;
      for (let k = 0; k < 12; k++) {
        const want = croner!.nextRun(new Date(ref - 1))?.getTime() ?? null;
        const got = nextMatchingDate(plain, own, 400 * 366) ?? null;
        expect([fields.join(' '), k, got === null ? null : new Date(got).toISOString()])
          .toEqual([fields.join(' '), k, want === null ? null : new Date(want).toISOString()]);
        if (want === null) break;
        ref = want + 86_400_000;
        own = ref;
      }
    }
    expect(accepted).toBeGreaterThan(500); // the generator mostly makes plain expressions
  });

  it('reads time fields as croner does', () => {
    for (let i = 0; i < 300; i++) {
      const fields = [field(0, 59), field(0, 59), field(0, 5), '*', '*', '*'];
      const plain = readPlainTimes(fields);
      if (!plain) continue;
      const croner = cronerAccepts(fields, true);
      expect(croner, fields.join(' ')).not.toBeNull();
      // The first day's occurrences in UTC are exactly the selected times of day.
      const want: string[] = [];
      for (let t = croner!.nextRun(new Date(Date.UTC(2026, 0, 1) - 1)); t && t.getTime() < Date.UTC(2026, 0, 2); t = croner!.nextRun(t)) {
        want.push(t.toISOString().slice(11, 19));
      }
      const got: string[] = [];
      const pad = (n: number) => String(n).padStart(2, '0');
      for (const h of plain.hours) for (const m of plain.minutes) for (const s of plain.seconds) got.push(`${pad(h)}:${pad(m)}:${pad(s)}`);
      expect([fields.join(' '), got.sort()]).toEqual([fields.join(' '), want]);
    }
  });
});

describe('fixed-time cron schedules in zones with DST', () => {
  const zones = ['UTC', 'Europe/Berlin', 'America/New_York', 'America/Sao_Paulo', 'Australia/Lord_Howe', 'Pacific/Chatham', 'America/St_Johns', 'Asia/Kolkata'];

  /**
   * The reference (brief §4): croner in UTC lists the selected (date, time of day) pairs; each is placed in the
   * zone with zonedToInstant (a time in a gap → the first instant after it; in the repeated hour → its first
   * occurrence); pairs landing on the same instant run once.
   */
  function reference(fields: string[], domAndDow: boolean, zone: string, after: number, until: number): number[] {
    const croner = cronerAccepts(fields, domAndDow)!;
    const w = wallTime(after, zone);
    const out = new Set<number>();
    let pair = croner.nextRun(new Date(Date.UTC(w.year, w.month - 1, w.day - 2) - 1));
    const w2 = wallTime(until, zone);
    const stop = Date.UTC(w2.year, w2.month - 1, w2.day + 2);
    for (let n = 0; pair && pair.getTime() < stop && n < 20_000; n++, pair = croner.nextRun(pair)) {
      const at = zonedToInstant({
        year: pair.getUTCFullYear(), month: pair.getUTCMonth() + 1, day: pair.getUTCDate(),
        hour: pair.getUTCHours(), minute: pair.getUTCMinutes(), second: pair.getUTCSeconds(),
      }, zone);
      if (at > after && at <= until) out.add(at);
    }
    return [...out].sort((a, b) => a - b);
  }

  it('give the selected dates and times, placed by the DST rules', () => {
    let checked = 0;
    for (let i = 0; i < 600; i++) {
      // Times around the DST hours (0-3 h local) and sometimes a seconds field.
      const times = [random() < 0.2 ? `${int(0, 59)}` : null, field(0, 59), pick([field(0, 4), field(0, 23)])].filter((x) => x !== null);
      const expr = [...times, ...days()].join(' ');
      const parsed = parseCronFields(expr);
      if (typeof parsed === 'string') continue;
      const fields = parsed.hasSeconds ? parsed.fields : ['0', ...parsed.fields];
      // Fixed-time expressions only: repeating ones follow croner's real-time semantics (schedule-time.test.ts).
      if (fields.slice(0, 3).some((f) => f.startsWith('*') || f.startsWith('?')) || !cronerAccepts(fields, parsed.domAndDow)) continue;
      const zone = pick(zones);
      // Starts in the months of DST changes (north and south), so that a few occurrences cross one.
      const from = Date.UTC(int(2024, 2028), pick([2, 3, 8, 9, 10]), int(1, 28), int(0, 23), int(0, 59));
      const occ = compileSchedule({ cron: expr }, zone, planCalendar(zone));
      const got: number[] = [];
      for (let t = occ.next(from); t !== null && got.length < 15; t = occ.next(t)) got.push(t);
      const until = got.length === 15 ? got[14]! : from + 3 * 366 * 86_400_000;
      const want = reference(fields, parsed.domAndDow, zone, from, until);
      const iso = (xs: number[]) => xs.map((x) => new Date(x).toISOString());
      expect([expr, zone, new Date(from).toISOString(), iso(got)]).toEqual([expr, zone, new Date(from).toISOString(), iso(want)]);
      checked++;
    }
    expect(checked).toBeGreaterThan(120);
  });
});

describe('compiling cron schedules', () => {
  const cal = planCalendar('UTC');
  it('refuses bad syntax whether or not the fields are plain', () => {
    expect(() => compileSchedule({ cron: '60 1 * * *' }, 'UTC', cal)).toThrow();
    expect(() => compileSchedule({ cron: '0 1 32 * *' }, 'UTC', cal)).toThrow();
    expect(() => compileSchedule({ cron: '0 1 * * 8' }, 'UTC', cal)).toThrow();
    expect(() => compileSchedule({ cron: '0 1 L * mon#9' }, 'UTC', cal)).toThrow();
  });

  it('`?` repeats like `*` (croner reads it as `*`): `? 1 * * *` is every minute of 01:00-01:59', () => {
    const occ = compileSchedule({ cron: '? 1 * * *' }, 'UTC', cal);
    const got: number[] = [];
    for (let t = occ.next(Date.UTC(2026, 5, 1) - 1); t !== null && t < Date.UTC(2026, 5, 2); t = occ.next(t)) got.push(t);
    expect(got).toHaveLength(60);
    expect(new Date(got[0]!).toISOString()).toBe('2026-06-01T01:00:00.000Z');
  });
});
