import { describe, expect, it } from 'vitest';
import { addDays, compileSchedule, materialize, planCalendar, planDateOf, planDayBounds, preview, type JobSpec, type Schedule } from '@batchalyzer/core';

/** Pure schedule semantics of brief §4, driven by a fake clock (plain numbers): no timers, no database. */
const iso = (t: number) => new Date(t).toISOString().replace('.000Z', 'Z');
const at = (s: string) => Date.parse(s);

function between(schedule: Schedule, tz: string, from: string, to: string, newDayAt = '00:00'): string[] {
  const cal = planCalendar(tz, newDayAt);
  const occ = compileSchedule(schedule, tz, cal);
  const out: string[] = [];
  for (let t = occ.next(at(from) - 1); t !== null && t < at(to); t = occ.next(t)) out.push(iso(t));
  return out;
}

describe('cron day-of-month / day-of-week rule', () => {
  it('`0 0 */2 * 1`: a field starting with * makes both required (odd days that are Mondays)', () => {
    expect(between({ cron: '0 0 */2 * 1' }, 'UTC', '2026-06-01T00:00:00Z', '2026-07-01T00:00:00Z')).toEqual([
      '2026-06-01T00:00:00Z', '2026-06-15T00:00:00Z', '2026-06-29T00:00:00Z',
    ]);
  });
  it('`0 0 1-31/2 * 1`: both restricted, either matches (odd days or Mondays)', () => {
    const got = between({ cron: '0 0 1-31/2 * 1' }, 'UTC', '2026-06-01T00:00:00Z', '2026-07-01T00:00:00Z');
    expect(got).toHaveLength(17);
    expect(got).toContain('2026-06-08T00:00:00Z'); // an even Monday
    expect(got).toContain('2026-06-03T00:00:00Z'); // an odd Wednesday
  });
  it('L, W and #', () => {
    expect(between({ cron: '0 0 L * *' }, 'UTC', '2026-02-01T00:00:00Z', '2026-04-01T00:00:00Z')).toEqual(['2026-02-28T00:00:00Z', '2026-03-31T00:00:00Z']);
    // 2026-08-15 is a Saturday: 15W is Friday the 14th; 2026-11-15 is a Sunday: Monday the 16th.
    expect(between({ cron: '0 0 15W * *' }, 'UTC', '2026-08-01T00:00:00Z', '2026-09-01T00:00:00Z')).toEqual(['2026-08-14T00:00:00Z']);
    expect(between({ cron: '0 0 15W * *' }, 'UTC', '2026-11-01T00:00:00Z', '2026-12-01T00:00:00Z')).toEqual(['2026-11-16T00:00:00Z']);
    expect(between({ cron: '0 0 * * mon#2' }, 'UTC', '2026-06-01T00:00:00Z', '2026-07-01T00:00:00Z')).toEqual(['2026-06-08T00:00:00Z']);
    expect(between({ cron: '0 0 * * 5L' }, 'UTC', '2026-06-01T00:00:00Z', '2026-07-01T00:00:00Z')).toEqual(['2026-06-26T00:00:00Z']);
  });
  it('nicknames and a seconds field', () => {
    expect(between({ cron: '@daily' }, 'UTC', '2026-06-01T00:00:00Z', '2026-06-03T00:00:00Z')).toEqual(['2026-06-01T00:00:00Z', '2026-06-02T00:00:00Z']);
    expect(between({ cron: '30 0 12 * * *' }, 'UTC', '2026-06-01T00:00:00Z', '2026-06-02T00:00:00Z')).toEqual(['2026-06-01T12:00:30Z']);
  });
});

describe.each([
  // zone, spring-forward day, fixed time in its gap, expected instant; fall-back day, fixed time in the repeated hour, expected
  ['America/New_York', '2025-03-09', '30 2 * * *', '2025-03-09T07:00:00Z', '2025-11-02', '30 1 * * *', '2025-11-02T05:30:00Z'],
  ['America/New_York', '2026-03-08', '30 2 * * *', '2026-03-08T07:00:00Z', '2026-11-01', '30 1 * * *', '2026-11-01T05:30:00Z'],
  ['Europe/London', '2025-03-30', '30 1 * * *', '2025-03-30T01:00:00Z', '2025-10-26', '30 1 * * *', '2025-10-26T00:30:00Z'],
  ['Europe/London', '2026-03-29', '30 1 * * *', '2026-03-29T01:00:00Z', '2026-10-25', '30 1 * * *', '2026-10-25T00:30:00Z'],
])('daylight saving in %s', (tz, springDay, gapCron, gapRun, fallDay, repeatCron, repeatRun) => {
  const dayRange = (day: string) => {
    const { start, end } = planDayBounds(day, planCalendar(tz));
    return [iso(start), iso(end)] as const;
  };
  it(`${gapCron} on ${springDay} runs once, at the first instant after the gap`, () => {
    const [from, to] = dayRange(springDay);
    expect(between({ cron: gapCron }, tz, from, to)).toEqual([gapRun]);
  });
  it(`${repeatCron} on ${fallDay} runs once, at the first occurrence`, () => {
    const [from, to] = dayRange(fallDay);
    expect(between({ cron: repeatCron }, tz, from, to)).toEqual([repeatRun]);
  });
  it('*/10 keeps ten real minutes between runs across both transitions', () => {
    for (const day of [springDay, fallDay]) {
      const [from, to] = dayRange(day);
      const runs = between({ cron: '*/10 * * * *' }, tz, from, to).map(at);
      const gaps = new Set(runs.slice(1).map((t, i) => t - runs[i]!));
      expect([...gaps]).toEqual([600_000]);
      expect(runs.length).toBe((at(to) - at(from)) / 600_000);
    }
  });
  it('plan days are 23 and 25 hours long, and every-intervals measure elapsed time through them', () => {
    const cal = planCalendar(tz);
    const spring = planDayBounds(springDay, cal);
    const fall = planDayBounds(fallDay, cal);
    expect(spring.end - spring.start).toBe(23 * 3_600_000);
    expect(fall.end - fall.start).toBe(25 * 3_600_000);
    expect(between({ every: '15m', from: '00:05' }, tz, iso(spring.start), iso(spring.end))).toHaveLength(23 * 4);
    expect(between({ every: '15m', from: '00:05' }, tz, iso(fall.start), iso(fall.end))).toHaveLength(25 * 4);
  });
});

describe('fixed times with several hours or minutes across DST (brief §4)', () => {
  const ny = 'America/New_York';
  it('each gap time runs once at the first instant after the gap, and coinciding times run once', () => {
    expect(between({ cron: '15,45 2 * * *' }, ny, '2026-03-08T05:00:00Z', '2026-03-09T05:00:00Z')).toEqual(['2026-03-08T07:00:00Z']);
    expect(between({ cron: '0 0,2 * * *' }, ny, '2026-03-08T04:00:00Z', '2026-03-09T04:00:00Z')).toEqual(['2026-03-08T05:00:00Z', '2026-03-08T07:00:00Z']);
    expect(between({ cron: '0 2,3 * * *' }, ny, '2026-03-08T05:00:00Z', '2026-03-09T05:00:00Z')).toEqual(['2026-03-08T07:00:00Z']);
  });
  it('each repeated-hour time runs once, at its first occurrence', () => {
    expect(between({ cron: '30 1,2 * * *' }, ny, '2026-11-01T04:00:00Z', '2026-11-02T05:00:00Z')).toEqual(['2026-11-01T05:30:00Z', '2026-11-01T07:30:00Z']);
    expect(between({ cron: '0 1-3 * * *' }, ny, '2026-11-01T04:00:00Z', '2026-11-02T05:00:00Z')).toEqual(['2026-11-01T05:00:00Z', '2026-11-01T07:00:00Z', '2026-11-01T08:00:00Z']);
    expect(between({ cron: '30 0,1 * * *' }, 'Europe/London', '2026-10-24T23:00:00Z', '2026-10-26T00:00:00Z')).toEqual(['2026-10-24T23:30:00Z', '2026-10-25T00:30:00Z']);
  });
  it('a weekly fixed time on the spring-forward Sunday is not skipped', () => {
    expect(between({ cron: '30 2 * * 0' }, ny, '2026-03-01T00:00:00Z', '2026-03-20T00:00:00Z')).toEqual(['2026-03-01T07:30:00Z', '2026-03-08T07:00:00Z', '2026-03-15T06:30:00Z']);
  });
});

describe('every, window and once', () => {
  it('every 15m from 00:05 is a grid anchored at the plan day start plus the offset', () => {
    const got = between({ every: '15m', from: '00:05' }, 'Europe/Berlin', '2026-06-01T22:00:00Z', '2026-06-01T23:00:00Z', '00:00');
    expect(got).toEqual(['2026-06-01T22:05:00Z', '2026-06-01T22:20:00Z', '2026-06-01T22:35:00Z', '2026-06-01T22:50:00Z']);
  });
  it('window + interval runs only inside the cron-selected hours and days', () => {
    const got = between({ cron: '* 8-9 * * mon-fri', every: '30m' }, 'UTC', '2026-06-05T00:00:00Z', '2026-06-09T00:00:00Z');
    expect(got).toEqual([
      '2026-06-05T08:00:00Z', '2026-06-05T08:30:00Z', '2026-06-05T09:00:00Z', '2026-06-05T09:30:00Z',
      '2026-06-08T08:00:00Z', '2026-06-08T08:30:00Z', '2026-06-08T09:00:00Z', '2026-06-08T09:30:00Z',
    ]);
  });
  it('once runs exactly once, in its own zone', () => {
    expect(between({ at: '2026-12-01T14:30', timezone: 'Europe/Berlin' }, 'UTC', '2026-01-01T00:00:00Z', '2027-01-01T00:00:00Z')).toEqual(['2026-12-01T13:30:00Z']);
  });
  it('preview notes daylight-saving changes', () => {
    const cal = planCalendar('Europe/Berlin');
    const items = preview(compileSchedule({ cron: '30 2 * * *' }, 'Europe/Berlin', cal), at('2026-03-27T12:00:00Z'), 3);
    expect(items.map((i) => iso(i.at))).toEqual(['2026-03-28T01:30:00Z', '2026-03-29T01:00:00Z', '2026-03-30T00:30:00Z']);
    expect(items[1]!.notes[0]).toMatch(/\+01:00 to \+02:00/);
  });
});

describe('plan days', () => {
  it('an instant before the new-day time belongs to the previous plan date', () => {
    const cal = planCalendar('Europe/Berlin', '06:00');
    expect(planDateOf(at('2026-06-02T03:59:00Z'), cal)).toBe('2026-06-01'); // 05:59 Berlin
    expect(planDateOf(at('2026-06-02T04:00:00Z'), cal)).toBe('2026-06-02'); // 06:00 Berlin
    expect(planDayBounds('2026-06-02', cal)).toEqual({ start: at('2026-06-02T04:00:00Z'), end: at('2026-06-03T04:00:00Z') });
  });
});

describe('materialize: catch-up and clock jumps', () => {
  const tz = 'UTC';
  const cal = planCalendar(tz);
  const spec = (catchUp?: 'none' | 'once' | 'all', extra: Partial<JobSpec> = {}) =>
    ({ run: { shell: 'true' }, on: { agent: 'a' }, schedule: { every: '10m', ...(catchUp ? { catchUp } : {}) }, ...extra }) as JobSpec;
  const day = '2026-06-01';
  const { start, end } = planDayBounds(day, cal);

  /** Drives an entry through a sequence of clock readings, like the engine's passes, and returns created nominal times. */
  function drive(s: JobSpec, clock: number[], unfinished = 0) {
    const occ = compileSchedule(s.schedule!, tz, cal);
    let entry = { planDate: day, jobName: 'j', nextDueAt: occ.next(start - 1), lastNominalAt: null as number | null, jobRevision: 0 };
    const runs: { nominal: string; skipped?: string | undefined; origin: string }[] = [];
    for (const now of clock) {
      const m = materialize({ entry, spec: s, occurrences: occ, now, dayEnd: end, graceMs: 60_000, unfinished, fanOut: null });
      runs.push(...m.runs.map((r) => ({ nominal: iso(r.nominalAt), skipped: r.skipped, origin: r.origin })));
      entry = { ...entry, nextDueAt: m.nextDueAt, lastNominalAt: m.lastNominalAt };
    }
    return runs;
  }

  it('on time: one run per occurrence', () => {
    const runs = drive(spec(), [start, start + 600_000, start + 1_200_000]);
    expect(runs.map((r) => r.nominal)).toEqual(['2026-06-01T00:00:00Z', '2026-06-01T00:10:00Z', '2026-06-01T00:20:00Z']);
  });
  it('once (default) collapses missed occurrences into one run', () => {
    const runs = drive(spec(), [start + 2 * 3_600_000 + 5_000]);
    expect(runs).toEqual([{ nominal: '2026-06-01T02:00:00Z', skipped: undefined, origin: 'schedule' }]);
    const late = drive(spec(), [start + 2 * 3_600_000 - 5 * 60_000]);
    expect(late).toEqual([{ nominal: '2026-06-01T01:50:00Z', skipped: undefined, origin: 'catch-up' }]);
  });
  it('all runs each missed occurrence, in order', () => {
    const runs = drive(spec('all'), [start + 3_600_000]);
    expect(runs.map((r) => r.nominal)).toEqual(['00:00', '00:10', '00:20', '00:30', '00:40', '00:50', '01:00'].map((t) => `2026-06-01T${t}:00Z`));
    expect(runs.slice(0, 6).every((r) => r.origin === 'catch-up')).toBe(true);
  });
  it('none records missed occurrences as skipped and runs only what is due now', () => {
    const runs = drive(spec('none'), [start + 3_600_000]);
    expect(runs.filter((r) => r.skipped)).toHaveLength(6);
    expect(runs.filter((r) => !r.skipped).map((r) => r.nominal)).toEqual(['2026-06-01T01:00:00Z']);
  });
  it('a clock jump back by 2 h and forward again never runs an occurrence twice', () => {
    const t = start + 6 * 3_600_000;
    const clock = [t, t + 600_000, t - 2 * 3_600_000, t - 3_600_000, t + 600_000, t + 1_200_000, t + 2 * 3_600_000 + 1_200_000];
    for (const policy of ['once', 'all', 'none'] as const) {
      const runs = drive(spec(policy), clock).filter((r) => !r.skipped).map((r) => r.nominal);
      expect(new Set(runs).size).toBe(runs.length);
      expect([...runs].sort()).toEqual(runs);
    }
    // Forward by 2 h with the default policy: the missed ones collapse into one run.
    const once = drive(spec(), [t, t + 2 * 3_600_000]).map((r) => r.nominal);
    expect(once).toEqual([iso(t), iso(t + 2 * 3_600_000)]);
  });
  it('an occurrence at the plan day end belongs to the next day', () => {
    const runs = drive(spec('all'), [end + 5_000]);
    expect(runs.at(-1)!.nominal).toBe('2026-06-01T23:50:00Z');
  });
  it('overlap: skip records an occurrence as skipped while the previous run is unfinished', () => {
    const runs = drive(spec(undefined, { concurrency: { overlap: 'skip' } }), [start], 1);
    expect(runs).toEqual([{ nominal: '2026-06-01T00:00:00Z', skipped: 'the previous run had not ended (overlap: skip)', origin: 'schedule' }]);
  });
});

describe('addDays (remembered answers)', () => {
  it('gives the same calendar arithmetic on a first and a repeated call', () => {
    for (let pass = 0; pass < 2; pass++) {
      expect(addDays('2026-12-31', 1)).toBe('2027-01-01');
      expect(addDays('2028-02-28', 1)).toBe('2028-02-29');
      expect(addDays('2026-03-01', -1)).toBe('2026-02-28');
      expect(addDays('2026-03-29', 0)).toBe('2026-03-29');
      expect(addDays('2026-01-31', 30)).toBe('2026-03-02');
    }
  });
});
