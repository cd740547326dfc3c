import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { withStatementCache } from '@batchalyzer/store';

/** The SQLite statement cache (connection.ts) under Kysely's driver: prepared once, never shared while busy. */
describe('SQLite statement cache', () => {
  const open = () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE t (n INTEGER)');
    db.prepare('INSERT INTO t (n) SELECT value FROM json_each(?)').run(JSON.stringify(Array.from({ length: 10 }, (_, i) => i)));
    return db;
  };

  it('hands out the same prepared statement for the same text', () => {
    const cache = withStatementCache(open());
    const a = cache.prepare('SELECT n FROM t WHERE n > ?');
    expect(cache.prepare('SELECT n FROM t WHERE n > ?')).toBe(a);
    expect(cache.prepare('SELECT n FROM t WHERE n < ?')).not.toBe(a);
    expect(a.all(7)).toEqual([{ n: 8 }, { n: 9 }]);
    expect(cache.prepare('SELECT n FROM t WHERE n > ?').all(8)).toEqual([{ n: 9 }]);
  });

  it('prepares a fresh statement while the cached one is still iterating', () => {
    const cache = withStatementCache(open());
    const sql = 'SELECT n FROM t ORDER BY n';
    const first = cache.prepare(sql);
    const rows = first.iterate();
    expect(rows.next().value).toEqual({ n: 0 });
    const second = cache.prepare(sql);
    expect(second).not.toBe(first);
    expect(second.all()).toHaveLength(10);
    expect([...rows]).toHaveLength(9);
    expect(cache.prepare(sql)).toBe(first); // the cached one, once it is done
  });

  it('stays bounded and keeps working past its bound', () => {
    const cache = withStatementCache(open());
    const first = cache.prepare('SELECT 0 AS v');
    for (let i = 1; i <= 600; i++) expect(cache.prepare(`SELECT ${i} AS v`).get()).toEqual({ v: i });
    expect(cache.prepare('SELECT 0 AS v')).not.toBe(first); // evicted long ago, prepared again
    expect(cache.prepare('SELECT 600 AS v')).toBe(cache.prepare('SELECT 600 AS v'));
  });
});
