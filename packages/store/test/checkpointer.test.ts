import { copyFileSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { openStore } from '@batchalyzer/store';

/** What the database file alone holds (without its WAL): what checkpoints have moved into it. */
function agentsInDatabaseFile(path: string): number {
  const copy = `${path}.copy`;
  copyFileSync(path, copy);
  const db = new Database(copy, { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM agents').get() as { n: number }).n;
  } catch {
    return -1; // the schema itself is not checkpointed yet
  } finally {
    db.close();
  }
}

/** Background WAL checkpoints (checkpointer.ts): a worker thread moves commits into the database file. */
describe('SQLite background checkpoints', () => {
  it('checkpoints the WAL from a worker thread, without the 1,000 pages SQLite waits for by itself', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'batchalyzer-ckpt-')), 'test.db');
    const store = await openStore({ kind: 'sqlite', path }, { backgroundCheckpoints: true });
    try {
      for (let i = 0; i < 5; i++) await store.registerAgent(`a${i}`, `key${i}`, Date.now());
      // A few pages of WAL: the connection's own automatic checkpoint would not run before 1,000.
      let n = agentsInDatabaseFile(path);
      for (let waited = 0; n !== 5 && waited < 5_000; waited += 50) {
        await new Promise((r) => setTimeout(r, 50));
        n = agentsInDatabaseFile(path);
      }
      expect(n).toBe(5);
      expect((await store.getAgent('a4'))?.name).toBe('a4');
    } finally {
      await store.close();
    }
  });

  it('keeps the WAL bounded under a steady stream of commits (the thread alone rarely catches up exactly)', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'batchalyzer-ckpt-')), 'test.db');
    const store = await openStore({ kind: 'sqlite', path }, { backgroundCheckpoints: true });
    try {
      await new Promise((r) => setTimeout(r, 200)); // the thread is up
      // ~2.3 WAL pages a commit: well past the 10,000-page backstop, with no pause for the thread to catch up in.
      for (let i = 0; i < 6_000; i++) await store.registerAgent(`agent-${i}`, `key-${i}`.padEnd(200, 'x'), Date.now());
      expect(statSync(`${path}-wal`).size).toBeLessThan(10_500 * 4_120);
      expect((await store.listAgents()).length).toBe(6_000);
    } finally {
      await store.close();
    }
  });

  it('leaves checkpoints to SQLite when not asked for', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'batchalyzer-ckpt-')), 'test.db');
    const store = await openStore({ kind: 'sqlite', path });
    try {
      for (let i = 0; i < 5; i++) await store.registerAgent(`a${i}`, `key${i}`, Date.now());
      await new Promise((r) => setTimeout(r, 500));
      expect(agentsInDatabaseFile(path)).not.toBe(5);
    } finally {
      await store.close();
    }
  });
});
