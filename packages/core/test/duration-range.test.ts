import { describe, expect, it } from 'vitest';
import { formatDuration, formatSize, parseDuration, parseRange, parseSize, rangeAlerts, type ThresholdRange } from '@batchalyzer/core';

/** Durations and sizes (stored canonically) and monitoring-plugin threshold ranges (brief §9). */

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['10m', 600_000],
    ['1h30m', 5_400_000],
    ['90m', 5_400_000],
    ['2d', 172_800_000],
    ['1w', 604_800_000],
    ['1h30m15s250ms', 5_415_250],
    ['1.5h', 5_400_000],
    ['0s', 0],
    [' 10m ', 600_000],
    ['45', 45_000], // a bare number means seconds
    ['2.5', 2500],
  ])('%j → %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it('takes numbers as seconds', () => {
    expect(parseDuration(90)).toBe(90_000);
    expect(parseDuration(1.5)).toBe(1500);
    expect(parseDuration(0)).toBe(0);
  });

  it.each(['', '   ', '2 hours', '10x', 'm', '1h 30m', '-5m', '10m30', 'h1', '1,5h'])('rejects %j with a hint', (text) => {
    const r = parseDuration(text);
    expect(typeof r).toBe('string');
    expect(r).toMatch(/write a duration such as 30s, 10m/);
  });

  it('rejects negative or non-finite numbers and other types', () => {
    for (const v of [-1, Number.NaN, Number.POSITIVE_INFINITY, null, true, [], {}]) {
      expect(typeof parseDuration(v)).toBe('string');
    }
    expect(parseDuration(null)).toMatch(/got null/);
    expect(parseDuration(['10m'])).toMatch(/got a list/);
  });
});

describe('formatDuration (canonical spelling)', () => {
  it.each([
    [0, '0s'],
    [500, '500ms'],
    [1500, '1s500ms'],
    [30_000, '30s'],
    [90_000, '1m30s'],
    [5_400_000, '1h30m'],
    [86_400_000, '1d'],
    [90_000_000, '1d1h'],
    [604_800_000, '1w'],
    [694_861_001, '1w1d1h1m1s1ms'],
  ])('%d ms → %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('round-trips through parseDuration, and equal durations share one spelling', () => {
    for (const text of ['90m', '5400s', '1h30m', '1.5h', '5400']) expect(formatDuration(parseDuration(text) as number)).toBe('1h30m');
    for (const ms of [1, 999, 1000, 61_000, 3_600_001, 86_399_999, 1_209_600_000]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
  });
});

describe('parseSize / formatSize', () => {
  it.each([
    ['1048576', 1_048_576],
    ['512KB', 524_288],
    ['512k', 524_288],
    ['512KiB', 524_288],
    ['10MB', 10_485_760],
    ['10 mb', 10_485_760],
    ['1.5MB', 1_572_864],
    ['1GB', 1_073_741_824],
    ['1g', 1_073_741_824],
    ['100b', 100],
    ['0', 0],
  ])('%j → %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it('takes whole numbers as bytes', () => {
    expect(parseSize(4096)).toBe(4096);
    expect(parseSize(1.5)).toMatch(/not a valid size/);
    expect(parseSize(-1)).toMatch(/not a valid size/);
  });

  it.each(['', '10 parsecs', 'MB', '10TB', '-1MB', '1e3'])('rejects %j with a hint', (text) => {
    expect(parseSize(text)).toMatch(/write a size such as 512KB, 10MB or 1GB/);
  });

  it('formats with the largest exact binary unit', () => {
    expect(formatSize(0)).toBe('0B');
    expect(formatSize(1000)).toBe('1000B');
    expect(formatSize(1024)).toBe('1KB');
    expect(formatSize(1536)).toBe('1536B');
    expect(formatSize(1_572_864)).toBe('1536KB');
    expect(formatSize(1_048_576)).toBe('1MB');
    expect(formatSize(10 * 1024 ** 3)).toBe('10GB');
    for (const text of ['512KB', '10MB', '1GB', '1000B', '1536KB']) expect(formatSize(parseSize(text) as number)).toBe(text);
  });
});

describe('parseRange: the five monitoring-plugin forms', () => {
  const r = (text: string | number) => parseRange(text) as ThresholdRange;

  it('`10` means 0..10', () => {
    expect(r('10')).toEqual({ start: 0, end: 10, alertInside: false });
    expect(r(10)).toEqual({ start: 0, end: 10, alertInside: false });
  });
  it('`10:` means 10..∞', () => {
    expect(r('10:')).toEqual({ start: 10, end: Infinity, alertInside: false });
  });
  it('`~:10` means -∞..10', () => {
    expect(r('~:10')).toEqual({ start: -Infinity, end: 10, alertInside: false });
  });
  it('`10:20` means 10..20', () => {
    expect(r('10:20')).toEqual({ start: 10, end: 20, alertInside: false });
    expect(r('-5.5:2.25')).toEqual({ start: -5.5, end: 2.25, alertInside: false });
  });
  it('`@10:20` inverts: alert inside 10..20', () => {
    expect(r('@10:20')).toEqual({ start: 10, end: 20, alertInside: true });
    expect(r('@~:0')).toEqual({ start: -Infinity, end: 0, alertInside: true });
    expect(r('@5')).toEqual({ start: 0, end: 5, alertInside: true });
  });

  it.each(['', '   ', 'abc', '~:eighty', '10:x', '~', '@', '10:20:30'])('rejects %j with the syntax hint', (text) => {
    expect(parseRange(text)).toMatch(/range syntax: 10, 10:, ~:10, 10:20 or @10:20/);
  });

  it('rejects a range whose start lies above its end, saying how to fix it', () => {
    expect(parseRange('20:10')).toMatch(/starts above its end \(20 > 10\); swap the bounds/);
    expect(typeof parseRange(null)).toBe('string');
  });
});

describe('rangeAlerts: outside alerts, @ inverts, bounds are inclusive', () => {
  const alerts = (range: string, values: number[]) => values.filter((v) => rangeAlerts(parseRange(range) as ThresholdRange, v));

  it('`10`: alerts below 0 or above 10', () => {
    expect(alerts('10', [-1, 0, 5, 10, 10.01, 11])).toEqual([-1, 10.01, 11]);
  });
  it('`10:`: alerts below 10', () => {
    expect(alerts('10:', [-100, 9.99, 10, 1e9])).toEqual([-100, 9.99]);
  });
  it('`~:80`: alerts above 80 (the usual disk-use threshold)', () => {
    expect(alerts('~:80', [-1e9, 0, 80, 80.5, 95])).toEqual([80.5, 95]);
  });
  it('`10:20`: alerts outside 10..20', () => {
    expect(alerts('10:20', [9, 10, 15, 20, 21])).toEqual([9, 21]);
  });
  it('`@10:20`: alerts inside 10..20, ends included', () => {
    expect(alerts('@10:20', [9, 10, 15, 20, 21])).toEqual([10, 15, 20]);
  });
});
