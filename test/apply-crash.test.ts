import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, spawnCli, tempDir } from './support/cli.js';
import { freshPgUrl, pgAvailable } from './support/pg.js';

/** `kill -9` during apply leaves the store as before or as after, never in between (brief §12). */
function bigFile(jobs: number, tag: string): string {
  let y = 'groups:\n  g: [a1, a2]\nresources:\n  p: { pool: 3 }\njobs:\n';
  for (let i = 0; i < jobs; i++) {
    y += `  job-${i}:\n    title: "${tag} ${i}"\n    run: { shell: "echo ${i}" }\n    on: { group: g }\n    schedule: { cron: "${i % 60} * * * *" }\n    resources: { p: 1 }\n`;
  }
  return y;
}

const targets: [string, () => string[]][] = [['SQLite', () => ['--data', tempDir()]]];
if (pgAvailable()) targets.push(['PostgreSQL', () => ['--db', freshPgUrl()]]);

describe.each(targets)('apply killed with SIGKILL on %s', (_label, storeArgs) => {
  it('leaves the store as before or as after', { timeout: 300_000 }, async () => {
    const dir = tempDir();
    const base = join(dir, 'base.yaml');
    const big = join(dir, 'big.yaml');
    writeFileSync(base, bigFile(50, 'before'));
    writeFileSync(big, bigFile(1500, 'after'));

    // The state after a completed apply, to compare against.
    const ref = storeArgs();
    await cli(['apply', '-f', base, ...ref]);
    const before = (await cli(['export', ...ref])).stdout;
    const t0 = Date.now();
    expect((await cli(['apply', '-f', big, ...ref])).code).toBe(0);
    const duration = Date.now() - t0;
    const after = (await cli(['export', ...ref])).stdout;
    expect(after).not.toBe(before);

    const outcomes = { before: 0, after: 0 };
    const steps = 4;
    for (let k = 1; k <= steps; k++) {
      const store = storeArgs();
      expect((await cli(['apply', '-f', base, ...store])).code).toBe(0);
      const child = spawnCli(['apply', '-f', big, ...store]);
      // Listen before killing: a fast apply may already have finished (then the kill is a no-op).
      const closed = new Promise((r) => child.on('close', r));
      await new Promise((r) => setTimeout(r, (duration * k) / (steps + 1)));
      child.kill('SIGKILL');
      await closed;
      const state = (await cli(['export', ...store])).stdout;
      expect([before, after]).toContain(state);
      outcomes[state === before ? 'before' : 'after']++;
      // The store stays usable: applying again completes the change.
      expect((await cli(['apply', '-f', big, ...store])).code).toBe(0);
      expect((await cli(['export', ...store])).stdout).toBe(after);
    }
    expect(outcomes.before + outcomes.after).toBe(steps);
  });
});
