import {
  checkCron, compileSchedule, isValidTimeZone, planCalendar, preview, schedule as scheduleSchema, type Schedule,
  TIMEZONE_HINT, ValidationError, type ValidationIssue, zodIssues,
} from '@batchalyzer/core';
import type { Store } from '@batchalyzer/store';

/**
 * `batchalyzer preview`: the next N instants a schedule would run (brief §4), one per line as ISO 8601 UTC on
 * stdout and nothing else; DST notes go to stderr. The API's preview uses the same `preview` function.
 */
export interface PreviewFlags {
  cron?: string;
  every?: string;
  offset?: string;
  at?: string;
  job?: string;
  tz?: string;
  from?: string;
  count: string;
  newDayAt?: string;
}

const invalid = (issues: ValidationIssue[]) => new ValidationError('the preview request', issues, { changesNothing: false });

export interface PreviewLines {
  instants: string[];
  notes: string[];
}

export async function previewCommand(flags: PreviewFlags, store: () => Promise<Store>, defaultZone: string): Promise<PreviewLines> {
  const count = Number(flags.count);
  if (!Number.isInteger(count) || count < 1 || count > 10_000) {
    throw invalid([{ path: '--count', message: `"${flags.count}" is not a count; give a whole number from 1 to 10000` }]);
  }
  const from = flags.from === undefined ? Date.now() : Date.parse(flags.from);
  if (Number.isNaN(from)) {
    throw invalid([{ path: '--from', message: `"${flags.from}" is not a date-time; write ISO 8601 such as 2026-03-29T00:00:00Z` }]);
  }
  if (flags.tz !== undefined && !isValidTimeZone(flags.tz)) {
    throw invalid([{ path: '--tz', message: `unknown time zone "${flags.tz}"; ${TIMEZONE_HINT}` }]);
  }
  let zone = flags.tz ?? defaultZone;
  let newDayAt = flags.newDayAt ?? '00:00';
  let sched: Schedule;
  if (flags.job !== undefined) {
    const s = await store();
    try {
      const defs = await s.loadDefinitions();
      const job = defs.jobs[flags.job];
      if (!job) throw invalid([{ path: '--job', message: `no job named "${flags.job}"; list jobs with \`batchalyzer export\`` }]);
      if (!job.schedule) throw invalid([{ path: '--job', message: `job "${flags.job}" has no schedule; it runs only on demand or when ordered` }]);
      sched = job.schedule;
      zone = flags.tz ?? defs.settings.timezone ?? defaultZone;
      newDayAt = flags.newDayAt ?? defs.settings.newDayAt ?? '00:00';
    } finally {
      await s.close();
    }
  } else {
    const raw: Record<string, unknown> = {};
    if (flags.cron !== undefined) raw.cron = flags.cron;
    if (flags.every !== undefined) raw.every = flags.every;
    if (flags.offset !== undefined) raw.from = flags.offset;
    if (flags.at !== undefined) raw.at = flags.at;
    if (Object.keys(raw).length === 0) {
      throw invalid([{ path: '', message: 'say what to preview: --cron EXPR, --every DURATION [--offset HH:MM], --cron EXPR --every DURATION (window), --at DATETIME or --job NAME' }]);
    }
    const parsed = scheduleSchema.safeParse(raw);
    if (!parsed.success) throw invalid(zodIssues(parsed.error, raw).map((i) => ({ ...i, path: `--${i.path === 'from' ? 'offset' : i.path || 'schedule'}` })));
    sched = parsed.data;
    if (sched.cron !== undefined) {
      const err = checkCron(sched.cron, zone, from);
      if (err) throw invalid([{ path: '--cron', message: err }]);
    }
  }
  if (sched.after !== undefined) {
    return { instants: [], notes: [`an "after" schedule runs ${sched.after} after the previous run ends, so its times depend on the runs; nothing to preview`] };
  }
  const occ = compileSchedule(sched, zone, planCalendar(zone, newDayAt));
  const items = preview(occ, from, count);
  const instants = items.map((i) => new Date(i.at).toISOString().replace(/\.000Z$/, 'Z'));
  const notes = items.flatMap((i, n) => i.notes.map((note) => `${instants[n]}: ${note}`));
  if (items.length < count) notes.push(`only ${items.length} of ${count} instants: the schedule has no more`);
  return { instants, notes };
}
