import { z } from 'zod';
import { positiveDuration, tags, target, thresholdRange } from './fields.js';

/** Check definitions (brief §9): builtin host facts, Nagios-compatible plugins, or node scripts. */

export const BUILTIN_SIMPLE = ['memory', 'swap', 'load', 'cpu', 'uptime', 'processes'] as const;

const BUILTIN_HINT = `builtin is one of ${BUILTIN_SIMPLE.join(', ')}, { disk: MOUNT } or { inodes: MOUNT }`;
const builtin = z.union(
  [
    z.enum(BUILTIN_SIMPLE, { error: BUILTIN_HINT }),
    z.strictObject({ disk: z.string().startsWith('/', { error: 'disk takes a mount point such as "/"' }) }),
    z.strictObject({ inodes: z.string().startsWith('/', { error: 'inodes takes a mount point such as "/"' }) }),
  ],
  { error: BUILTIN_HINT },
);

export const check = z
  .strictObject({
    title: z.string().optional(),
    tags: tags.optional(),
    enabled: z.boolean().optional(),
    on: target,
    builtin: builtin.optional(),
    plugin: z.union([z.string().min(1), z.array(z.string()).min(1)], { error: 'plugin is a command line or an argv list' }).optional(),
    node: z.string().min(1).optional(),
    config: z.unknown().optional(),
    every: positiveDuration.optional(),
    timeout: positiveDuration.optional(),
    warn: thresholdRange.optional(),
    crit: thresholdRange.optional(),
    attempts: z.number().int().min(1).max(100).optional(),
  })
  .superRefine((c, ctx) => {
    const kinds = (['builtin', 'plugin', 'node'] as const).filter((k) => c[k] !== undefined);
    if (kinds.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: `${kinds.length ? `give only one of ${kinds.join(', ')}` : 'say what to measure'}: a check has one of builtin, plugin or node`,
      });
    }
    if (c.config !== undefined && c.node === undefined) {
      ctx.addIssue({ code: 'custom', path: ['config'], message: '"config" belongs to node-script checks' });
    }
  });
export type CheckSpec = z.output<typeof check>;
