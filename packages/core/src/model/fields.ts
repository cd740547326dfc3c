import { z } from 'zod';
import { formatDuration, formatSize, parseDuration, parseSize } from '../duration.js';
import { parseRange } from '../range.js';
import { isValidTimeZone, parseTimeOfDay, TIMEZONE_HINT } from '../time.js';

/** Field schemas shared by jobs, checks, resources and notification rules. Outputs are canonical spellings. */

export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const NAME_HINT = 'names start with a letter or digit and use only letters, digits, ".", "_" and "-" (at most 128)';

export const name = z.string({ error: 'expected a name (text)' }).regex(NAME_PATTERN, { error: (i) => `"${String(i.input)}" is not a valid name; ${NAME_HINT}` });

/** Resource names may be templated on the agent: `cpu-{agent}`. */
export const RESOURCE_NAME_PATTERN = /^(?:[A-Za-z0-9._-]|\{agent\})+$/;
export const resourceName = z.string().regex(RESOURCE_NAME_PATTERN, {
  error: (i) => `"${String(i.input)}" is not a valid resource name; use letters, digits, ".", "_", "-" and the placeholder {agent}`,
});

function canonical<T>(parse: (v: unknown) => T | string, format: (v: T) => string, what: string) {
  return z.union([z.string(), z.number()], { error: `expected ${what}` }).transform((v, ctx) => {
    const r = parse(v);
    if (typeof r === 'string') {
      ctx.addIssue({ code: 'custom', message: r });
      return z.NEVER;
    }
    return format(r);
  });
}

/** A duration, stored canonically (`90m` → `1h30m`). */
export const duration = canonical(parseDuration, formatDuration, 'a duration such as 30s, 10m or 1h30m');
/** A positive duration. */
export const positiveDuration = duration.refine((d) => d !== '0s', { error: 'must be longer than zero; write a duration such as 30s or 10m' });
export const size = canonical(parseSize, formatSize, 'a size such as 10MB');

export const timeZone = z.string({ error: `expected a time zone; ${TIMEZONE_HINT}` }).refine(isValidTimeZone, {
  error: (i) => `unknown time zone "${String(i.input)}"; ${TIMEZONE_HINT}`,
});

export const timeOfDay = z.string({ error: 'expected a time of day in quotes, e.g. "06:00"' }).transform((v, ctx) => {
  const r = parseTimeOfDay(v);
  if (typeof r === 'string') {
    ctx.addIssue({ code: 'custom', message: r });
    return z.NEVER;
  }
  return `${String(Math.floor(r / 60)).padStart(2, '0')}:${String(r % 60).padStart(2, '0')}`;
});

export const thresholdRange = z.union([z.string(), z.number()], { error: 'expected a threshold range such as ~:80' }).transform((v, ctx) => {
  const r = parseRange(v);
  if (typeof r === 'string') {
    ctx.addIssue({ code: 'custom', message: r });
    return z.NEVER;
  }
  return String(v).trim();
});

export const tags = z.array(z.string().min(1, { error: 'tags must not be empty' }).max(64), { error: 'expected a list of tags' });

/** One name or a list of names; stored as a list. */
export const nameList = z.union([name.transform((n) => [n]), z.array(name)]);

/** Where work runs (brief §5). Exactly one of agent, agents, group, groups. */
export const target = z
  .strictObject({
    agent: name.optional(),
    agents: z.array(name).min(1).optional(),
    group: name.optional(),
    groups: z.array(name).min(1).optional(),
    mode: z.enum(['any', 'all'], { error: 'mode is "any" (one eligible agent) or "all" (one run per agent)' }).optional(),
  })
  .superRefine((t, ctx) => {
    const given = (['agent', 'agents', 'group', 'groups'] as const).filter((k) => t[k] !== undefined);
    if (given.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: given.length === 0
          ? 'say where to run: one of agent, agents, group or groups (e.g. { group: db })'
          : `give only one of ${given.join(', ')}; use "agents" or "groups" for lists`,
      });
    }
  });
export type Target = z.output<typeof target>;
