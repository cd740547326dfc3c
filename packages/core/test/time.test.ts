import { describe, expect, it } from 'vitest';
import {
  isValidTimeZone, parseLocalDateTime, parseTimeOfDay, wallTime, wallTimeIntl, zonedToInstant, zoneOffset, zoneOffsetIntl, type WallTime,
} from '@batchalyzer/core';

/** Time-zone helpers (brief §4): wall time → instant, with the DST gap and repeated-hour rules. */

const iso = (t: number) => new Date(t).toISOString().replace('.000Z', 'Z');
const wall = (s: string): WallTime => {
  const [d, t] = s.split('T') as [string, string];
  const [year, month, day] = d.split('-').map(Number) as [number, number, number];
  const [hour, minute, second = 0] = t.split(':').map(Number) as [number, number, number?];
  return { year, month, day, hour, minute, second };
};
const instant = (local: string, zone: string) => iso(zonedToInstant(wall(local), zone));

describe('zonedToInstant: ordinary times', () => {
  it('maps wall times to instants with the offset in force', () => {
    expect(instant('2026-01-15T12:00', 'America/New_York')).toBe('2026-01-15T17:00:00Z');
    expect(instant('2026-07-15T12:00', 'America/New_York')).toBe('2026-07-15T16:00:00Z');
    expect(instant('2026-01-15T12:00', 'Europe/London')).toBe('2026-01-15T12:00:00Z');
    expect(instant('2026-07-15T12:00:30', 'Europe/London')).toBe('2026-07-15T11:00:30Z');
    expect(instant('2026-12-01T14:30', 'Europe/Berlin')).toBe('2026-12-01T13:30:00Z');
    expect(instant('2026-03-01T00:00', 'UTC')).toBe('2026-03-01T00:00:00Z');
    expect(instant('2026-03-01T00:00', 'Asia/Kolkata')).toBe('2026-02-28T18:30:00Z');
  });

  it('is the inverse of wallTime', () => {
    for (const zone of ['America/New_York', 'Europe/London', 'Australia/Lord_Howe', 'Asia/Kathmandu']) {
      for (const local of ['2025-06-30T23:59:59', '2026-01-01T00:00', '2026-10-10T10:10:10']) {
        const t = zonedToInstant(wall(local), zone);
        expect(wallTime(t, zone)).toEqual(wall(local));
      }
    }
  });

  it('zoneOffset is positive east of Greenwich', () => {
    expect(zoneOffset(Date.parse('2026-01-15T12:00:00Z'), 'America/New_York')).toBe(-5 * 3_600_000);
    expect(zoneOffset(Date.parse('2026-07-15T12:00:00Z'), 'Europe/London')).toBe(3_600_000);
    expect(zoneOffset(Date.parse('2026-07-15T12:00:00Z'), 'UTC')).toBe(0);
  });
});

describe('zonedToInstant: a wall time in a DST gap → the first valid instant after the gap', () => {
  it.each([
    // America/New_York springs forward 02:00 EST → 03:00 EDT.
    ['America/New_York', '2025-03-09T02:00', '2025-03-09T07:00:00Z'],
    ['America/New_York', '2025-03-09T02:30', '2025-03-09T07:00:00Z'],
    ['America/New_York', '2025-03-09T02:59:59', '2025-03-09T07:00:00Z'],
    ['America/New_York', '2026-03-08T02:30', '2026-03-08T07:00:00Z'],
    // Europe/London springs forward 01:00 GMT → 02:00 BST.
    ['Europe/London', '2025-03-30T01:00', '2025-03-30T01:00:00Z'],
    ['Europe/London', '2025-03-30T01:30', '2025-03-30T01:00:00Z'],
    ['Europe/London', '2026-03-29T01:30', '2026-03-29T01:00:00Z'],
    ['Europe/London', '2026-03-29T01:59', '2026-03-29T01:00:00Z'],
  ])('%s %s → %s', (zone, local, expected) => {
    expect(instant(local, zone)).toBe(expected);
    // The instant shows the wall time at which the gap ends.
    const w = wallTime(Date.parse(expected), zone);
    expect([w.hour, w.minute]).toEqual(zone === 'Europe/London' ? [2, 0] : [3, 0]);
  });

  it('times just around the gap are unaffected', () => {
    expect(instant('2026-03-08T01:59', 'America/New_York')).toBe('2026-03-08T06:59:00Z');
    expect(instant('2026-03-08T03:00', 'America/New_York')).toBe('2026-03-08T07:00:00Z');
    expect(instant('2026-03-08T03:30', 'America/New_York')).toBe('2026-03-08T07:30:00Z');
    expect(instant('2026-03-29T00:59', 'Europe/London')).toBe('2026-03-29T00:59:00Z');
    expect(instant('2026-03-29T02:00', 'Europe/London')).toBe('2026-03-29T01:00:00Z');
  });
});

describe('zonedToInstant: a wall time in the repeated hour → its first occurrence', () => {
  it.each([
    // America/New_York falls back 02:00 EDT → 01:00 EST: 01:00–01:59 happen twice.
    ['America/New_York', '2025-11-02T01:00', '2025-11-02T05:00:00Z'],
    ['America/New_York', '2025-11-02T01:30', '2025-11-02T05:30:00Z'],
    ['America/New_York', '2026-11-01T01:30', '2026-11-01T05:30:00Z'],
    ['America/New_York', '2026-11-01T01:59:59', '2026-11-01T05:59:59Z'],
    // Europe/London falls back 02:00 BST → 01:00 GMT.
    ['Europe/London', '2025-10-26T01:00', '2025-10-26T00:00:00Z'],
    ['Europe/London', '2025-10-26T01:30', '2025-10-26T00:30:00Z'],
    ['Europe/London', '2026-10-25T01:30', '2026-10-25T00:30:00Z'],
  ])('%s %s → %s (the daylight-time occurrence)', (zone, local, expected) => {
    expect(instant(local, zone)).toBe(expected);
    // An hour later the wall clock shows the same time again.
    expect(wallTime(Date.parse(expected) + 3_600_000, zone)).toEqual(wall(local));
  });

  it('the hour after the repeated one maps to standard time', () => {
    expect(instant('2026-11-01T02:00', 'America/New_York')).toBe('2026-11-01T07:00:00Z');
    expect(instant('2026-10-25T02:00', 'Europe/London')).toBe('2026-10-25T02:00:00Z');
    expect(instant('2026-11-01T00:59', 'America/New_York')).toBe('2026-11-01T04:59:00Z');
  });
});

describe('parseLocalDateTime', () => {
  it('reads a local date-time in the given zone (seconds optional, T or space)', () => {
    expect(iso(parseLocalDateTime('2026-12-01T14:30', 'Europe/Berlin') as number)).toBe('2026-12-01T13:30:00Z');
    expect(iso(parseLocalDateTime('2026-12-01 14:30:15', 'Europe/Berlin') as number)).toBe('2026-12-01T13:30:15Z');
    expect(iso(parseLocalDateTime('2026-07-01T09:00', 'America/New_York') as number)).toBe('2026-07-01T13:00:00Z');
    expect(iso(parseLocalDateTime(' 2026-07-01T09:00 ', 'UTC') as number)).toBe('2026-07-01T09:00:00Z');
  });

  it('follows the DST rules for local times', () => {
    expect(iso(parseLocalDateTime('2026-03-08T02:30', 'America/New_York') as number)).toBe('2026-03-08T07:00:00Z');
    expect(iso(parseLocalDateTime('2026-10-25T01:30', 'Europe/London') as number)).toBe('2026-10-25T00:30:00Z');
  });

  it('honours an explicit Z or offset, whatever the zone', () => {
    expect(iso(parseLocalDateTime('2026-12-01T14:30Z', 'Europe/Berlin') as number)).toBe('2026-12-01T14:30:00Z');
    expect(iso(parseLocalDateTime('2026-12-01T14:30+01:00', 'America/New_York') as number)).toBe('2026-12-01T13:30:00Z');
    expect(iso(parseLocalDateTime('2026-12-01T14:30:05-0500', 'UTC') as number)).toBe('2026-12-01T19:30:05Z');
  });

  it.each(['2026-12-01', '14:30', '2026-12-01T14', '01.12.2026 14:30', '2026-12-01T14:30 Europe/Berlin', ''])('rejects %j with the expected spelling', (text) => {
    expect(parseLocalDateTime(text, 'UTC')).toMatch(/write YYYY-MM-DDTHH:MM/);
  });

  it.each(['2026-02-30T10:00', '2026-13-01T00:00', '2026-04-31T12:00', '2026-01-01T24:00', '2026-01-01T12:60', '2026-01-01T12:00:60'])(
    'rejects the impossible %j',
    (text) => {
      expect(parseLocalDateTime(text, 'UTC')).toMatch(/not a real calendar date-time; check/);
    },
  );

  it('rejects non-text input', () => {
    expect(parseLocalDateTime(20261201, 'UTC')).toMatch(/expected a date-time/);
    expect(parseLocalDateTime(undefined, 'UTC')).toMatch(/expected a date-time/);
  });

  it('accepts 29 February only in leap years', () => {
    expect(typeof parseLocalDateTime('2028-02-29T00:00', 'UTC')).toBe('number');
    expect(typeof parseLocalDateTime('2026-02-29T00:00', 'UTC')).toBe('string');
  });
});

describe('parseTimeOfDay and isValidTimeZone', () => {
  it('reads HH:MM as minutes after midnight', () => {
    expect(parseTimeOfDay('00:00')).toBe(0);
    expect(parseTimeOfDay('06:00')).toBe(360);
    expect(parseTimeOfDay('6:05')).toBe(365);
    expect(parseTimeOfDay('23:59')).toBe(1439);
  });
  it.each(['24:00', '25:00', '12:60', '12', '6am', '12:00:00', ''])('rejects %j', (text) => {
    expect(parseTimeOfDay(text)).toMatch(/is not a time of day; write "HH:MM"/);
  });
  it('asks for quotes when YAML read a number', () => {
    expect(parseTimeOfDay(600)).toMatch(/in quotes/);
  });
  it('knows IANA zones', () => {
    for (const z of ['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kathmandu']) expect(isValidTimeZone(z)).toBe(true);
    for (const z of ['', 'Europe/Berln', 'Mars/Olympus', 'CEST+1']) expect(isValidTimeZone(z)).toBe(false);
  });
});

describe('remembered offsets agree with Intl', () => {
  // Zones with 1 h, 30 min (Lord Howe) and 45 min offsets, southern DST, no DST, and a zone that moved its date line.
  const zones = ['UTC', 'Europe/Berlin', 'America/New_York', 'America/Sao_Paulo', 'Australia/Lord_Howe', 'Asia/Kathmandu',
    'Pacific/Apia', 'Pacific/Chatham', 'America/St_Johns', 'Africa/Casablanca', 'Asia/Tehran', 'Europe/Dublin', 'Antarctica/Troll'];
  // A fixed seed: a failure names an instant that reproduces.
  let seed = 12345;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const check = (t: number, zone: string) => {
    expect([zone, t, zoneOffset(t, zone)]).toEqual([zone, t, zoneOffsetIntl(t, zone)]);
    expect([zone, t, wallTime(t, zone)]).toEqual([zone, t, wallTimeIntl(t, zone)]);
  };

  it('at random instants from 1970 to 2100', () => {
    for (const zone of zones) for (let i = 0; i < 2000; i++) check(Math.floor(random() * 4_102_444_800) * 1000 + Math.floor(random() * 1000), zone);
  });

  const aroundChanges = (zones: string[], from: number, to: number) => {
    for (const zone of zones) {
      for (let t = from; t < to; t += 6 * 3_600_000) {
        if (zoneOffsetIntl(t, zone) === zoneOffsetIntl(t + 6 * 3_600_000, zone)) continue;
        // Find the change to the second, then check the seconds next to it and the 40 minutes around it.
        let lo = t;
        let hi = t + 6 * 3_600_000;
        while (hi - lo > 1000) {
          const mid = Math.floor((lo + hi) / 2000) * 1000;
          if (zoneOffsetIntl(mid, zone) === zoneOffsetIntl(lo, zone)) lo = mid;
          else hi = mid;
        }
        for (let s = hi - 3000; s <= hi + 3000; s += 500) check(s, zone);
        for (let s = hi - 1_200_000; s < hi + 1_200_000; s += 7000) check(s + (s % 13), zone);
      }
    }
  };

  it('around each offset change from 2024 to 2028', () => aroundChanges(zones, Date.UTC(2024, 0, 1), Date.UTC(2028, 0, 1)));

  // Today's changes fall on quarter hours; these did not (local mean time, offsets with seconds).
  it('around historical changes at odd instants', () => {
    aroundChanges(['Africa/Monrovia'], Date.UTC(1971, 11, 1), Date.UTC(1972, 1, 1));
    aroundChanges(['Europe/Amsterdam'], Date.UTC(1937, 5, 1), Date.UTC(1937, 6, 1));
  });
});
