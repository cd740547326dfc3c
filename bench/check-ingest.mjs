// check-ingest: check values from 200 simulated hosts × 50 series (10,000 values a round) with warning/critical
// thresholds evaluated (monitoring-plugin ranges, core/range.ts) and stored through Store.recordCheckValues.
// Baseline in the same run: a raw batched insert of the same rows (better-sqlite3 prepared statement in one
// transaction; on PostgreSQL INSERT … SELECT unnest(…)), into an identical fresh schema on the same disk/server.
// Rounds alternate between the two so that both see the same machine load.
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { parseRange, rangeAlerts } from '@batchalyzer/core';
import { openStore } from '@batchalyzer/store';
import { dropPgSchema, figure, log, median, now, pgUrl, tempDir } from './lib.mjs';

const BENCH = 'check-ingest';
const HOSTS = 200;
const SERIES = 50;
const ROUNDS = 12;
const WARMUP = 2;
const require = createRequire(new URL('../packages/store/package.json', import.meta.url));

const warn = parseRange('~:80');
const crit = parseRange('~:90');
let clock = Date.parse('2026-06-01T00:00:00Z');

function round() {
  clock += 60_000;
  const values = new Array(HOSTS * SERIES);
  let k = 0;
  for (let h = 0; h < HOSTS; h++) {
    for (let s = 0; s < SERIES; s++) {
      const value = (h * 7 + s * 13 + clock / 60_000) % 100;
      values[k++] = { checkName: `c${s % 10}`, agentName: `host${h}`, series: `s${s}`, at: clock, value, state: null };
    }
  }
  return values;
}

/** Threshold evaluation: critical is checked before warning (brief §9). */
function evaluate(values) {
  for (const v of values) v.state = rangeAlerts(crit, v.value) ? 'CRITICAL' : rangeAlerts(warn, v.value) ? 'WARNING' : 'OK';
}

async function run(kind, measured, raw) {
  const rates = { measured: [], raw: [] };
  for (let r = 0; r < WARMUP + ROUNDS; r++) {
    const values = round();
    let t = now();
    evaluate(values);
    await measured(values);
    const m = now() - t;
    const copy = values.map((v) => ({ ...v }));
    t = now();
    await raw(copy);
    const b = now() - t;
    if (r >= WARMUP) {
      rates.measured.push(values.length / (m / 1000));
      rates.raw.push(values.length / (b / 1000));
    }
  }
  const v = median(rates.measured);
  const b = median(rates.raw);
  figure({ bench: BENCH, metric: `${kind}: values/s stored with thresholds`, value: v, unit: 'values/s', baseline: `raw batched insert (${kind})`, baselineValue: b, target: '≥ 0.5× raw', met: v >= 0.5 * b });
}

// ── SQLite ──
{
  const dir = tempDir();
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'batchalyzer.db') });
  const rawStore = await openStore({ kind: 'sqlite', path: join(dir, 'raw.db') });
  await rawStore.close();
  const Database = require('better-sqlite3');
  const db = new Database(join(dir, 'raw.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  const ins = db.prepare('INSERT INTO check_values (check_name, agent_name, series, at, value, state) VALUES (?, ?, ?, ?, ?, ?)');
  const insertAll = db.transaction((values) => {
    for (const v of values) ins.run(v.checkName, v.agentName, v.series, v.at, v.value, v.state);
  });
  log('SQLite');
  await run('SQLite', (values) => store.recordCheckValues(values), async (values) => insertAll(values));
  db.close();
  await store.close();
}

// ── PostgreSQL, when a URL is set ──
const url = pgUrl();
if (url) {
  const rawUrl = pgUrl();
  const store = await openStore({ kind: 'postgres', url });
  const rawStore = await openStore({ kind: 'postgres', url: rawUrl });
  await rawStore.close();
  const pg = require('pg');
  const u = new URL(rawUrl);
  const schema = u.searchParams.get('schema');
  u.searchParams.delete('schema');
  const client = new pg.Client({ connectionString: u.toString() });
  await client.connect();
  await client.query(`SET search_path TO "${schema}"`);
  log('PostgreSQL');
  try {
    await run('PostgreSQL', (values) => store.recordCheckValues(values), async (values) => {
      await client.query('BEGIN');
      await client.query(
        'INSERT INTO check_values (check_name, agent_name, series, at, value, state) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::float8[], $6::text[])',
        [values.map((v) => v.checkName), values.map((v) => v.agentName), values.map((v) => v.series), values.map((v) => v.at), values.map((v) => v.value), values.map((v) => v.state)],
      );
      await client.query('COMMIT');
    });
  } finally {
    await client.end();
    await store.close();
    await dropPgSchema(url);
    await dropPgSchema(rawUrl);
  }
} else log('PostgreSQL skipped: set BATCHALYZER_BENCH_PG_URL (or BATCHALYZER_TEST_PG_URL) to include it');
process.exit(0);
