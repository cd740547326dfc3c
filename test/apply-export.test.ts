import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, ROOT, tempDir } from './support/cli.js';
import { freshPgUrl, pgAvailable } from './support/pg.js';

const DEMO = join(ROOT, 'examples', 'demo.yaml');
const BRIEF = join(ROOT, 'test', 'fixtures', 'brief-example.yaml');

const targets: [string, () => string[]][] = [['SQLite', () => ['--data', tempDir()]]];
if (pgAvailable()) targets.push(['PostgreSQL', () => ['--db', freshPgUrl()]]);

describe.each(targets)('jobs-as-code on %s', (_label, storeArgs) => {
  it('apply twice reports "no changes" the second time, and export → apply round-trips exactly', async () => {
    const store = storeArgs();
    for (const file of [DEMO, BRIEF]) {
      const first = await cli(['apply', '-f', file, ...store]);
      expect(first.stderr).not.toMatch(/error/);
      expect(first.code).toBe(0);
      expect(first.stdout).toMatch(/applied \d+ change\(s\)/);
      const second = await cli(['apply', '-f', file, ...store]);
      expect(second.code).toBe(0);
      expect(second.stdout).toBe('no changes\n');
    }
    const exported = await cli(['export', ...store]);
    expect(exported.code).toBe(0);
    const file = join(tempDir(), 'export.yaml');
    writeFileSync(file, exported.stdout);
    const reapply = await cli(['apply', '-f', file, ...store, '--prune']);
    expect(reapply.stdout).toBe('no changes\n');
    // Into an empty store, the export recreates exactly the same definitions.
    const other = storeArgs();
    expect((await cli(['apply', '-f', file, ...other])).code).toBe(0);
    expect((await cli(['export', ...other])).stdout).toBe(exported.stdout);
  });

  it('--dry-run prints the diff and changes nothing; --prune deletes what the file no longer has', async () => {
    const store = storeArgs();
    const dry = await cli(['apply', '-f', BRIEF, '--dry-run', ...store]);
    expect(dry.stdout).toContain('+ job nightly-backup');
    expect(dry.stdout).toMatch(/dry run: \d+ change\(s\) not applied/);
    expect((await cli(['export', ...store])).stdout).not.toContain('jobs:');
    await cli(['apply', '-f', BRIEF, ...store]);
    const smaller = readFileSync(BRIEF, 'utf8').replace(/\n  push-to-partner:[\s\S]*?(?=\n  cleanup-after-failure:)/, '');
    const file = join(tempDir(), 'smaller.yaml');
    writeFileSync(file, smaller.replace('timeout: 2h', 'timeout: 3h'));
    const noPrune = await cli(['apply', '-f', file, ...store]);
    expect(noPrune.stdout).toContain('~ job nightly-backup (timeout)');
    expect(noPrune.stdout).not.toContain('- job push-to-partner');
    const prune = await cli(['apply', '-f', file, '--prune', ...store]);
    expect(prune.stdout).toContain('- job push-to-partner');
    expect((await cli(['export', ...store])).stdout).not.toContain('push-to-partner');
  });
});
