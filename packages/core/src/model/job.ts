import { z } from 'zod';
import { duration, name, nameList, positiveDuration, resourceName, size, tags, target, timeOfDay, timeZone } from './fields.js';

/** Job definitions (brief §3–§7) as written in jobs-as-code and stored; defaults are applied by `resolveJob`. */

export const schedule = z
  .strictObject({
    cron: z.string({ error: 'expected a cron expression in quotes, e.g. "30 2 * * *"' }).optional(),
    every: positiveDuration.optional(),
    from: timeOfDay.optional(),
    after: positiveDuration.optional(),
    at: z.string({ error: 'expected a date-time in quotes, e.g. "2026-12-01T14:30"' }).optional(),
    timezone: timeZone.optional(),
    catchUp: z.enum(['none', 'once', 'all'], { error: 'catchUp is none, once (default) or all' }).optional(),
  })
  .superRefine((s, ctx) => {
    const forms = [s.cron !== undefined, s.every !== undefined, s.after !== undefined, s.at !== undefined].filter(Boolean).length;
    const hint = 'use one of { at }, { cron }, { cron, every } (window + interval), { every [, from] } or { after }';
    if (forms === 0) ctx.addIssue({ code: 'custom', message: `a schedule needs a form; ${hint}` });
    else if (forms > 1 && !(forms === 2 && s.cron !== undefined && s.every !== undefined)) {
      const given = (['at', 'cron', 'every', 'after'] as const).filter((k) => s[k] !== undefined);
      ctx.addIssue({ code: 'custom', message: `${given.join(' and ')} cannot be combined; ${hint}` });
    }
    if (s.from !== undefined && (s.every === undefined || s.cron !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['from'], message: '"from" offsets an "every" grid; it needs "every" and no "cron"' });
    }
  });
export type Schedule = z.output<typeof schedule>;

const conditionRef = z.union([
  name,
  z.strictObject({
    condition: name,
    date: z.enum(['same', 'previous', 'any'], { error: 'date is same (default), previous or any' }).optional(),
  }),
]);
export const requirement = z.union([
  conditionRef,
  z.strictObject({ anyOf: z.array(conditionRef).min(2, { error: 'anyOf needs at least two conditions' }) }),
]);
export type Requirement = z.output<typeof requirement>;

const run = z
  .strictObject({
    command: z.array(z.string()).min(1, { error: 'command needs at least the executable' }).optional(),
    shell: z.string().min(1, { error: 'shell script is empty' }).optional(),
    node: z.string().min(1, { error: 'node needs the path of a script' }).optional(),
    config: z.unknown().optional(),
    args: z.array(z.string()).optional(),
  })
  .superRefine((r, ctx) => {
    const kinds = (['command', 'shell', 'node'] as const).filter((k) => r[k] !== undefined);
    if (kinds.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: `${kinds.length ? `give only one of ${kinds.join(', ')}` : 'say what to run'}: run is one of { command: [argv…] }, { shell: "script" } or { node: path, config: … }`,
      });
    } else if (r.node === undefined && (r.config !== undefined || r.args !== undefined)) {
      ctx.addIssue({ code: 'custom', message: '"config" and "args" belong to node scripts ({ node: path, config: … })' });
    }
  });

const envValue = z.union([z.string(), z.number().transform(String), z.boolean().transform(String), z.strictObject({ secret: name })], {
  error: 'an env value is text or { secret: NAME }',
});

export interface Posts {
  success?: string[];
  failure?: string[];
  warning?: string[];
}
const posts = z.union([
  z.array(name).transform((success): Posts => ({ success })),
  z.strictObject({ success: z.array(name).optional(), failure: z.array(name).optional(), warning: z.array(name).optional() }),
]);

const relativeOrDuration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const s = String(v).trim();
  const m = /^(\d+(?:\.\d+)?)x$/.exec(s);
  if (m && Number(m[1]) > 0) return `${Number(m[1])}x`;
  const d = duration.safeParse(v);
  if (d.success && d.data !== '0s') return d.data;
  ctx.addIssue({ code: 'custom', message: `"${s}" is neither a multiple of the usual duration (e.g. 2x) nor a duration (e.g. 45m)` });
  return z.NEVER;
});

const exitCode = z.number().int().min(0).max(255);

export const job = z.strictObject({
  title: z.string().optional(),
  description: z.string().optional(),
  tags: tags.optional(),
  enabled: z.boolean().optional(),
  run,
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
    error: (i) => `"${String(i.input)}" is not a valid variable name; env names start with a letter or _ and use only letters, digits and _`,
  }), envValue).optional(),
  cwd: z.string().min(1).optional(),
  runAs: z.strictObject({ user: z.string().min(1), group: z.string().min(1).optional() }).optional(),
  on: target,
  schedule: schedule.optional(),
  requires: z.array(requirement).optional(),
  resources: z.record(resourceName, z.number({ error: 'units are a whole number, e.g. { db-pool: 1 }' }).int({ error: 'units are a whole number, e.g. { db-pool: 1 }' }).min(1, { error: 'take at least 1 unit; remove the resource if the job does not need it' })).optional(),
  posts: posts.optional(),
  timeout: positiveDuration.optional(),
  killGrace: positiveDuration.optional(),
  maxOutput: size.optional(),
  exitCodes: z.strictObject({ success: z.array(exitCode).min(1).optional(), warning: z.array(exitCode).optional() }).optional(),
  retries: z
    .strictObject({
      count: z.number().int().min(0).max(100),
      delay: duration.optional(),
      backoff: z.number().min(1, { error: 'backoff is a factor ≥ 1 (2 doubles the delay each time)' }).optional(),
      maxDelay: positiveDuration.optional(),
    })
    .optional(),
  priority: z.number().int().min(-1000).max(1000).optional(),
  concurrency: z
    .strictObject({
      max: z.number().int().min(1).optional(),
      overlap: z.enum(['queue', 'skip'], { error: 'overlap is queue (wait for the previous run) or skip' }).optional(),
    })
    .optional(),
  expect: z
    .strictObject({
      startBy: timeOfDay.optional(),
      endBy: timeOfDay.optional(),
      runtime: z.strictObject({ warn: relativeOrDuration.optional(), crit: relativeOrDuration.optional() }).optional(),
      maxWait: positiveDuration.optional(),
    })
    .optional(),
});
export type JobSpec = z.output<typeof job>;

export const group = nameList;

export const resource = z
  .strictObject({
    pool: z.number({ error: 'a pool is a whole number of units' }).int({ error: 'a pool is a whole number of units' }).min(1, { error: (i) => `a pool needs at least 1 unit (got ${String(i.input)}); write its capacity as a whole number, e.g. { pool: 4 }` }).optional(),
    rate: z
      .string({ error: 'a rate is written N/WINDOW, e.g. 10/1m' })
      .transform((v, ctx) => {
        const m = /^\s*(\d+)\s*\/\s*(\S+)\s*$/.exec(v);
        const n = m ? Number(m[1]) : 0;
        const window = m ? duration.safeParse(m[2]) : undefined;
        if (!m || n < 1 || !window?.success || window.data === '0s') {
          ctx.addIssue({ code: 'custom', message: `"${v}" is not a rate; write N/WINDOW with N ≥ 1, e.g. 10/1m or 100/1h` });
          return z.NEVER;
        }
        return `${n}/${window.data}`;
      })
      .optional(),
  })
  .superRefine((r, ctx) => {
    if ((r.pool === undefined) === (r.rate === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'a resource is either { pool: N } or { rate: N/WINDOW }, e.g. { pool: 4 } or { rate: 10/1m }' });
    }
  });
export type ResourceSpec = z.output<typeof resource>;

export { name };
