import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { planApplyFromYaml } from '@batchalyzer/core';
import { openStore, type Store } from '@batchalyzer/store';
import { DEFINITIONS_LOCK } from '../src/sql-store.js';
import { freshPgUrl, PG_URL, pgAvailable } from '../../../test/support/pg.js';

/**
 * Definitions on a PostgreSQL shared by several processes (brief §12): applies commit in the order of their audit
 * ids (what the engine's definitionsVersion reads), and a load reads one snapshot.
 */
const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});

async function fresh(): Promise<{ store: Store; schema: string; url: string }> {
  const url = freshPgUrl();
  const store = await openStore({ kind: 'postgres', url });
  cleanup.push(() => store.close());
  return { store, schema: new URL(url).searchParams.get('schema')!, url };
}

const withResource = (r: string) => `resources:\n  ${r}: { pool: 1 }\njobs:\n  j: { run: { shell: "true" }, on: { agent: a1 }, resources: { ${r}: 1 } }\n`;

async function apply(store: Store, yaml: string): Promise<void> {
  const plan = planApplyFromYaml(await store.loadDefinitions(), yaml, 'test.yaml', { defaultTimezone: 'UTC', prune: true });
  await store.applyDefinitions(plan, 'test', Date.now());
}

(pgAvailable() ? describe : describe.skip)('definitions on PostgreSQL', () => {
  it('an apply waits for the one before it to commit (the definitions lock), so audit ids follow commit order', async () => {
    const { store, schema } = await fresh();
    const other = new pg.Client({ connectionString: PG_URL });
    await other.connect();
    cleanup.push(() => other.end());
    await other.query('SELECT pg_advisory_lock(hashtext($1 || $2))', [DEFINITIONS_LOCK, schema]); // an apply in progress
    const before = await store.definitionsVersion();
    let done = false;
    const applying = apply(store, withResource('ra')).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 500));
    expect(done).toBe(false);
    expect(await store.definitionsVersion()).toBe(before);
    await other.query('SELECT pg_advisory_unlock(hashtext($1 || $2))', [DEFINITIONS_LOCK, schema]);
    await applying;
    expect(await store.definitionsVersion()).toBeGreaterThan(before);
  });

  it('a load never sees half of an apply committed meanwhile (one snapshot, not six reads on the pool)', async () => {
    const { store, url } = await fresh();
    const writer = await openStore({ kind: 'postgres', url }, { migrate: false });
    cleanup.push(() => writer.close());
    await apply(writer, withResource('ra'));
    let stop = false;
    const flips = (async () => {
      for (let i = 0; !stop; i++) await apply(writer, withResource(i % 2 ? 'ra' : 'rb'));
    })();
    const torn: string[] = [];
    for (let i = 0; i < 300; i++) {
      const d = await store.loadDefinitions();
      const wants = Object.keys(d.jobs.j?.resources ?? {});
      if (!wants.every((r) => r in d.resources)) torn.push(`job j wants ${wants.join(',')}, resources: ${Object.keys(d.resources).join(',')}`);
    }
    stop = true;
    await flips;
    expect(torn).toEqual([]);
  });
});
