import { describe, expect, it } from 'vitest';
import { checkCron, CRON_NICKNAMES, parseCronFields, type ParsedCron } from '@batchalyzer/core';

/** Cron validation (brief §4): syntax, nicknames, extensions, and expressions that can never fire. */

const FROM = Date.parse('2026-01-01T00:00:00Z');
const check = (expr: unknown, zone = 'UTC') => checkCron(expr, zone, FROM);

describe('checkCron accepts', () => {
  it.each([
    '* * * * *',
    '30 2 * * *',
    '*/10 * * * *',
    '5,35 8-18/2 * * *',
    '0 9-17 * * mon-fri',
    '0 9 * * MON,WED,FRI',
    '0 0 1 jan,jul *',
    '0 0 1 JAN-MAR *',
    '0 0 * * 0',
    '0 0 * * 7', // Sunday, too
    '0 0 29 2 *', // only in leap years, but it exists
    '0 0 31 * *', // only some months
    '0 0 30 2 mon', // both day fields restricted: either may match, so Mondays in February
    '  30 2 * * *  ',
  ])('%j', (expr) => {
    expect(check(expr)).toBeNull();
  });

  it.each(Object.keys(CRON_NICKNAMES))('the nickname %s', (nick) => {
    expect(check(nick)).toBeNull();
    expect(check(nick.toUpperCase())).toBeNull();
  });

  it.each([
    ['0 0 L * *', 'last day of the month'],
    ['0 0 L 2 *', 'last day of February'],
    ['0 0 15W * *', 'weekday nearest the 15th'],
    ['0 0 LW * *', 'last weekday of the month'],
    ['0 0 * * 5L', 'last Friday'],
    ['0 0 * * FRI#L', 'last Friday, by name'],
    ['0 0 * * 5#3', 'third Friday'],
    ['0 0 * * mon#1', 'first Monday'],
  ])('the extension %j (%s)', (expr) => {
    expect(check(expr)).toBeNull();
  });

  it.each(['*/15 * * * * *', '0 30 2 * * *', '30 0 0 1 1 *'])('6 fields, seconds first: %j', (expr) => {
    expect(check(expr)).toBeNull();
  });

  it('validates in any zone', () => {
    expect(check('30 2 * * *', 'America/New_York')).toBeNull();
    expect(check('30 1 * * *', 'Europe/London')).toBeNull();
  });
});

describe('checkCron rejects expressions that can never fire', () => {
  it.each(['0 0 30 2 *', '0 0 31 4 *', '0 0 31 2,4,6,9,11 *', '0 0 0 30 2 *', '0 0 30 feb *'])('%j', (expr) => {
    const err = check(expr);
    expect(err).toContain(`"${expr}" can never fire`);
    expect(err).toMatch(/fix the day or month/);
  });
});

describe('checkCron rejects bad syntax, saying what is wrong and how to write it', () => {
  it.each([
    ['61 2 * * *', /minute field \(0-59\) is out of range/],
    ['0 24 * * *', /hour field \(0-23\) is out of range/],
    ['0 0 32 * *', /day-of-month field \(1-31\) is out of range/],
    ['0 0 1 13 *', /month field \(1-12 or jan-dec\) is out of range/],
    ['0 0 * * 8', /day-of-week field \(0-7 or sun-sat\) is out of range/],
    ['60 * * * * *', /seconds field \(0-59\) is out of range/],
    ['*/0 * * * *', /not a valid cron expression/],
    ['5-2 * * * *', /not a valid cron expression/],
    ['x y z a b', /not a valid cron expression/],
    ['0 0 * * funday', /not a valid cron expression/],
  ])('%j', (expr, reason) => {
    const err = check(expr);
    expect(err).toMatch(reason);
    expect(err).toContain('write 5 fields "minute hour day-of-month month day-of-week"');
  });

  it.each([
    ['* * * *', /has 4 fields/],
    ['* * * * * * *', /has 7 fields/],
    ['', /has 1 field;/],
    ['@reboot', /unknown nickname "@reboot"/],
    ['@fortnightly', /unknown nickname/],
  ])('%j', (expr, reason) => {
    const err = check(expr);
    expect(err).toMatch(reason);
    expect(err).toMatch(/nickname \(@hourly, @daily, @weekly, @monthly, @yearly\)/);
  });

  it('asks for quotes when YAML did not read text', () => {
    expect(check(5)).toMatch(/expected a cron expression in quotes/);
    expect(check(null)).toMatch(/expected a cron expression in quotes/);
  });
});

describe('parseCronFields', () => {
  it('expands nicknames and applies cron day rule', () => {
    expect(parseCronFields('@daily')).toEqual({ fields: ['0', '0', '*', '*', '*'], hasSeconds: false, domAndDow: true });
    expect((parseCronFields('0 0 1-31/2 * 1') as ParsedCron).domAndDow).toBe(false);
    expect((parseCronFields('0 0 */2 * 1') as ParsedCron).domAndDow).toBe(true);
    expect((parseCronFields('0 0 0 13 * fri') as ParsedCron)).toEqual({ fields: ['0', '0', '0', '13', '*', 'fri'], hasSeconds: true, domAndDow: false });
  });
});
