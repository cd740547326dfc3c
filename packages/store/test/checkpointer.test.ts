import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { JobSpec } from '@batchalyzer/core';
import { openStore } from '@batchalyzer/store';

describe('SQLite WAL checkpoints', () => {
  it('are run in the background, not only by a commit that crosses SQLite\'s 1,000-page threshold, and stop with the store', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'batchalyzer-ckpt-')), 'c.db');
    const store = await openStore({ kind: 'sqlite', path });
    // Let the background checkpoint take in the schema, then write about 1.5 MB (well under 1,000 pages of 4 KB).
    await new Promise((r) => setTimeout(r, 1000));
    const before = statSync(path).size;
    const spec = { run: { command: ['/bin/echo', 'x'.repeat(1000)] }, on: { agent: 'a1' } } as JobSpec;
    const runs = Array.from({ length: 1500 }, (_, i) => ({ jobName: `j${i}`, planDate: '2026-06-01', nominalAt: 0, dueAt: 0, origin: 'schedule' as const, priority: 0, spec }));
    await store.createRuns(runs, 'test', 0);
    // The database file itself grows only when a checkpoint copies the WAL into it.
    let grown = false;
    for (let i = 0; i < 100 && !grown; i++) {
      await new Promise((r) => setTimeout(r, 100));
      grown = statSync(path).size >= before + 1_000_000;
    }
    expect(grown).toBe(true);
    await store.close();
  });
});
