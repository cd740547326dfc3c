// api-list: the first and the hundredth page (50 runs a page) of runs filtered by state, and by job and state, at
// 100,000 runs of 10,000 jobs, through the store's paginated listing (Store.listRuns). There is no HTTP route for
// runs yet (issue 7/9 adds it); once it exists this bench must also go through it.
// Baseline in the same run: the raw SQL query for the same page (better-sqlite3 prepared statement; pg client).
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { openStore } from '@batchalyzer/store';
import { dropPgSchema, figure, log, median, now, percentile, pgUrl, tempDir } from './lib.mjs';

const BENCH = 'api-list';
const RUNS = 100_000;
const JOBS = 10_000;
const PAGE = 50;
const REPEATS = 200;
const require = createRequire(new URL('../packages/store/package.json', import.meta.url));
const STATES = ['succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'failed', 'warning', 'cancelled', 'waiting'];

/** Run i: job `hot` for every 10th run (10,000 runs, so that a job has 100+ pages), else one of 10,000 jobs. */
function row(i) {
  const job = i % 10 === 0 ? 'hot' : `job-${i % JOBS}`;
  const state = STATES[(i * 7) % STATES.length];
  const t = Date.parse('2026-05-01T00:00:00Z') + i * 20_000;
  const ended = state === 'waiting' ? null : t + 5000;
  return [job, new Date(t).toISOString().slice(0, 10), t, t, 'schedule', state, 0, 1, 0, null, state === 'waiting' ? null : 'a1', null, null,
    JSON.stringify({ run: { command: ['/bin/true'] }, on: { agent: 'a1' } }), t, t, ended ? t : null, ended ? t + 10 : null, ended, ended ? 0 : null, null, null, null, 0, 0];
}
const COLS = 'job_name, plan_date, nominal_at, due_at, origin, state, held, attempt, priority, target_agent, agent_name, wait_reason, rerun_of, spec, created_at, updated_at, dispatched_at, started_at, ended_at, exit_code, signal, end_reason, result, output_bytes, output_truncated';
/** The same query the store issues for the filter (hand-written SQL, positional parameters). */
function listSql(f, before, ph) {
  const where = ['state = ' + ph(0)];
  if (f.job !== undefined) where.push('job_name = ' + ph(1));
  if (before !== undefined) where.push('id < ' + ph(2));
  return `SELECT * FROM runs WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ${PAGE + 1}`;
}
const args = (f, before) => [f.state[0], ...(f.job !== undefined ? [f.job] : []), ...(before !== undefined ? [before] : [])];

const cases = [
  { name: 'state=failed', filter: { state: ['failed'] } },
  { name: 'job=hot & state=succeeded', filter: { state: ['succeeded'], job: 'hot' } },
];

async function measure(kind, store, rawQuery) {
  for (const c of cases) {
    // The cursor of page 100: walk the pages once (not measured).
    let before;
    for (let p = 1; p < 100; p++) before = (await store.listRuns(c.filter, { limit: PAGE, ...(before !== undefined ? { before } : {}) })).next;
    for (const [page, cursor] of [[1, undefined], [100, before]]) {
      const st = [];
      const raw = [];
      for (let i = 0; i < REPEATS + 20; i++) {
        let t = now();
        const got = await store.listRuns(c.filter, { limit: PAGE, ...(cursor !== undefined ? { before: cursor } : {}) });
        const a = now() - t;
        t = now();
        const rows = await rawQuery(c.filter, cursor);
        const b = now() - t;
        if (i >= 20) {
          st.push(a);
          raw.push(b);
        }
        if (i === 0 && (got.items.length !== PAGE || rows.length !== PAGE + 1)) throw new Error(`${c.name} page ${page}: expected ${PAGE} items, got ${got.items.length}/${rows.length - 1}`);
      }
      const p99 = percentile(st, 99);
      figure({ bench: BENCH, metric: `${kind} ${c.name} page ${page} p99`, value: p99, unit: 'ms', baseline: 'raw SQL for the same page (p99)', baselineValue: percentile(raw, 99), target: 'p99 ≤ 100 ms', met: p99 <= 100, note: `p50 ${median(st).toFixed(3)} ms, raw p50 ${median(raw).toFixed(3)} ms` });
    }
  }
}

// ── SQLite ──
{
  const dir = tempDir();
  const path = join(dir, 'batchalyzer.db');
  (await openStore({ kind: 'sqlite', path })).close();
  const Database = require('better-sqlite3');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  const ins = db.prepare(`INSERT INTO runs (${COLS}) VALUES (${COLS.split(',').map(() => '?').join(', ')})`);
  db.transaction(() => {
    for (let i = 0; i < RUNS; i++) ins.run(...row(i));
  })();
  // No ANALYZE: the server never runs one, so the planner works from the statistics the migrations write (0006).
  log(`SQLite: ${RUNS} runs of ${JOBS + 1} jobs`);
  const store = await openStore({ kind: 'sqlite', path });
  const stmts = new Map();
  const stmt = (f, before) => {
    const text = listSql(f, before, () => '?');
    if (!stmts.has(text)) stmts.set(text, db.prepare(text));
    return stmts.get(text);
  };
  await measure('SQLite', store, async (f, before) => stmt(f, before).all(...args(f, before)));
  await store.close();
  db.close();
}

// ── PostgreSQL, when a URL is set ──
const url = pgUrl();
if (url) {
  const store = await openStore({ kind: 'postgres', url });
  const pg = require('pg');
  const u = new URL(url);
  const schema = u.searchParams.get('schema');
  u.searchParams.delete('schema');
  const client = new pg.Client({ connectionString: u.toString() });
  await client.connect();
  await client.query(`SET search_path TO "${schema}"`);
  try {
    await client.query('BEGIN');
    for (let i = 0; i < RUNS; i += 2000) {
      const rows = [];
      for (let k = i; k < Math.min(RUNS, i + 2000); k++) rows.push(row(k));
      const cols = COLS.split(', ');
      const params = cols.map((_, c) => rows.map((r) => r[c]));
      const types = ['text', 'text', 'bigint', 'bigint', 'text', 'text', 'int', 'int', 'int', 'text', 'text', 'text', 'bigint', 'text', 'bigint', 'bigint', 'bigint', 'bigint', 'bigint', 'int', 'text', 'text', 'text', 'bigint', 'int'];
      await client.query(`INSERT INTO runs (${COLS}) SELECT * FROM unnest(${types.map((t, k) => `$${k + 1}::${t}[]`).join(', ')})`, params);
    }
    await client.query('COMMIT');
    await client.query('ANALYZE runs');
    log(`PostgreSQL: ${RUNS} runs`);
    await measure('PostgreSQL', store, async (f, before) => {
      let n = 0;
      return (await client.query(listSql(f, before, () => `$${++n}`), args(f, before))).rows;
    });
  } finally {
    await client.end();
    await store.close();
    await dropPgSchema(url);
  }
} else log('PostgreSQL skipped: set BATCHALYZER_BENCH_PG_URL (or BATCHALYZER_TEST_PG_URL) to include it');
process.exit(0);
