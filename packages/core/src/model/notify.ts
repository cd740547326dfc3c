import { z } from 'zod';
import { name, nameList, positiveDuration } from './fields.js';

/** Notification rules (brief §10): which messages go to which channels. */

export const SEVERITIES = ['info', 'warning', 'critical'] as const;
export const SOURCES = ['job', 'run', 'check', 'agent', 'system'] as const;

export const notifyRule = z
  .strictObject({
    name: name.optional(),
    match: z
      .strictObject({
        severity: z.array(z.enum(SEVERITIES, { error: `severity is one of ${SEVERITIES.join(', ')}` })).min(1).optional(),
        source: z.array(z.enum(SOURCES, { error: `source is one of ${SOURCES.join(', ')}` })).min(1).optional(),
        tags: z.array(z.string().min(1)).min(1).optional(),
        agent: nameList.optional(),
        group: nameList.optional(),
      })
      .optional(),
    email: z.array(z.email({ error: (i) => `"${String(i.input)}" is not an email address; write it as name@example.com` })).min(1).optional(),
    webhook: z
      .strictObject({
        url: z.url({ protocol: /^https?$/, error: 'webhook url must be an http:// or https:// URL' }),
        secret: name.optional(),
      })
      .optional(),
    command: z.union([z.string().min(1), z.array(z.string()).min(1)]).optional(),
    digest: positiveDuration.optional(),
  })
  .superRefine((r, ctx) => {
    if (r.email === undefined && r.webhook === undefined && r.command === undefined) {
      ctx.addIssue({ code: 'custom', message: 'a rule needs at least one channel: email, webhook or command' });
    }
  });
export type NotifyRuleSpec = z.output<typeof notifyRule>;
