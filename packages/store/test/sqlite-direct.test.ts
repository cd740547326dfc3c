import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { connect, sqliteDirect, writeTx } from '../src/connection.js';

/** The SQLite hot path (connection.ts, sqliteDirect) beside Kysely's transactions on the same connection. */
describe('SQLite direct statements', () => {
  const open = async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'batchalyzer-direct-')), 'test.db');
    const conn = await connect({ kind: 'sqlite', path });
    await sql`CREATE TABLE t (n INTEGER)`.execute(conn.db);
    const other = new Database(path, { readonly: true });
    const rows = () => (other.prepare('SELECT n FROM t ORDER BY n').all() as { n: number }[]).map((r) => r.n);
    return { conn, rows, close: async () => { other.close(); await conn.db.destroy(); } };
  };
  const insert = (n: number) => (prepare: (s: string) => Database.Statement) => prepare('INSERT INTO t (n) VALUES (?)').run(n).changes;

  it('tells a failed COMMIT from a failing statement to the rollback hook', async () => {
    const { conn, close } = await open();
    // A deferred foreign key is checked at COMMIT: the one way to make COMMIT itself fail on demand.
    await sql`CREATE TABLE p (id INTEGER PRIMARY KEY)`.execute(conn.db);
    await sql`CREATE TABLE c (pid INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED)`.execute(conn.db);
    const seen: boolean[] = [];
    await expect(sqliteDirect(conn, true, (prepare) => prepare('INSERT INTO c (pid) VALUES (5)').run(), (f) => seen.push(f))).rejects.toThrow(/FOREIGN KEY/);
    await expect(sqliteDirect(conn, true, () => { throw new Error('statement failed'); }, (f) => seen.push(f))).rejects.toThrow('statement failed');
    expect(seen).toEqual([true, false]);
    await close();
  });

  it('commits in the call itself when no transaction is open on the connection', async () => {
    const { conn, rows, close } = await open();
    const p = sqliteDirect(conn, true, insert(1));
    expect(rows()).toEqual([1]); // committed before the caller awaited anything
    expect(await p).toBe(1);
    await close();
  });

  it('waits for a transaction open on the connection and stays out of it', async () => {
    const { conn, rows, close } = await open();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let inside!: () => void;
    const opened = new Promise<void>((r) => (inside = r));
    const tx = writeTx(conn, async (trx) => {
      await sql`INSERT INTO t (n) VALUES (1)`.execute(trx);
      inside();
      await gate;
      throw new Error('rolled back on purpose');
    });
    await opened;
    const direct = sqliteDirect(conn, true, insert(2));
    const read = sqliteDirect(conn, false, (prepare) => prepare('SELECT count(*) AS c FROM t').get() as { c: number });
    expect(rows()).toEqual([]); // neither committed: the direct write waits for the transaction
    release();
    await expect(tx).rejects.toThrow(/on purpose/);
    expect(await direct).toBe(1);
    expect(await read).toEqual({ c: 1 }); // never saw the rolled-back row
    expect(rows()).toEqual([2]);
    await close();
  });
});
