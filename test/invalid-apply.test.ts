import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, ROOT, tempDir } from './support/cli.js';

/** Every invalid file is rejected as a whole by the real CLI, listing each error by path, changing nothing. */
const DIR = join(ROOT, 'test', 'fixtures', 'invalid');
const fixtures = readdirSync(DIR).filter((f) => f.endsWith('.yaml')).sort();

describe('apply rejects invalid jobs-as-code files', () => {
  const data = tempDir();
  let before = '';

  beforeAll(async () => {
    const seeded = await cli(['apply', '-f', join(ROOT, 'examples', 'demo.yaml'), '--data', data]);
    expect(seeded.code).toBe(0);
    before = (await cli(['export', '--data', data])).stdout;
    expect(before).toContain('jobs:');
  });

  it('has at least 15 invalid fixtures', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(15);
  });

  // Rejected applies only read the store, so the fixtures run concurrently (each is a real CLI process).
  it.concurrent.each(fixtures.map((f, i) => [f, i] as const))('%s', async (file, i) => {
    const text = readFileSync(join(DIR, file), 'utf8');
    const expected = [...text.matchAll(/^# expect: (.+)$/gm)].map((m) => m[1]!.trim());
    expect(expected.length).toBeGreaterThan(0);
    // --prune changes what the resulting state is, not whether bad input is rejected: check it on a sample.
    for (const prune of i % 4 === 0 ? [[], ['--prune']] : [[]]) {
      const r = await cli(['apply', '-f', join(DIR, file), '--data', data, ...prune]);
      expect(r.code).not.toBe(0);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/is invalid \(\d+ errors?\); nothing was changed/);
      const listed = r.stderr.split('\n').filter((l) => l.startsWith('  ')).map((l) => l.trim());
      for (const path of expected) expect(listed.some((l) => l.startsWith(`${path}: `))).toBe(true);
      expect(listed).toHaveLength(expected.length);
    }
    expect((await cli(['export', '--data', data])).stdout).toBe(before);
  });
});
