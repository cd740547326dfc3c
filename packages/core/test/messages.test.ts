import { describe, expect, it } from 'vitest';
import { emptyDefinitions, parseDefinitionsYaml, planApplyFromYaml, suggestKey, ValidationError, type ValidationIssue } from '@batchalyzer/core';

/** Error paths and messages for mistakes beyond the fixtures: each says what is wrong and how to fix it. */

function issuesOf(text: string): ValidationIssue[] {
  try {
    planApplyFromYaml(emptyDefinitions(), text, 'f.yaml', { defaultTimezone: 'UTC' });
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as ValidationError).issues;
  }
  throw new Error('expected the file to be refused');
}

const JOB = `jobs:
  j:
    run: { shell: "true" }
    on: { agent: a1 }
`;

describe('validation messages', () => {
  it.each([
    [`${JOB}    posts: { sucess: [x] }`, 'jobs.j.posts.sucess', /did you mean "success"/],
    [`${JOB}    env: { 1BAD: x }`, 'jobs.j.env.1BAD', /"1BAD" is not a valid variable name; env names start with a letter or _/],
    [`${JOB}    resources: { "bad name": 1 }`, 'jobs.j.resources.bad name', /is not a valid resource name; use letters/],
    [`${JOB}    schedule: {}`, 'jobs.j.schedule', /a schedule needs a form; use one of \{ at \}, \{ cron \}/],
    [`${JOB}    schedule: { every: 0s }`, 'jobs.j.schedule.every', /must be longer than zero; write a duration such as 30s/],
    [`${JOB}    schedule: { after: 5m, every: 10m }`, 'jobs.j.schedule', /^every and after cannot be combined; use one of/],
    [`${JOB}    schedule: { cron: "0 0 1 13 *" }`, 'jobs.j.schedule.cron', /month field \(1-12 or jan-dec\) is out of range/],
    [`${JOB}    schedule: { cron: 5 }`, 'jobs.j.schedule.cron', /expected a cron expression in quotes/],
    [`${JOB}    schedule: { catchUp: sometimes, cron: "* * * * *" }`, 'jobs.j.schedule.catchUp', /catchUp is none, once \(default\) or all/],
    [`${JOB}    concurrency: { max: 0 }`, 'jobs.j.concurrency.max', /must be at least 1 \(got 0\); change the value/],
    [`${JOB}    retries: { delay: 5m }`, 'jobs.j.retries.count', /is required; add it/],
    [`${JOB}    requires: [{ anyOf: [a] }]`, 'jobs.j.requires[0].anyOf', /anyOf needs at least two conditions/],
    [`${JOB}    expect: { runtime: { warn: fast } }`, 'jobs.j.expect.runtime.warn', /neither a multiple of the usual duration \(e.g. 2x\) nor a duration/],
    [`${JOB}    maxOutput: 10 parsecs`, 'jobs.j.maxOutput', /write a size such as 512KB/],
    ['jobs:\n  j:\n    on: { agent: a1 }', 'jobs.j.run', /is required; add it \(e.g. run: \{ shell: "script" \}/],
    ['jobs:\n  j:\n    run: { shell: x }', 'jobs.j.on', /is required; add it \(e.g. on: \{ agent: NAME \}/],
    ['jobs:\n  j: hello', 'jobs.j', /expected a mapping, got the text "hello"/],
    ['jobs: [a]', 'jobs', /expected a mapping of names to definitions, got a list/],
    ['checks:\n  c: { on: { agent: a1 }, builtin: { dsk: / } }', 'checks.c.builtin', /builtin is one of memory, swap, load, cpu, uptime, processes, \{ disk: MOUNT \}/],
    ['checks:\n  c: { on: { agent: a1 }, builtin: load, plugin: /bin/true }', 'checks.c', /give only one of builtin, plugin/],
    ['resources:\n  r: { pool: 2, rate: 1/1m }', 'resources.r', /either \{ pool: N \} or \{ rate: N\/WINDOW \}/],
    ['resources:\n  r: { pool: 1.5 }', 'resources.r.pool', /a pool is a whole number of units/],
    ['notify:\n  a: { email: [a@b.cd] }', 'notify', /expected a list of rules/],
    ['notify:\n  - { name: x, email: [a@b.cd] }\n  - { name: x, email: [a@b.cd] }', 'notify[1].name', /rule name "x" is used twice/],
    ['notify:\n  - { match: { severity: [urgent] }, email: [a@b.cd] }', 'notify[0].match.severity[0]', /severity is one of info, warning, critical/],
    ['notify:\n  - { match: { severity: [critical] } }', 'notify[0]', /a rule needs at least one channel: email, webhook or command/],
    ['notify:\n  - webhook: { url: "ftp://x" }', 'notify[0].webhook.url', /http:\/\/ or https:\/\//],
    ['notify:\n  - { command: x }\n  - { match: { group: [nope] }, command: x }', 'notify[1].match.group[0]', /unknown group "nope"; define it under groups:/],
    ['- a', '', /the file must be a mapping/],
    ['requires: [a]', 'requires', /^unknown top-level key "requires"; the file may hold timezone, newDayAt/],
  ])('%#: %s', (text, path, message) => {
    const issues = issuesOf(text);
    const found = issues.find((i) => i.path === path);
    expect(found, JSON.stringify(issues)).toBeDefined();
    expect(found!.message).toMatch(message);
  });

  it('units beyond capacity say how to fix it, for pools and rates', () => {
    const withRes = (res: string, units: number) => `resources:\n  r: ${res}\n${JOB}    resources: { r: ${units} }`;
    expect(issuesOf(withRes('{ pool: 2 }', 3))).toEqual([
      { path: 'jobs.j.resources.r', message: 'takes 3 units but "r" has only 2; the job could never start; take at most 2 or raise the pool' },
    ]);
    expect(issuesOf(withRes('{ rate: 2/1m }', 3))[0]!.message).toMatch(/take at most 2 or raise the rate$/);
  });

  it('an entry rejected on its own is not reported again where it is referenced', () => {
    const text = `groups:\n  db: "bad name"\nresources:\n  r: { pool: 0 }\n${JOB.replace('{ agent: a1 }', '{ group: db }')}    resources: { r: 1 }`;
    expect(issuesOf(text).map((i) => i.path).sort()).toEqual(['groups.db', 'resources.r.pool']);
  });
});

describe('suggestKey', () => {
  it('suggests the nearest known key, counting a swap of neighbours as one edit', () => {
    expect(suggestKey('shedule')).toBe('schedule');
    expect(suggestKey('crti')).toBe('crit');
    expect(suggestKey('Timeout')).toBe('timeout');
    expect(suggestKey('retires')).toBe('retries');
    expect(suggestKey('completely-different')).toBeUndefined();
    expect(suggestKey('job', ['jobs', 'checks'])).toBe('jobs');
    expect(suggestKey('requires', ['jobs', 'checks'])).toBeUndefined();
  });
});

describe('YAML syntax errors', () => {
  it('are located by line and column and say how to fix them', () => {
    const r = parseDefinitionsYaml('jobs:\n  a:\n    run: { shell: "true" }\n   on: { agent: db1 }\n');
    expect(r.issues).toEqual([{ path: 'line 4, column 1', message: "YAML syntax error: All mapping items must start at the same column; fix the file's indentation or quoting there" }]);
    expect(parseDefinitionsYaml('jobs:\n  a: "abc\n').issues[0]!.message).toMatch(/^YAML syntax error: Missing closing "quote; fix/);
  });

  it('stop validation: only they are reported', () => {
    const issues = issuesOf('job: {}\njobs:\n  a: [1, 2\n  b: 3\n');
    expect(issues.length).toBeGreaterThan(0);
    expect(issues.every((i) => i.path.startsWith('line '))).toBe(true);
  });
});
