import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openStore, type RunRecord } from '@batchalyzer/store';
import { cli, spawnCli, tempDir, waitForOutput } from './support/cli.js';
import { until } from './support/agent.js';
import type { ChildProcess } from 'node:child_process';

/**
 * The whole stack as an operator runs it: `batchalyzer server` and `batchalyzer agent` processes over loopback,
 * definitions applied from YAML, real shell jobs. Brief §4–§8 end to end.
 */
const procs: ChildProcess[] = [];
afterEach(() => {
  for (const p of procs.splice(0)) p.kill('SIGKILL');
});

describe('server + agent end to end', () => {
  it('runs a condition chain and a pool with contention on a real agent, with plan date and nominal time in the environment', { timeout: 90_000 }, async () => {
    const data = tempDir();
    const at = new Date(Date.now() + 3000).toISOString().slice(0, 19) + 'Z';
    const jobs = join(data, 'jobs.yaml');
    const job = (extra: string) => `{ on: { agent: e1 }, schedule: { at: "${at}" }, ${extra} }`;
    writeFileSync(jobs, `
timezone: UTC
resources:
  two: { pool: 2 }
jobs:
  A: ${job('run: { shell: "echo A-out; echo A-err >&2; sleep 1" }, posts: [a-done]')}
  B: ${job('run: { shell: "echo B plan=$BATCHALYZER_PLAN_DATE nominal=$BATCHALYZER_NOMINAL_TIME attempt=$BATCHALYZER_ATTEMPT" }, requires: [a-done]')}
  P1: ${job('run: { command: [/bin/sleep, "1"] }, resources: { two: 1 }')}
  P2: ${job('run: { command: [/bin/sleep, "1"] }, resources: { two: 1 }')}
  P3: ${job('run: { command: [/bin/sleep, "1"] }, resources: { two: 1 }')}
  F: ${job('run: { shell: "exit 7" }')}
`);
    expect((await cli(['apply', '-f', jobs, '--data', data])).code).toBe(0);
    const keyFile = join(data, 'e1.key');
    expect((await cli(['agent', 'register', 'e1', '--data', data, '--key-file', keyFile])).code).toBe(0);
    const server = spawnCli(['server', '--data', data, '--listen', '127.0.0.1:0', '--log-level', 'warn']);
    procs.push(server);
    const [, url] = await waitForOutput(server, /listening on (http:\/\/\S+)/);
    const agent = spawnCli(['agent', '--server', url!, '--name', 'e1', '--key-file', keyFile, '--data', join(data, 'agent'), '--log-level', 'warn']);
    procs.push(agent);

    const store = await openStore({ kind: 'sqlite', path: join(data, 'batchalyzer.db') }, { migrate: false });
    try {
      const runs = await until('all six runs to end', async () => {
        const items = (await store.listRuns({}, { limit: 50 })).items;
        return items.length === 6 && items.every((r) => r.endedAt !== null) ? items : undefined;
      }, 60_000, 200);
      const by = (name: string) => runs.find((r) => r.jobName === name)!;
      expect(by('A').state).toBe('succeeded');
      expect(by('B').state).toBe('succeeded');
      expect(by('F')).toMatchObject({ state: 'failed', exitCode: 7 });
      expect(by('B').startedAt!).toBeGreaterThanOrEqual(by('A').endedAt!);
      expect((await store.readOutput(by('A').id, 'stdout')).toString()).toBe('A-out\n');
      expect((await store.readOutput(by('A').id, 'stderr')).toString()).toBe('A-err\n');
      const planDate = at.slice(0, 10);
      expect((await store.readOutput(by('B').id, 'stdout')).toString()).toBe(`B plan=${planDate} nominal=${at.replace('Z', '.000Z')} attempt=1\n`);
      const pool: RunRecord[] = ['P1', 'P2', 'P3'].map(by);
      expect(pool.every((r) => r.state === 'succeeded')).toBe(true);
      // Never more than two holders at once: at every start, count the runs that had started and not yet ended.
      for (const r of pool) {
        const overlapping = pool.filter((o) => o.dispatchedAt! <= r.dispatchedAt! && (o.endedAt ?? Infinity) > r.dispatchedAt!);
        expect(overlapping.length).toBeLessThanOrEqual(2);
      }
      expect((await store.listConditions({ planDate })).map((c) => c.name)).toEqual(['a-done']);
      expect((await store.listMessages({ status: ['open'] }, { limit: 10 })).items.map((m) => m.key)).toEqual(['job:F:failed']);
    } finally {
      await store.close();
    }
  });
});
