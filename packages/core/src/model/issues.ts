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

/** Edit distance in which swapping two neighbouring letters counts as one edit (`crti` is closer to `crit` than to `cron`). */
function distance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  const d = Array.from({ length: x.length + 1 }, (_, i) => Array.from({ length: y.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= x.length; i++) {
    for (let j = 1; j <= y.length; j++) {
      const row = d[i]!;
      row[j] = Math.min(d[i - 1]![j]! + 1, row[j - 1]! + 1, d[i - 1]![j - 1]! + (x[i - 1] === y[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) row[j] = Math.min(row[j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[x.length]![y.length]!;
}

/** The known key closest to `key` (at most two edits away), from `among` (default: every key of the format). */
export function suggestKey(key: string, among: readonly string[] = VOCABULARY): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const k of among) {
    const d = distance(key, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best;
}

/** How to write the required keys people most often forget. */
const REQUIRED_EXAMPLES: Record<string, string> = {
  run: 'e.g. run: { shell: "script" } or run: { command: [/path/to/program, arg] }',
  on: 'e.g. on: { agent: NAME } or on: { group: NAME }',
};

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
      if (got === undefined) {
        const example = REQUIRED_EXAMPLES[String(base[base.length - 1])];
        return [{ path: formatPath(base), message: `is required; add it (${example ?? expected})` }];
      }
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
    case 'invalid_key': {
      // A record key (env name, resource name) failed its own schema: say which key and why.
      const inner = (issue as { issues?: { message: string }[] }).issues ?? [];
      const key = String(base[base.length - 1]);
      return [{ path: formatPath(base), message: inner.length ? inner.map((i) => i.message).join('; ') : `"${key}" is not a valid key here; rename it` }];
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
