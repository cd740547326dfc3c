import { parseDuration } from '../duration.js';
import type { JobSpec } from '../model/job.js';

/**
 * How an attempt's end becomes a run state (brief §3): exit codes for success (default 0) and warning,
 * a signal death records its name, a timeout is `timed-out`, a refusal or start error is `failed`.
 * Retries: only the last failure ends the run; earlier ones wait `delay × backoff^(attempt-1)` (capped).
 */
export type AttemptEnd = { exitCode: number | null; signal: string | null; timedOut: boolean; error?: string | undefined };
export type EndOutcome = 'succeeded' | 'warning' | 'failed' | 'timed-out';

export function outcomeOf(spec: JobSpec, end: AttemptEnd): EndOutcome {
  if (end.timedOut) return 'timed-out';
  if (end.error !== undefined || end.exitCode === null) return 'failed';
  if ((spec.exitCodes?.success ?? [0]).includes(end.exitCode)) return 'succeeded';
  if ((spec.exitCodes?.warning ?? []).includes(end.exitCode)) return 'warning';
  return 'failed';
}

/** Conditions to post for an outcome (default: on success only). */
export function postsFor(spec: JobSpec, outcome: EndOutcome | 'lost'): string[] {
  const p = spec.posts;
  if (outcome === 'succeeded') return p?.success ?? [];
  if (outcome === 'warning') return p?.warning ?? [];
  return p?.failure ?? [];
}

/** When to try again after a failed attempt, or null when this was the last attempt. */
export function retryAt(spec: JobSpec, attempt: number, now: number): number | null {
  const r = spec.retries;
  if (!r || attempt > r.count) return null;
  const base = r.delay ? (parseDuration(r.delay) as number) : 0;
  const factor = r.backoff ?? 1;
  let delay = base * factor ** (attempt - 1);
  if (r.maxDelay) delay = Math.min(delay, parseDuration(r.maxDelay) as number);
  return now + Math.round(delay);
}

export function describeEnd(end: AttemptEnd): string {
  if (end.error) return end.error;
  if (end.timedOut) return `timed out${end.signal ? ` (killed with ${end.signal})` : ''}`;
  if (end.signal) return `killed by ${end.signal}`;
  return `exit code ${end.exitCode}`;
}
