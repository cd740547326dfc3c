import { Cron } from 'croner';

/** Nicknames accepted in place of a 5-field expression (brief §4). */
export const CRON_NICKNAMES: Record<string, string> = {
  '@yearly': '0 0 1 1 *', '@annually': '0 0 1 1 *', '@monthly': '0 0 1 * *', '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *', '@midnight': '0 0 * * *', '@hourly': '0 * * * *',
};

export const CRON_HINT =
  'write 5 fields "minute hour day-of-month month day-of-week" (optionally a leading seconds field), ' +
  'e.g. "30 2 * * *", or a nickname (@hourly, @daily, @weekly, @monthly, @yearly)';

/** croner reports some fields 0-based ("day: 31" for 32); name the field and its range instead. */
const FIELD_RANGES: Record<string, string> = {
  second: 'seconds field (0-59)', minute: 'minute field (0-59)', hour: 'hour field (0-23)', day: 'day-of-month field (1-31)',
  nearestWeekdays: 'day-of-month field (1-31)', month: 'month field (1-12 or jan-dec)', dayOfWeek: 'day-of-week field (0-7 or sun-sat)',
};

export interface ParsedCron {
  /** The expression with nicknames expanded; always 5 or 6 fields. */
  fields: string[];
  hasSeconds: boolean;
  /** cron's rule: a day-of-month or day-of-week field starting with `*` makes both fields required. */
  domAndDow: boolean;
}

export function parseCronFields(expr: string): ParsedCron | string {
  const text = expr.trim();
  const expanded = CRON_NICKNAMES[text.toLowerCase()] ?? text;
  if (expanded.startsWith('@')) return `unknown nickname "${text}"; ${CRON_HINT}`;
  const fields = expanded.split(/\s+/);
  if (fields.length !== 5 && fields.length !== 6) {
    return `"${text}" has ${fields.length} field${fields.length === 1 ? '' : 's'}; ${CRON_HINT}`;
  }
  const hasSeconds = fields.length === 6;
  const dom = fields[hasSeconds ? 3 : 2]!;
  const dow = fields[hasSeconds ? 5 : 4]!;
  return { fields, hasSeconds, domAndDow: dom.startsWith('*') || dow.startsWith('*') };
}

/** Builds a croner instance that follows batchalyzer's cron rules. Throws croner's error on bad syntax. */
export function makeCron(parsed: ParsedCron, timezone: string): Cron {
  return new Cron(parsed.fields.join(' '), {
    paused: true,
    timezone,
    domAndDow: parsed.domAndDow,
    mode: parsed.hasSeconds ? '6-part' : '5-part',
  });
}

/**
 * Validates a cron expression: syntax, and that it can fire at all (searching from `from`).
 * Returns null when valid, or a message saying what is wrong and how to fix it.
 */
export function checkCron(expr: unknown, timezone: string, from = Date.now()): string | null {
  if (typeof expr !== 'string') return `expected a cron expression in quotes; ${CRON_HINT}`;
  const parsed = parseCronFields(expr);
  if (typeof parsed === 'string') return parsed;
  let cron: Cron;
  try {
    cron = makeCron(parsed, timezone);
  } catch (err) {
    const reason = (err as Error).message
      .replace(/^CronPattern: /, '')
      .replace(/^Invalid value for (\w+): .*$/, (all, field: string) => (FIELD_RANGES[field] ? `a value in the ${FIELD_RANGES[field]} is out of range` : all));
    return `"${expr}" is not a valid cron expression (${reason}); ${CRON_HINT}`;
  }
  if (cron.nextRun(new Date(from)) === null) {
    return `"${expr}" can never fire (no date matches its day-of-month, month and day-of-week fields); ` +
      'fix the day or month so that the combination exists, e.g. "0 0 28 2 *" instead of "0 0 30 2 *"';
  }
  return null;
}
