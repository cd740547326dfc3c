import { describe, expect, it } from 'vitest';
import {
  type Definitions,
  definitionsToYaml,
  describeChanges,
  emptyDefinitions,
  groupCycles,
  parseDefinitionsYaml,
  planApply,
  planApplyFromYaml,
  validateDefinitions,
  ValidationError,
} from '@batchalyzer/core';

/** Jobs-as-code model: group cycles, apply planning (diff, prune, idempotence), export round trip, warnings. */

const opts = { defaultTimezone: 'UTC', now: Date.parse('2026-06-01T00:00:00Z') };

function parse(text: string): Definitions {
  const r = parseDefinitionsYaml(text);
  expect(r.issues).toEqual([]);
  return r.definitions;
}

function rejected(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return err as ValidationError;
  }
  throw new Error('expected a ValidationError');
}

describe('group cycles', () => {
  it('finds a → b → a once, from its alphabetically first member', () => {
    expect(groupCycles({ b: ['a'], a: ['b', 'host1'] })).toEqual([['a', 'b']]);
  });

  it('finds longer cycles and several independent ones', () => {
    expect(groupCycles({ c: ['a'], a: ['b'], b: ['c'] })).toEqual([['a', 'b', 'c']]);
    const cycles = groupCycles({ x: ['y'], y: ['x'], p: ['q'], q: ['r'], r: ['p'], ok: ['x'] });
    expect(cycles).toHaveLength(2);
    expect(cycles).toContainEqual(['p', 'q', 'r']);
    expect(cycles).toContainEqual(['x', 'y']);
  });

  it('accepts nesting without loops (a diamond), and members that are agents', () => {
    expect(groupCycles({ all: ['db', 'web'], db: ['db1', 'shared'], web: ['web1', 'shared'], shared: ['s1'] })).toEqual([]);
    expect(groupCycles({ a: ['a1', 'a2'] })).toEqual([]);
  });

  it('leaves a group listing itself to its own, more precise error', () => {
    expect(groupCycles({ web: ['web1', 'web'] })).toEqual([]);
    const { issues } = validateDefinitions({ ...emptyDefinitions(), groups: { web: ['web1', 'web'] } }, opts);
    expect(issues).toEqual([{ path: 'groups.web[1]', message: 'group "web" lists itself; remove "web" from its members' }]);
  });

  it('validation reports each cycle once, at its first group', () => {
    const { issues } = validateDefinitions({ ...emptyDefinitions(), groups: { a: ['b'], b: ['c'], c: ['a'], d: ['a'] } }, opts);
    expect(issues).toHaveLength(1);
    expect(issues[0]!.path).toBe('groups.a');
    expect(issues[0]!.message).toContain('a → b → c → a');
  });
});

const BASE = `
timezone: Europe/Berlin
groups:
  db: [db1, db2]
  web: [web1]
resources:
  warehouse: { pool: 2 }
jobs:
  backup:
    run: { command: [/usr/local/bin/backup, --full] }
    on: { group: db }
    schedule: { cron: "30 2 * * *" }
    timeout: 2h
  report:
    run: { shell: "echo report" }
    on: { agent: web1 }
    resources: { warehouse: 1 }
checks:
  load:
    on: { group: web }
    builtin: load
notify:
  - email: [ops@example.com]
`;

describe('planApply', () => {
  it('creates everything into an empty store', () => {
    const plan = planApplyFromYaml(emptyDefinitions(), BASE, 'jobs.yaml', opts);
    expect(describeChanges(plan.changes)).toEqual([
      '+ setting timezone',
      '+ group db',
      '+ group web',
      '+ resource warehouse',
      '+ job backup',
      '+ job report',
      '+ check load',
      '+ notify rule rule-1',
    ]);
    expect(plan.warnings).toEqual([]);
    expect(Object.keys(plan.result.jobs)).toEqual(['backup', 'report']);
    expect(plan.result.notify['rule-1']).toEqual({ email: ['ops@example.com'] });
  });

  it('re-applying the same file changes nothing', () => {
    const current = planApplyFromYaml(emptyDefinitions(), BASE, 'jobs.yaml', opts).result;
    expect(planApplyFromYaml(current, BASE, 'jobs.yaml', opts).changes).toEqual([]);
    expect(planApplyFromYaml(current, BASE, 'jobs.yaml', { ...opts, prune: true }).changes).toEqual([]);
  });

  it('compares canonical forms: 120m is the same as 2h', () => {
    const current = planApplyFromYaml(emptyDefinitions(), BASE, 'jobs.yaml', opts).result;
    expect(planApplyFromYaml(current, BASE.replace('timeout: 2h', 'timeout: 120m'), 'jobs.yaml', opts).changes).toEqual([]);
  });

  it('updates name the fields that differ; group members are replaced by the file list', () => {
    const current = planApplyFromYaml(emptyDefinitions(), BASE, 'jobs.yaml', opts).result;
    const changed = BASE.replace('timeout: 2h', 'timeout: 3h\n    priority: 5').replace('db: [db1, db2]', 'db: [db3]');
    const plan = planApplyFromYaml(current, changed, 'jobs.yaml', opts);
    expect(plan.changes).toEqual([
      { kind: 'groups', name: 'db', action: 'update', fields: [] },
      { kind: 'jobs', name: 'backup', action: 'update', fields: ['priority', 'timeout'] },
    ]);
    expect(describeChanges(plan.changes)).toEqual(['~ group db', '~ job backup (priority, timeout)']);
    expect(plan.result.groups.db).toEqual(['db3']);
    expect(plan.result.jobs.backup!.timeout).toBe('3h');
  });

  it('without prune only creates and updates; with prune deletes what the file leaves out', () => {
    const current = planApplyFromYaml(emptyDefinitions(), BASE, 'jobs.yaml', opts).result;
    const smaller = `
groups:
  db: [db1, db2]
jobs:
  backup:
    run: { command: [/usr/local/bin/backup, --full] }
    on: { group: db }
    schedule: { cron: "30 2 * * *" }
    timeout: 2h
  vacuum:
    run: { shell: vacuumdb --all }
    on: { group: db }
`;
    const keep = planApplyFromYaml(current, smaller, 'jobs.yaml', opts);
    expect(describeChanges(keep.changes)).toEqual(['+ job vacuum']);
    expect(Object.keys(keep.result.jobs).sort()).toEqual(['backup', 'report', 'vacuum']);
    expect(keep.result.settings.timezone).toBe('Europe/Berlin'); // settings left out stay

    const pruned = planApplyFromYaml(current, smaller, 'jobs.yaml', { ...opts, prune: true });
    expect(describeChanges(pruned.changes)).toEqual([
      '- group web',
      '- resource warehouse',
      '- job report',
      '+ job vacuum',
      '- check load',
      '- notify rule rule-1',
    ]);
    expect(pruned.result).toEqual({ ...emptyDefinitions(), settings: { timezone: 'Europe/Berlin' }, groups: { db: ['db1', 'db2'] }, jobs: { backup: current.jobs.backup, vacuum: keep.result.jobs.vacuum } });
  });

  it('validates the resulting state: pruning a group still in use is refused as a whole', () => {
    const current = planApplyFromYaml(emptyDefinitions(), BASE, 'jobs.yaml', opts).result;
    const noGroups = BASE.replace(/groups:\n {2}db: \[db1, db2\]\n {2}web: \[web1\]\n/, '');
    expect(planApplyFromYaml(current, noGroups, 'jobs.yaml', opts).changes).toEqual([]);
    const err = rejected(() => planApplyFromYaml(current, noGroups, 'jobs.yaml', { ...opts, prune: true }));
    expect(err.issues.map((i) => i.path).sort()).toEqual(['checks.load.on.group', 'jobs.backup.on.group']);
    expect(err.message).toMatch(/^jobs.yaml is invalid \(2 errors\); nothing was changed:/);
  });

  it('a settings change is reported', () => {
    const current = planApplyFromYaml(emptyDefinitions(), BASE, 'jobs.yaml', opts).result;
    const plan = planApplyFromYaml(current, `${BASE}newDayAt: "06:00"\n`.replace('Europe/Berlin', 'UTC'), 'jobs.yaml', opts);
    expect(plan.changes).toEqual([
      { kind: 'settings', name: 'timezone', action: 'update' },
      { kind: 'settings', name: 'newDayAt', action: 'create' },
    ]);
    expect(plan.result.settings).toEqual({ timezone: 'UTC', newDayAt: '06:00' });
  });

  it('planApply works on definitions directly and lists parse issues first', () => {
    const desired = parse(BASE);
    expect(planApply(emptyDefinitions(), desired, opts).changes).toHaveLength(8);
    const err = rejected(() => planApply(emptyDefinitions(), desired, opts, [{ path: 'x', message: 'parse problem' }], 'input'));
    expect(err.issues).toEqual([{ path: 'x', message: 'parse problem' }]);
  });
});

/** A document that uses every key the format has. */
const RICH = `
timezone: Europe/Berlin
newDayAt: "06:00"
groups:
  db: [db1, db2]
  web: web1
  all-linux: [db, web]
resources:
  cpu-{agent}: { pool: 4 }
  warehouse-db: { pool: 2 }
  partner-api: { rate: 10/60s }
jobs:
  nightly-backup:
    title: Nightly backup
    description: Full backup of every database
    tags: [backup, db]
    enabled: true
    run: { command: [/usr/local/bin/backup, --full] }
    env: { MODE: full, LEVEL: 3, DRY: false, TOKEN: { secret: backup-token } }
    cwd: /srv/backup
    runAs: { user: backup, group: backup }
    on: { group: db, mode: any }
    schedule: { cron: "30 2 * * *", timezone: Europe/London, catchUp: all }
    requires:
      - ready
      - { condition: rates-loaded, date: previous }
      - { condition: manual-go, date: any }
      - { anyOf: [primary-done, { condition: fallback-done, date: same }] }
    resources: { "cpu-{agent}": 2, warehouse-db: 1 }
    posts: { success: [backup-done], failure: [backup-failed], warning: [backup-partial] }
    timeout: 120m
    killGrace: 30
    maxOutput: 2048KB
    exitCodes: { success: [0, 1], warning: [3] }
    retries: { count: 2, delay: 600s, backoff: 1.5, maxDelay: 1h }
    priority: -10
    concurrency: { max: 2, overlap: skip }
    expect:
      startBy: "3:00"
      endBy: "05:00"
      runtime: { warn: 2x, crit: 90m }
      maxWait: 30m
  age-archives:
    run: { shell: "find /srv/archive -mtime +30 -delete" }
    on: { groups: [db, web], mode: all }
    schedule: { every: 15m, from: "00:05" }
    requires: [backup-done]
  push-to-partner:
    run: { node: scripts/push.js, config: { batch: 500, dry: false, hosts: [a, b] }, args: [--fast] }
    on: { agents: [web1, db1] }
    schedule: { cron: "* 8-17 * * mon-fri", every: 10m, catchUp: none }
    resources: { partner-api: 1 }
    posts: [pushed]
  cleanup:
    run: { shell: cleanup }
    on: { agent: db1 }
    schedule: { after: 1h }
    requires: [backup-failed]
  one-off:
    run: { shell: migrate }
    on: { agent: db2 }
    schedule: { at: "2026-12-01T14:30" }
  on-demand:
    run: { command: [/bin/true] }
    on: { agent: db2 }
checks:
  root-disk:
    title: Root file system
    tags: [disk]
    enabled: false
    on: { group: all-linux }
    builtin: { disk: / }
    every: 60s
    timeout: 10s
    warn: "~:80"
    crit: 90
    attempts: 3
  inodes:
    on: { group: db }
    builtin: { inodes: /var }
    warn: "@0:10"
  memory:
    on: { groups: [db, web] }
    builtin: memory
  load:
    on: { agent: web1, mode: all }
    plugin: /usr/lib/nagios/plugins/check_load -w 5,4,3 -c 10,8,6
  ping:
    on: { agents: [web1] }
    plugin: [/usr/lib/nagios/plugins/check_ping, -H, example.com]
  queue-depth:
    on: { agent: web1 }
    node: checks/queue.js
    config: { queue: orders }
    warn: "10:"
notify:
  - name: dba
    match: { severity: [critical], source: [job, check], tags: [db], agent: db1, group: [db] }
    email: [dba@example.com, oncall@example.com]
  - match: { severity: [warning, critical] }
    webhook: { url: "https://chat.example.com/hooks/ops", secret: hook-secret }
    digest: 120s
  - command: /usr/local/bin/page-someone
  - name: logger
    command: [/bin/sh, -c, "cat >> /tmp/notifications.log"]
    webhook: { url: "http://localhost:9000/hook" }
`;

describe('export → parse round trip', () => {
  it('the rich document parses without issues or warnings', () => {
    const plan = planApplyFromYaml(emptyDefinitions(), RICH, 'rich.yaml', opts);
    expect(plan.warnings).toEqual([
      { path: 'jobs.nightly-backup.requires[0]', message: 'no job posts condition "ready"; it can only be posted by hand' },
      { path: 'jobs.nightly-backup.requires[1]', message: 'no job posts condition "rates-loaded"; it can only be posted by hand' },
      { path: 'jobs.nightly-backup.requires[2]', message: 'no job posts condition "manual-go"; it can only be posted by hand' },
      { path: 'jobs.nightly-backup.requires[3]', message: 'no job posts condition "primary-done"; it can only be posted by hand' },
      { path: 'jobs.nightly-backup.requires[3]', message: 'no job posts condition "fallback-done"; it can only be posted by hand' },
    ]);
  });

  it('stores canonical spellings', () => {
    const d = parse(RICH);
    const job = d.jobs['nightly-backup']!;
    expect(job.timeout).toBe('2h');
    expect(job.killGrace).toBe('30s');
    expect(job.maxOutput).toBe('2MB');
    expect(job.retries).toEqual({ count: 2, delay: '10m', backoff: 1.5, maxDelay: '1h' });
    expect(job.env).toEqual({ MODE: 'full', LEVEL: '3', DRY: 'false', TOKEN: { secret: 'backup-token' } });
    expect(job.expect).toEqual({ startBy: '03:00', endBy: '05:00', runtime: { warn: '2x', crit: '1h30m' }, maxWait: '30m' });
    expect(d.resources['partner-api']).toEqual({ rate: '10/1m' });
    expect(d.groups.web).toEqual(['web1']);
    expect(d.jobs['push-to-partner']!.posts).toEqual({ success: ['pushed'] });
    expect(d.checks['root-disk']!.crit).toBe('90');
    expect(d.checks['root-disk']!.every).toBe('1m');
    expect(d.notify['rule-2']!.digest).toBe('2m');
    expect(d.notify.dba!.match!.agent).toEqual(['db1']);
    expect(Object.keys(d.notify).sort()).toEqual(['dba', 'logger', 'rule-2', 'rule-3']);
  });

  it('export then parse gives exactly the same definitions, and exporting again the same text', () => {
    const first = parse(RICH);
    const text = definitionsToYaml(first);
    expect(text.startsWith('# batchalyzer definitions (format: docs/jobs-as-code.md)\n')).toBe(true);
    const second = parse(text);
    expect(second).toStrictEqual(first);
    expect(definitionsToYaml(second)).toBe(text);
    // And applying the export over the stored state changes nothing.
    const stored = planApplyFromYaml(emptyDefinitions(), RICH, 'rich.yaml', opts).result;
    expect(planApplyFromYaml(stored, text, 'export.yaml', { ...opts, prune: true }).changes).toEqual([]);
  });

  it('an empty store exports a header only, which parses to nothing', () => {
    const text = definitionsToYaml(emptyDefinitions());
    expect(text).toBe('# batchalyzer definitions (format: docs/jobs-as-code.md)\n');
    expect(parse(text)).toEqual(emptyDefinitions());
  });
});

describe('warnings', () => {
  const job = (extra: string) => `
jobs:
  a:
    run: { shell: "true" }
    on: { agent: x }
${extra}`;

  it('a requirement that nothing posts is a warning, not an error', () => {
    const plan = planApplyFromYaml(emptyDefinitions(), job('    requires: [never-posted]'), 'f', opts);
    expect(plan.warnings).toEqual([{ path: 'jobs.a.requires[0]', message: 'no job posts condition "never-posted"; it can only be posted by hand' }]);
    expect(plan.changes).toEqual([{ kind: 'jobs', name: 'a', action: 'create' }]);
  });

  it('a condition posted on success, failure or warning by any job counts', () => {
    for (const posts of ['[c]', '{ success: [c] }', '{ failure: [c] }', '{ warning: [c] }']) {
      const text = `${job('    requires: [c, { anyOf: [c, { condition: c, date: previous }] }]')}
  b:
    run: { shell: "true" }
    on: { agent: x }
    posts: ${posts}
`;
      expect(planApplyFromYaml(emptyDefinitions(), text, 'f', opts).warnings).toEqual([]);
    }
  });

  it('a job already stored that posts the condition counts too', () => {
    const stored = parse(job('    posts: [c]'));
    const text = `jobs:\n  b:\n    run: { shell: "true" }\n    on: { agent: x }\n    requires: [c]\n`;
    expect(planApplyFromYaml(stored, text, 'f', opts).warnings).toEqual([]);
    expect(planApplyFromYaml(stored, text, 'f', { ...opts, prune: true }).warnings).toHaveLength(1);
  });

  it('a one-off time in the past is a warning', () => {
    const plan = planApplyFromYaml(emptyDefinitions(), job('    schedule: { at: "2026-01-01T00:00" }'), 'f', opts);
    expect(plan.warnings).toEqual([{ path: 'jobs.a.schedule.at', message: '2026-01-01T00:00 is in the past; this one-off job will not run again unless ordered by hand' }]);
    expect(planApplyFromYaml(emptyDefinitions(), job('    schedule: { at: "2026-07-01T00:00" }'), 'f', opts).warnings).toEqual([]);
  });
});

describe('the flow-mapping brace rule for {agent}', () => {
  it('a quoted key works in flow style, a bare one in block style', () => {
    const text = (resources: string) => `
resources:
  cpu-{agent}: { pool: 2 }
jobs:
  a:
    run: { shell: "true" }
    on: { agent: x }
${resources}`;
    expect(parse(text('    resources: { "cpu-{agent}": 1 }')).jobs.a!.resources).toEqual({ 'cpu-{agent}': 1 });
    expect(parse(text('    resources:\n      cpu-{agent}: 1')).jobs.a!.resources).toEqual({ 'cpu-{agent}': 1 });
    const bare = parseDefinitionsYaml(text('    resources: { cpu-{agent}: 1 }'));
    expect(bare.issues.length).toBeGreaterThan(0);
    expect(bare.issues.every((i) => /^line \d+, column \d+$/.test(i.path) && i.message.startsWith('YAML syntax error'))).toBe(true);
  });
});
