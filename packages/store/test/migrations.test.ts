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

/** Puts a migrated database back at schema 4 (0005's output-file columns dropped, and the indexes holding `state` that 0006 replaces). */
const AT_VERSION_4 = [
  'ALTER TABLE run_output DROP COLUMN file_offset',
  'ALTER TABLE run_output DROP COLUMN file_length',
  'DROP INDEX runs_job_id',
  'DROP INDEX runs_date_id',
  'DROP INDEX runs_agent_active',
  'CREATE INDEX runs_job_state_id ON runs (job_name, state, id)',
  'CREATE INDEX runs_date_state ON runs (plan_date, state, id)',
  'CREATE INDEX runs_agent_state ON runs (agent_name, state) WHERE agent_name IS NOT NULL',
  'DELETE FROM schema_migrations WHERE version >= 5',
];
const RUN = "INSERT INTO runs (job_name, plan_date, due_at, origin, state, spec, created_at, updated_at) VALUES ('j', '2026-11-29', 0, 'schedule', 'waiting', '{}', 0, 0)";
const RUN_INDEXES = ['runs_agent_active', 'runs_date_id', 'runs_ended', 'runs_job_id', 'runs_state_id'];

/**
 * Every query of the store on `runs` that is not by id (sql-store.ts), as both dialects receive it, with the index
 * it must be read through: each keeps its index whatever the order the indexes were created in.
 */
const RUN_QUERIES: [string, string, RegExp][] = [
  ['by state (api-list)', "SELECT * FROM runs WHERE state IN ('failed') ORDER BY id DESC LIMIT 51", /runs_state_id/],
  ['by state, next page', "SELECT * FROM runs WHERE state IN ('failed') AND id < 5000 ORDER BY id DESC LIMIT 51", /runs_state_id/],
  ['by job and state (api-list)', "SELECT * FROM runs WHERE state IN ('failed') AND job_name = 'j' ORDER BY id DESC LIMIT 51", /runs_job_id/],
  ['by job and state, next page', "SELECT * FROM runs WHERE state IN ('failed') AND job_name = 'j' AND id < 5000 ORDER BY id DESC LIMIT 51", /runs_job_id/],
  ['by job and plan date (engine)', "SELECT * FROM runs WHERE job_name = 'j' AND plan_date = '2026-11-29' ORDER BY id DESC LIMIT 2", /runs_job_id/],
  ['by plan date and state', "SELECT * FROM runs WHERE state IN ('failed') AND plan_date = '2026-11-29' ORDER BY id DESC LIMIT 51", /runs_date_id/],
  ['an agent\'s runs in progress (hub)', "SELECT * FROM runs WHERE state IN ('dispatched', 'running') AND agent_name = 'a' AND ended_at IS NULL ORDER BY id DESC LIMIT 501", /runs_agent_active/],
  ['removing an agent', "SELECT id FROM runs WHERE agent_name = 'a' AND state IN ('dispatched', 'running') AND ended_at IS NULL", /runs_agent_active/],
  ['active runs (start)', "SELECT * FROM runs WHERE state IN ('waiting', 'dispatched', 'running') ORDER BY id", /runs_state_id/],
];

describe('migration 0006 (no state in the job, plan-date and agent indexes)', () => {
  it('upgrades a version 4 database in place, keeping its runs; every listing reads through its index', async () => {
    const config = { kind: 'sqlite' as const, path: join(tempDir(), 'v4.db') };
    await (await openStore(config)).close();
    const db = new Database(config.path);
    for (const s of [...AT_VERSION_4, 'DELETE FROM sqlite_stat1']) db.prepare(s).run();
    db.prepare(RUN).run();
    db.close();
    const store = await openStore(config);
    expect(await store.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    expect((await store.listRuns({ job: 'j', planDate: '2026-11-29' }, { limit: 1 })).items).toHaveLength(1);
    expect((await store.listRuns({ job: 'j', state: ['waiting'] }, { limit: 1 })).items).toHaveLength(1);
    await store.close();
    const after = new Database(config.path);
    const names = after.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs' AND name NOT LIKE 'sqlite_%' ORDER BY name").all();
    expect(names.map((r) => (r as { name: string }).name)).toEqual(RUN_INDEXES);
    const plan = (q: string) => (after.prepare(`EXPLAIN QUERY PLAN ${q}`).all() as { detail: string }[]).map((p) => p.detail).join('; ');
    for (const [what, q, index] of RUN_QUERIES) expect(plan(q), what).toMatch(index);
    // The statistics, not the order of creation, pick the index: without them SQLite would take the index created
    // last (here the state index) for every listing by job and state.
    after.exec("DROP INDEX runs_state_id; CREATE INDEX runs_state_id ON runs (state, id); INSERT INTO sqlite_stat1 VALUES ('runs', 'runs_state_id', '1000000 100000 1'); ANALYZE sqlite_schema");
    for (const [what, q, index] of RUN_QUERIES) expect(plan(q), what).toMatch(index);
    after.close();
  });

  it.skipIf(!pgAvailable())('upgrades a version 4 database in place on PostgreSQL too', async () => {
    const url = freshPgUrl();
    await (await openStore({ kind: 'postgres', url })).close();
    const schema = new URL(url).searchParams.get('schema')!;
    const plain = new URL(url);
    plain.searchParams.delete('schema');
    const client = new pg.Client({ connectionString: plain.toString() });
    await client.connect();
    await client.query(`SET search_path TO "${schema}"`);
    for (const s of [...AT_VERSION_4, RUN]) await client.query(s);
    const store = await openStore({ kind: 'postgres', url });
    expect(await store.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    expect((await store.listRuns({ job: 'j', planDate: '2026-11-29' }, { limit: 1 })).items).toHaveLength(1);
    await store.close();
    const r = await client.query(`SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'runs' AND indexname <> 'runs_pkey' ORDER BY indexname`, [schema]);
    expect(r.rows.map((x: { indexname: string }) => x.indexname)).toEqual(RUN_INDEXES);
    // PostgreSQL weighs its indexes by its own statistics; with scans by table order off, each query still finds
    // an index that serves it (the agent's runs in progress only through the partial index).
    await client.query('SET enable_seqscan = off');
    for (const [what, q, index] of RUN_QUERIES) {
      const plan = await client.query(`EXPLAIN ${q}`);
      const text = plan.rows.map((p: Record<string, string>) => p['QUERY PLAN']).join('\n');
      if (index.source === 'runs_agent_active') expect(text, what).toMatch(index);
      else expect(text, what).toMatch(/Index/);
    }
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
