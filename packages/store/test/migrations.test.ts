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

/** Puts a migrated database back at schema 3 (the second job-first index of 0001 back). */
// A fresh database taken back to version 3: 0005 (output file columns) and 0004 undone.
const AT_VERSION_3 = [
  'ALTER TABLE run_output DROP COLUMN file_offset',
  'ALTER TABLE run_output DROP COLUMN file_length',
  'CREATE INDEX runs_job_date ON runs (job_name, plan_date, id)',
  'DELETE FROM schema_migrations WHERE version >= 4',
];
const RUN = "INSERT INTO runs (job_name, plan_date, due_at, origin, state, spec, created_at, updated_at) VALUES ('j', '2026-11-29', 0, 'schedule', 'waiting', '{}', 0, 0)";
const RUN_INDEXES = ['runs_agent_state', 'runs_date_state', 'runs_ended', 'runs_job_state_id', 'runs_state_id'];

describe('migration 0004 (one job-first index on runs)', () => {
  it('upgrades a version 3 database in place, keeping its runs; listings by job use the remaining job index', async () => {
    const config = { kind: 'sqlite' as const, path: join(tempDir(), 'v3.db') };
    await (await openStore(config)).close();
    const db = new Database(config.path);
    for (const s of AT_VERSION_3) db.prepare(s).run();
    db.prepare(RUN).run();
    db.close();
    const store = await openStore(config);
    expect(await store.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    expect((await store.listRuns({ job: 'j', planDate: '2026-11-29' }, { limit: 1 })).items).toHaveLength(1);
    await store.close();
    const after = new Database(config.path);
    const names = after.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs' AND name NOT LIKE 'sqlite_%' ORDER BY name").all();
    expect(names.map((r) => (r as { name: string }).name)).toEqual(RUN_INDEXES);
    // The store's listings by job (Store.listRuns): by job and state in index order (api-list), by job and plan
    // date (the engine, one run) through the job's runs.
    const plan = (where: string) => (after.prepare(`EXPLAIN QUERY PLAN SELECT * FROM runs WHERE ${where} ORDER BY id DESC LIMIT 51`).all() as { detail: string }[])
      .map((p) => p.detail).join('; ');
    expect(plan("job_name = 'j' AND state IN ('failed')")).toMatch(/^SEARCH runs USING INDEX runs_job_state_id \(job_name=\? AND state=\?\)$/);
    expect(plan("job_name = 'j' AND plan_date = '2026-11-29'")).toMatch(/USING INDEX runs_(job_state_id|date_state)/);
    after.close();
  });

  it.skipIf(!pgAvailable())('upgrades a version 3 database in place on PostgreSQL too', async () => {
    const url = freshPgUrl();
    await (await openStore({ kind: 'postgres', url })).close();
    const schema = new URL(url).searchParams.get('schema')!;
    const plain = new URL(url);
    plain.searchParams.delete('schema');
    const client = new pg.Client({ connectionString: plain.toString() });
    await client.connect();
    await client.query(`SET search_path TO "${schema}"`);
    for (const s of [...AT_VERSION_3, RUN]) await client.query(s);
    const store = await openStore({ kind: 'postgres', url });
    expect(await store.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    expect((await store.listRuns({ job: 'j', planDate: '2026-11-29' }, { limit: 1 })).items).toHaveLength(1);
    await store.close();
    const r = await client.query(`SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'runs' AND indexname <> 'runs_pkey' ORDER BY indexname`, [schema]);
    expect(r.rows.map((x: { indexname: string }) => x.indexname)).toEqual(RUN_INDEXES);
    await client.query('SET enable_seqscan = off');
    const plan = await client.query("EXPLAIN SELECT * FROM runs WHERE job_name = 'j' AND plan_date = '2026-11-29' ORDER BY id DESC LIMIT 1");
    expect(plan.rows.map((p: Record<string, string>) => p['QUERY PLAN']).join('\n')).not.toMatch(/runs_job_date/);
    await client.end();
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
