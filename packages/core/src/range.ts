/**
 * Monitoring-plugin threshold ranges (brief §9): `10`, `10:`, `~:10`, `10:20`, `@10:20`.
 * A value alerts when it lies outside [start, end]; with `@` it alerts when inside.
 */
export interface ThresholdRange {
  start: number; // -Infinity for `~`
  end: number; // Infinity when omitted
  alertInside: boolean;
}

export const RANGE_HINT = 'use the monitoring-plugin range syntax: 10, 10:, ~:10, 10:20 or @10:20';

export function parseRange(input: unknown): ThresholdRange | string {
  if (typeof input === 'number') input = String(input);
  if (typeof input !== 'string' || input.trim() === '') return `expected a threshold range; ${RANGE_HINT}`;
  let text = input.trim();
  const alertInside = text.startsWith('@');
  if (alertInside) text = text.slice(1);
  const num = (s: string) => (s !== '' && Number.isFinite(Number(s)) ? Number(s) : NaN);
  let start: number;
  let end: number;
  const colon = text.indexOf(':');
  if (colon < 0) {
    start = 0;
    end = num(text);
  } else {
    const a = text.slice(0, colon);
    const b = text.slice(colon + 1);
    start = a === '~' ? -Infinity : a === '' ? 0 : num(a);
    end = b === '' ? Infinity : num(b);
  }
  if (Number.isNaN(start) || Number.isNaN(end)) return `"${input}" is not a valid range; ${RANGE_HINT}`;
  if (start > end) return `"${input}" starts above its end (${start} > ${end}); swap the bounds`;
  return { start, end, alertInside };
}

/** True when `value` should raise an alert under `range`. */
export function rangeAlerts(range: ThresholdRange, value: number): boolean {
  const inside = value >= range.start && value <= range.end;
  return range.alertInside ? inside : !inside;
}
