import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStore, type RunRecord } from '@batchalyzer/store';
import { spawnCli, tempDir, waitForOutput } from './support/cli.js';

/** `kill -9` of the real server process: after a restart no occurrence is lost or duplicated (brief §4, §12). */
async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('server killed with SIGKILL', () => {
  it('resumes from the store: every 2 s occurrence exists exactly once across the crash', async () => {
    const data = tempDir();
    const jobs = join(data, 'jobs.yaml');
    writeFileSync(jobs, `
jobs:
  every2-all: { run: { shell: "true" }, on: { agent: nowhere }, schedule: { every: 2s, catchUp: all }, concurrency: { max: 1000 } }
  every2-once: { run: { shell: "true" }, on: { agent: nowhere }, schedule: { every: 2s }, concurrency: { max: 1000 } }
`);
    const start = () => spawnCli(['server', '--data', data, '--listen', '127.0.0.1:0', '--apply', jobs, '--log-level', 'warn', '--timezone', 'UTC']);
    const runsOf = async (job: string): Promise<RunRecord[]> => {
      const store = await openStore({ kind: 'sqlite', path: join(data, 'batchalyzer.db') }, { migrate: false });
      try {
        return (await store.listRuns({ job }, { limit: 1000 })).items.reverse();
      } finally {
        await store.close();
      }
    };

    const first = start();
    await waitForOutput(first, /listening on/);
    await until('three runs', async () => ((await runsOf('every2-all')).length >= 3 ? true : undefined));
    first.kill('SIGKILL');
    await new Promise((r) => first.on('exit', r));
    const beforeCrash = (await runsOf('every2-all')).length;
    await new Promise((r) => setTimeout(r, 5000)); // the downtime itself is the scenario

    const second = start();
    await waitForOutput(second, /listening on/);
    await until('runs after the restart', async () => ((await runsOf('every2-all')).length >= beforeCrash + 4 ? true : undefined));
    second.kill('SIGKILL');
    await new Promise((r) => second.on('exit', r));

    // Runs are created ahead of their due time (docs/scheduling.md), so the store nearly always holds one at the
    // crash (all but the few milliseconds between a pass and the one that makes the next run ahead).
    expect((await runsOf('every2-all')).filter((r) => r.createdAt < r.dueAt).length).toBeGreaterThan(0);
    const all = (await runsOf('every2-all')).map((r) => r.nominalAt!);
    expect(new Set(all).size).toBe(all.length);
    for (let i = 1; i < all.length; i++) expect(all[i]! - all[i - 1]!).toBe(2000); // no gap, no duplicate
    const once = (await runsOf('every2-once')).map((r) => r.nominalAt!);
    expect(new Set(once).size).toBe(once.length);
    expect([...once].sort((a, b) => a - b)).toEqual(once);
  });
});
