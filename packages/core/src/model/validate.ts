import { checkCron } from '../cron.js';
import type { ValidationIssue } from '../errors.js';
import { parseLocalDateTime } from '../time.js';
import type { Definitions } from './definitions.js';
import { NAME_PATTERN, RESOURCE_NAME_PATTERN, type Target } from './fields.js';
import { formatPath } from './issues.js';
import type { Requirement } from './job.js';

/**
 * Cross-reference rules over a complete set of definitions (the state `apply` would leave): names, group
 * cycles, unknown groups and resources, units beyond capacity, cron expressions that can never fire.
 * Problems that make the definitions unusable are issues; doubtful but legal things are warnings.
 */
export interface SemanticResult {
  issues: ValidationIssue[];
  warnings: ValidationIssue[];
}

export interface ValidateOptions {
  defaultTimezone: string;
  now?: number;
  /** Groups and resources that exist in the input but were rejected; references to them are not reported again. */
  invalid?: { groups: Set<string>; resources: Set<string> };
  /** Position of each notify rule in the file, so its problems are located as `notify[N]` like parse errors. */
  notifyIndex?: Map<string, number>;
}

export function validateDefinitions(defs: Definitions, opts: ValidateOptions): SemanticResult {
  const issues: ValidationIssue[] = [];
  const warnings: ValidationIssue[] = [];
  const issue = (path: (string | number)[], message: string) => issues.push({ path: formatPath(path), message });
  const now = opts.now ?? Date.now();
  const zone = defs.settings.timezone ?? opts.defaultTimezone;

  for (const kind of ['groups', 'jobs', 'checks', 'notify'] as const) {
    for (const n of Object.keys(defs[kind])) {
      if (!NAME_PATTERN.test(n)) {
        issue([kind, n], `"${n}" is not a valid name; names start with a letter or digit and use only letters, digits, ".", "_" and "-"`);
      }
    }
  }
  for (const n of Object.keys(defs.resources)) {
    if (!RESOURCE_NAME_PATTERN.test(n)) issue(['resources', n], `"${n}" is not a valid resource name; use letters, digits, ".", "_", "-" and {agent}`);
  }

  // Groups: members are groups (when such a group exists) or agent names; nesting must not loop.
  for (const [g, members] of Object.entries(defs.groups)) {
    members.forEach((m, i) => {
      if (m === g) issue(['groups', g, i], `group "${g}" lists itself; remove "${m}" from its members`);
    });
  }
  for (const cycle of groupCycles(defs.groups)) {
    issue(['groups', cycle[0]!], `groups form a cycle (${cycle.join(' → ')} → ${cycle[0]}); a group may not contain itself through other groups, so remove one of these memberships`);
  }

  const checkTarget = (path: (string | number)[], t: Target) => {
    const groups = t.group !== undefined ? [t.group] : t.groups ?? [];
    groups.forEach((g, i) => {
      if (!defs.groups[g] && !opts.invalid?.groups.has(g)) {
        issue([...path, ...(t.group !== undefined ? ['group'] : ['groups', i])], `unknown group "${g}"; define it under groups: or target agents with { agent: NAME }`);
      }
    });
  };

  const posted = new Set<string>();
  for (const spec of Object.values(defs.jobs)) {
    for (const list of [spec.posts?.success, spec.posts?.failure, spec.posts?.warning]) list?.forEach((c) => posted.add(c));
  }

  for (const [jobName, spec] of Object.entries(defs.jobs)) {
    const at = (...p: (string | number)[]) => ['jobs', jobName, ...p];
    checkTarget(at('on'), spec.on);
    const s = spec.schedule;
    if (s) {
      const tz = s.timezone ?? zone;
      if (s.cron !== undefined) {
        const err = checkCron(s.cron, tz, now);
        if (err) issue(at('schedule', 'cron'), err);
      }
      if (s.at !== undefined) {
        const t = parseLocalDateTime(s.at, tz);
        if (typeof t === 'string') issue(at('schedule', 'at'), t);
        else if (t < now) warnings.push({ path: formatPath(at('schedule', 'at')), message: `${s.at} is in the past; this one-off job will not run again unless ordered by hand` });
      }
    }
    for (const [res, units] of Object.entries(spec.resources ?? {})) {
      const def = defs.resources[res];
      if (!def) {
        if (!opts.invalid?.resources.has(res)) issue(at('resources', res), `unknown resource "${res}"; define it under resources: (e.g. ${res}: { pool: 4 })`);
      } else {
        const cap = def.pool ?? Number(def.rate!.split('/')[0]);
        if (units > cap) issue(at('resources', res), `takes ${units} units but "${res}" has only ${cap}; the job could never start; take at most ${cap} or raise the ${def.pool !== undefined ? 'pool' : 'rate'}`);
      }
    }
    const codes = spec.exitCodes;
    const overlap = codes?.warning?.filter((c) => (codes.success ?? [0]).includes(c)) ?? [];
    if (overlap.length) issue(at('exitCodes', 'warning'), `exit code ${overlap.join(', ')} is listed as both success and warning; keep it in one list`);
    (spec.requires ?? []).forEach((req, i) => {
      for (const c of requirementNames(req)) {
        if (!posted.has(c)) {
          warnings.push({ path: formatPath(at('requires', i)), message: `no job posts condition "${c}"; it can only be posted by hand` });
        }
      }
    });
  }

  for (const [checkName, spec] of Object.entries(defs.checks)) checkTarget(['checks', checkName, 'on'], spec.on);

  for (const [ruleName, rule] of Object.entries(defs.notify)) {
    const pos = opts.notifyIndex?.get(ruleName);
    (rule.match?.group ?? []).forEach((g, i) => {
      if (!defs.groups[g] && !opts.invalid?.groups.has(g)) {
        issue(['notify', ...(pos !== undefined ? [pos] : [ruleName]), 'match', 'group', i], `unknown group "${g}"; define it under groups: or match agents with agent: NAME`);
      }
    });
  }
  return { issues, warnings };
}

export function requirementNames(req: Requirement): string[] {
  if (typeof req === 'string') return [req];
  if ('anyOf' in req) return req.anyOf.map((r) => (typeof r === 'string' ? r : r.condition));
  return [req.condition];
}

/** Each cycle once, as the list of groups along it, starting from its alphabetically first member. */
export function groupCycles(groups: Record<string, string[]>): string[][] {
  const cycles = new Map<string, string[]>();
  const state = new Map<string, 'active' | 'done'>();
  const stack: string[] = [];
  const visit = (g: string) => {
    state.set(g, 'active');
    stack.push(g);
    for (const m of groups[g] ?? []) {
      if (!groups[m] || m === g) continue;
      if (state.get(m) === 'active') {
        const cycle = stack.slice(stack.indexOf(m));
        const start = cycle.indexOf([...cycle].sort()[0]!);
        const norm = [...cycle.slice(start), ...cycle.slice(0, start)];
        cycles.set(norm.join('\0'), norm);
      } else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(g, 'done');
  };
  for (const g of Object.keys(groups).sort()) if (!state.has(g)) visit(g);
  return [...cycles.values()];
}
