import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { LATEST_SCHEMA_VERSION, openStore, SchemaTooNewError } from '@batchalyzer/store';
import { cli, tempDir } from '../../../test/support/cli.js';
import { freshPgUrl, pgAvailable } from '../../../test/support/pg.js';

describe('migrations on SQLite', () => {
  it('applies once even when several processes open a fresh file at the same time', async () => {
    // Separate processes: better-sqlite3 blocks its thread while waiting for a lock, so one process holds one store.
    const dir = tempDir();
    const results = await Promise.all([1, 2, 3].map(() => cli(['migrate', '--data', dir])));
    for (const r of results) expect(r.stdout).toMatch(new RegExp(`schema version ${LATEST_SCHEMA_VERSION} `));
    const db = new Database(join(dir, 'batchalyzer.db'));
    expect(db.prepare('SELECT count(*) AS n FROM schema_migrations').get()).toEqual({ n: LATEST_SCHEMA_VERSION });
    db.close();
  });

  it('refuses a schema newer than the code, naming both versions', async () => {
    const config = { kind: 'sqlite' as const, path: join(tempDir(), 'new.db') };
    await (await openStore(config)).close();
    const db = new Database(config.path);
    db.prepare("INSERT INTO schema_migrations VALUES (999, 'future', 'x', 0)").run();
    db.close();
    const err = await openStore(config).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SchemaTooNewError);
    expect((err as Error).message).toMatch(new RegExp(`version 999.*up to ${LATEST_SCHEMA_VERSION}`));
  });

  it('refuses an edited migration', async () => {
    const config = { kind: 'sqlite' as const, path: join(tempDir(), 'edit.db') };
    await (await openStore(config)).close();
    const db = new Database(config.path);
    db.prepare("UPDATE schema_migrations SET checksum = 'changed' WHERE version = 1").run();
    db.close();
    await expect(openStore(config)).rejects.toThrow(/must never be edited/);
  });
});

describe.skipIf(!pgAvailable())('migrations on PostgreSQL', () => {
  it('applies once under the advisory lock when several servers start together, and refuses a newer schema', async () => {
    const url = freshPgUrl();
    const config = { kind: 'postgres' as const, url };
    const stores = await Promise.all([1, 2, 3].map(() => openStore(config)));
    for (const s of stores) expect(await s.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    await Promise.all(stores.map((s) => s.close()));
    const schema = new URL(url).searchParams.get('schema')!;
    const plain = new URL(url);
    plain.searchParams.delete('schema');
    const client = new pg.Client({ connectionString: plain.toString() });
    await client.connect();
    const r = await client.query(`SELECT count(*)::int AS n FROM "${schema}".schema_migrations`);
    expect(r.rows[0].n).toBe(LATEST_SCHEMA_VERSION);
    await client.query(`INSERT INTO "${schema}".schema_migrations VALUES (999, 'future', 'x', 0)`);
    await client.end();
    await expect(openStore(config)).rejects.toThrow(SchemaTooNewError);
  });
});
