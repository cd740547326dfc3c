/** Durations are written like `90s`, `10m`, `1h30m`, `2d`, `500ms`; stored canonically, compared in ms. */
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const ORDER = ['w', 'd', 'h', 'm', 's', 'ms'] as const;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;

export const DURATION_HINT = 'write a duration such as 30s, 10m, 1h30m or 2d (units: ms, s, m, h, d, w)';

/** Parses a duration to milliseconds, or returns an error message. A bare number means seconds. */
export function parseDuration(input: unknown): number | string {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) return `${input} is not a valid duration; ${DURATION_HINT}`;
    return Math.round(input * 1000);
  }
  if (typeof input !== 'string') return `expected a duration, got ${describe(input)}; ${DURATION_HINT}`;
  const text = input.trim();
  if (text === '') return `empty duration; ${DURATION_HINT}`;
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  PART.lastIndex = 0;
  let total = 0;
  let pos = 0;
  for (let m = PART.exec(text); m; m = PART.exec(text)) {
    total += Number(m[1]) * UNITS[m[2]!]!;
    pos = PART.lastIndex;
  }
  if (pos !== text.length || pos === 0) return `"${input}" is not a valid duration; ${DURATION_HINT}`;
  return Math.round(total);
}

/** The canonical spelling of a duration: largest units first, `0s` for zero. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = ms;
  let out = '';
  for (const unit of ORDER) {
    const size = UNITS[unit]!;
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}

const SIZE_UNITS: Record<string, number> = {
  b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3,
};
export const SIZE_HINT = 'write a size such as 512KB, 10MB or 1GB (binary units; a bare number means bytes)';

/** Parses a byte size (`10MB`, `512k`, `1048576`) or returns an error message. */
export function parseSize(input: unknown): number | string {
  if (typeof input === 'number') {
    return Number.isInteger(input) && input >= 0 ? input : `${input} is not a valid size; ${SIZE_HINT}`;
  }
  if (typeof input !== 'string') return `expected a size, got ${describe(input)}; ${SIZE_HINT}`;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  const unit = SIZE_UNITS[(m?.[2] ?? '').toLowerCase() || 'b'];
  if (!m || unit === undefined) return `"${input}" is not a valid size; ${SIZE_HINT}`;
  return Math.round(Number(m[1]) * unit);
}

export function formatSize(bytes: number): string {
  for (const [unit, size] of [['GB', 1024 ** 3], ['MB', 1024 ** 2], ['KB', 1024]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}B`;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the text "${value}"`;
  return `${typeof value} ${String(value)}`;
}
