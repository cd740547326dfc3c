import type { z } from 'zod';
import type { ValidationIssue } from '../errors.js';
import { describe } from '../duration.js';

/** Turns zod issues into batchalyzer's path-addressed messages, each saying how to fix the problem. */

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

/** Every key the format knows, for "did you mean" suggestions on unknown keys. */
const VOCABULARY = [
  'timezone', 'newDayAt', 'groups', 'resources', 'jobs', 'checks', 'notify', 'title', 'description', 'tags', 'enabled',
  'run', 'command', 'shell', 'node', 'config', 'args', 'env', 'secret', 'cwd', 'runAs', 'user', 'group', 'on', 'agent',
  'agents', 'mode', 'schedule', 'cron', 'every', 'from', 'after', 'at', 'catchUp', 'requires', 'condition', 'date',
  'anyOf', 'posts', 'success', 'failure', 'warning', 'timeout', 'killGrace', 'maxOutput', 'exitCodes', 'retries',
  'count', 'delay', 'backoff', 'maxDelay', 'priority', 'concurrency', 'max', 'overlap', 'expect', 'startBy', 'endBy',
  'runtime', 'warn', 'crit', 'maxWait', 'pool', 'rate', 'builtin', 'plugin', 'attempts', 'disk', 'inodes', 'name',
  'match', 'severity', 'source', 'email', 'webhook', 'url', 'digest',
];

function distance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}

export function suggestKey(key: string): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const k of VOCABULARY) {
    const d = distance(key, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const p of path) v = v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}

function messageFor(issue: z.core.$ZodIssue, input: unknown): ValidationIssue[] {
  const base = issue.path;
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((k) => {
        const s = suggestKey(k);
        return { path: formatPath([...base, k]), message: `unknown key "${k}"${s && s !== k ? ` (did you mean "${s}"?)` : ''}; remove it or check its spelling` };
      });
    case 'invalid_union': {
      // Report the branch whose shape matched the input (its errors are the precise ones).
      const branches = issue.errors.filter((errs) => !errs.some((e) => e.code === 'invalid_type' && e.path.length === 0));
      if (branches.length > 0) {
        const best = branches.reduce((a, b) => (b.length < a.length ? b : a));
        return best.flatMap((e) => messageFor({ ...e, path: [...base, ...e.path] } as z.core.$ZodIssue, input));
      }
      return [{ path: formatPath(base), message: issue.message }];
    }
    case 'invalid_type': {
      const got = valueAt(input, base);
      const expected = issue.expected === 'object' ? 'a mapping' : issue.expected === 'array' ? 'a list' : `a ${issue.expected}`;
      if (got === undefined) return [{ path: formatPath(base), message: `is required; add it (${expected})` }];
      const msg = issue.message.startsWith('Invalid input') ? `expected ${expected}` : issue.message;
      return [{ path: formatPath(base), message: `${msg}, got ${describe(got)}` }];
    }
    case 'too_small':
    case 'too_big': {
      if (!issue.message.startsWith('Too ')) return [{ path: formatPath(base), message: issue.message }];
      const small = issue.code === 'too_small';
      const limit = Number((issue as { minimum?: unknown; maximum?: unknown })[small ? 'minimum' : 'maximum']);
      const inclusive = (issue as { inclusive?: boolean }).inclusive !== false;
      const what = issue.origin === 'array' ? 'items' : issue.origin === 'string' ? 'characters' : '';
      const bound = small ? (inclusive ? 'at least' : 'more than') : inclusive ? 'at most' : 'less than';
      const got = valueAt(input, base);
      return [{ path: formatPath(base), message: `must be ${bound} ${limit}${what ? ` ${what}` : ''}${typeof got === 'number' ? ` (got ${got})` : ''}; change the value` }];
    }
    case 'invalid_value':
      return [{ path: formatPath(base), message: issue.message.startsWith('Invalid option') ? `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}` : issue.message }];
    default:
      return [{ path: formatPath(base), message: issue.message }];
  }
}

export function zodIssues(error: z.ZodError, input: unknown, prefix: PropertyKey[] = []): ValidationIssue[] {
  return error.issues.flatMap((i) => messageFor({ ...i, path: [...prefix, ...i.path] } as z.core.$ZodIssue, input));
}
