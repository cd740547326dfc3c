import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { emptyDefinitions, parseDefinitionsYaml, planApplyFromYaml, validateDefinitions } from '@batchalyzer/core';

/** examples/demo.yaml, which `npm start` applies, is valid and shows every idea of the brief at once. */
const text = readFileSync(fileURLToPath(new URL('../../../examples/demo.yaml', import.meta.url)), 'utf8');

describe('examples/demo.yaml', () => {
  const parsed = parseDefinitionsYaml(text);
  const defs = parsed.definitions;

  it('validates with no issues and no warnings', () => {
    expect(parsed.issues).toEqual([]);
    expect(validateDefinitions(defs, { defaultTimezone: 'UTC' })).toEqual({ issues: [], warnings: [] });
    const plan = planApplyFromYaml(emptyDefinitions(), text, 'examples/demo.yaml', { defaultTimezone: 'Europe/Berlin' });
    expect(plan.warnings).toEqual([]);
    expect(plan.changes.every((c) => c.action === 'create')).toBe(true);
  });

  it('targets one local agent through a group of groups', () => {
    expect(defs.groups).toEqual({ 'local-hosts': ['local'], all: ['local-hosts'] });
    const agents = new Set<string>();
    for (const spec of [...Object.values(defs.jobs), ...Object.values(defs.checks)]) {
      if (spec.on.agent) agents.add(spec.on.agent);
      for (const a of spec.on.agents ?? []) agents.add(a);
    }
    expect([...agents]).toEqual(['local']);
  });

  it('exercises every schedule form the demo promises', () => {
    const schedules = Object.values(defs.jobs).map((j) => j.schedule ?? {});
    expect(schedules.some((s) => s.cron === '* * * * *' && s.every === undefined)).toBe(true);
    expect(schedules.some((s) => s.every !== undefined && s.cron === undefined)).toBe(true);
    expect(schedules.some((s) => s.every !== undefined && s.cron !== undefined)).toBe(true);
  });

  it('has a condition chain, a failure chain, a contended pool and a rate', () => {
    const { jobs } = defs;
    expect(jobs.extract!.posts).toEqual({ success: ['extracted'] });
    expect(jobs.transform!.requires).toEqual(['extracted']);
    expect(jobs.load!.requires).toEqual(['transformed']);
    expect(jobs.flaky!.posts!.failure).toEqual(['flaky-failed']);
    expect(jobs.flaky!.run.shell).toContain('exit 3');
    expect(jobs['cleanup-after-failure']!.requires).toEqual(['flaky-failed']);
    expect(defs.resources['demo-db']).toEqual({ pool: 1 });
    const everyMinuteOnPool = Object.values(jobs).filter((j) => j.resources?.['demo-db'] && j.schedule?.cron === '* * * * *');
    expect(everyMinuteOnPool.length).toBeGreaterThanOrEqual(2);
    expect(defs.resources['partner-api']!.rate).toBeDefined();
    expect(Object.values(jobs).some((j) => j.resources?.['partner-api'])).toBe(true);
  });

  it('checks memory, load, disk and a Nagios plugin; notifies through a command', () => {
    const { checks } = defs;
    expect(checks.memory!.builtin).toBe('memory');
    expect(checks.load!.builtin).toBe('load');
    expect(checks['root-disk']).toMatchObject({ builtin: { disk: '/' }, warn: '~:80', crit: '~:90' });
    expect(checks['nagios-load']!.plugin).toBe('/usr/lib/nagios/plugins/check_load -w 5,4,3 -c 10,8,6');
    expect(Object.values(defs.notify).some((r) => r.command !== undefined)).toBe(true);
  });
});
