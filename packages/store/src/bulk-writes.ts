import { CompiledQuery, type Kysely } from 'kysely';
import type { DB } from './db.js';
import type { NewRun, PlanEntryRecord, RunRecord, RunState } from './port.js';

/**
 * The store's bulk writes of a plan tick (docs/performance.md, plan-100k: 10,000 runs due at once): new runs with
 * their creation events, plan entries, first wait reasons. SQLite takes fixed statement texts, each prepared once
 * and run per row or per range of ids (binding 150,000 parameters into multi-row statements cost more than the
 * rows); PostgreSQL takes one statement per 10,000 rows with one array parameter per column.
 */
export type Prepare = (sql: string) => { run(...params: unknown[]): { changes: number; lastInsertRowid: number | bigint } };

const json = (v: unknown) => (v === undefined ? null : JSON.stringify(v));

/** The job specs of the last definitions loaded, with the text each was parsed from. */
export interface LoadedSpecs {
  jobs: Record<string, object>;
  texts: Map<string, string>;
}

/**
 * The stored text of each run's spec: the text its job's spec was parsed from when the definitions were last
 * loaded, when the run carries that very object (serialising 10,000 specs again was 15 ms of a plan tick), else
 * serialised once per object (runs of one job share it).
 */
export function specTexts(loaded: LoadedSpecs | null): (jobName: string, spec: object) => string {
  const texts = new Map<object, string>();
  return (jobName, spec) => {
    if (loaded !== null && loaded.jobs[jobName] === spec) return loaded.texts.get(jobName)!;
    let t = texts.get(spec);
    if (t === undefined) texts.set(spec, (t = JSON.stringify(spec)));
    return t;
  };
}

/** The record of a run just inserted, built from what the caller holds (reading 10,000 rows back cost most of a tick). */
export function newRunRecord(r: NewRun, id: number, at: number): RunRecord {
  const skipped = r.skipped !== undefined;
  return {
    id, jobName: r.jobName, planDate: r.planDate, nominalAt: r.nominalAt, dueAt: r.dueAt, origin: r.origin, state: skipped ? 'skipped' : 'waiting',
    held: r.held === true, attempt: 1, priority: r.priority, targetAgent: r.targetAgent ?? null, agentName: null, waitReason: null,
    rerunOf: r.rerunOf ?? null, spec: r.spec, createdAt: at, updatedAt: at, dispatchedAt: null, startedAt: null, endedAt: skipped ? at : null, exitCode: null,
    signal: null, endReason: r.skipped ?? null, result: null, outputBytes: 0, outputTruncated: false,
  };
}

const RUN_COLUMNS = '(job_name, plan_date, nominal_at, due_at, origin, state, held, priority, target_agent, rerun_of, spec, created_at, updated_at, ended_at, end_reason)';

/** Runs per multi-row SQLite insert (1,500 parameters); the rest go one by one, so there are two statement texts. */
const RUN_ROWS = 100;
const RUN_ONE = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';
const RUN_MANY = `INSERT INTO runs ${RUN_COLUMNS} VALUES ${Array(RUN_ROWS).fill(RUN_ONE).join(', ')}`;

/**
 * SQLite, inside the caller's write transaction: multi-row inserts without RETURNING (a third cheaper in CPU
 * time), then every creation event in one INSERT … SELECT over the new ids. The new ids are one range in input
 * order: AUTOINCREMENT gives each new row the next id above every id ever used, and the write lock is held; the
 * count of events written checks it. The event's detail is built by SQLite from the row: `{origin}`, or
 * `{origin, reason}` for a skipped run.
 */
export function insertRunsSqlite(prepare: Prepare, runs: NewRun[], specOf: (jobName: string, spec: object) => string, actor: string, at: number): number[] {
  const push = (p: unknown[], r: NewRun) => {
    const skipped = r.skipped !== undefined;
    p.push(r.jobName, r.planDate, r.nominalAt, r.dueAt, r.origin, skipped ? 'skipped' : 'waiting', r.held ? 1 : 0, r.priority,
      r.targetAgent ?? null, r.rerunOf ?? null, specOf(r.jobName, r.spec), at, at, skipped ? at : null, r.skipped ?? null);
  };
  let first = 0;
  let last = 0;
  let i = 0;
  const note = (id: number | bigint, n: number) => {
    last = Number(id);
    if (i === 0) first = last - n + 1;
  };
  if (runs.length >= RUN_ROWS) {
    const many = prepare(RUN_MANY);
    for (; i + RUN_ROWS <= runs.length; i += RUN_ROWS) {
      const p: unknown[] = [];
      for (let k = i; k < i + RUN_ROWS; k++) push(p, runs[k]!);
      note(many.run(...p).lastInsertRowid, RUN_ROWS);
    }
  }
  if (i < runs.length) {
    const one = prepare(`INSERT INTO runs ${RUN_COLUMNS} VALUES ${RUN_ONE}`);
    for (; i < runs.length; i++) {
      const p: unknown[] = [];
      push(p, runs[i]!);
      note(one.run(...p).lastInsertRowid, 1);
    }
  }
  const events = prepare(`INSERT INTO run_events (run_id, at, from_state, to_state, actor, detail)
    SELECT id, ?, NULL, state, ?, CASE WHEN state = 'skipped' AND end_reason <> '' THEN json_object('origin', origin, 'reason', end_reason)
      ELSE json_object('origin', origin) END
    FROM runs WHERE id BETWEEN ? AND ? ORDER BY id`).run(at, actor, first, last);
  if (events.changes !== runs.length || last - first + 1 !== runs.length) {
    throw new Error(`new run ids ${first}..${last} are not one range of ${runs.length} (${events.changes} events); the runs table must be AUTOINCREMENT`);
  }
  return Array.from({ length: runs.length }, (_, k) => first + k);
}

/** PostgreSQL: one statement per 10,000 runs with arrays as parameters (fixed texts, whatever the count). */
export async function insertRunsPostgres(trx: Kysely<DB>, runs: NewRun[], specOf: (jobName: string, spec: object) => string, actor: string, at: number): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < runs.length; i += 10_000) {
    const part = runs.slice(i, i + 10_000);
    const state = part.map((r): RunState => (r.skipped !== undefined ? 'skipped' : 'waiting'));
    const r = await trx.executeQuery<{ id: number }>(CompiledQuery.raw(
      'INSERT INTO runs (job_name, plan_date, nominal_at, due_at, origin, state, held, priority, target_agent, rerun_of, spec, ' +
      'created_at, updated_at, ended_at, end_reason) SELECT j, d, n, du, o, s, h, p, t, ro, sp, $12, $12, e, er FROM unnest(' +
      '$1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::int[], $8::int[], $9::text[], $10::bigint[], $11::text[], ' +
      '$13::bigint[], $14::text[]) WITH ORDINALITY AS u (j, d, n, du, o, s, h, p, t, ro, sp, e, er, ord) ORDER BY ord RETURNING id',
      [part.map((r) => r.jobName), part.map((r) => r.planDate), part.map((r) => r.nominalAt), part.map((r) => r.dueAt), part.map((r) => r.origin),
        state, part.map((r) => (r.held ? 1 : 0)), part.map((r) => r.priority), part.map((r) => r.targetAgent ?? null), part.map((r) => r.rerunOf ?? null),
        part.map((r) => specOf(r.jobName, r.spec)), at, part.map((r) => (r.skipped !== undefined ? at : null)), part.map((r) => r.skipped ?? null)],
    ));
    // Ids are assigned in row order (ORDER BY ord, the write holds the rows); RETURNING's own order is not promised.
    const got = r.rows.map((g) => Number(g.id)).sort((a, b) => a - b);
    const detail = part.map((r) => json({ origin: r.origin, ...(r.skipped ? { reason: r.skipped } : {}) }));
    await trx.executeQuery(CompiledQuery.raw(
      'INSERT INTO run_events (run_id, at, from_state, to_state, actor, detail) ' +
      'SELECT id, $2, NULL, s, $3, dt FROM unnest($1::bigint[], $4::text[], $5::text[]) AS u (id, s, dt)',
      [got, at, actor, state, detail],
    ));
    ids.push(...got);
  }
  return ids;
}

const ENTRY_CONFLICT = 'ON CONFLICT (plan_date, job_name) DO UPDATE SET next_due_at = excluded.next_due_at, ' +
  'last_nominal_at = excluded.last_nominal_at, job_revision = excluded.job_revision';

/** Entries per multi-row SQLite upsert (5,000 parameters); the rest go one by one, so there are two statement texts. */
const ENTRY_ROWS = 1000;
const ENTRY_INSERT = 'INSERT INTO plan_entries (plan_date, job_name, next_due_at, last_nominal_at, job_revision) VALUES ';
const ENTRY_MANY = `${ENTRY_INSERT}${Array(ENTRY_ROWS).fill('(?, ?, ?, ?, ?)').join(', ')} ${ENTRY_CONFLICT}`;
const ENTRY_ONE = `${ENTRY_INSERT}(?, ?, ?, ?, ?) ${ENTRY_CONFLICT}`;

/** SQLite: rows apply in order, so a later entry for the same key simply wins (no de-duplication needed). */
export function writeEntriesSqlite(prepare: Prepare, entries: PlanEntryRecord[]): void {
  let i = 0;
  if (entries.length >= ENTRY_ROWS) {
    const many = prepare(ENTRY_MANY);
    for (; i + ENTRY_ROWS <= entries.length; i += ENTRY_ROWS) {
      const params: unknown[] = [];
      for (let k = i; k < i + ENTRY_ROWS; k++) {
        const e = entries[k]!;
        params.push(e.planDate, e.jobName, e.nextDueAt, e.lastNominalAt, e.jobRevision);
      }
      many.run(...params);
    }
  }
  if (i === entries.length) return;
  const one = prepare(ENTRY_ONE);
  for (; i < entries.length; i++) {
    const e = entries[i]!;
    one.run(e.planDate, e.jobName, e.nextDueAt, e.lastNominalAt, e.jobRevision);
  }
}

/** PostgreSQL: one statement may not touch a row twice (PostgreSQL refuses), so the last entry for a key wins first. */
export async function writeEntriesPostgres(trx: Kysely<DB>, entries: PlanEntryRecord[]): Promise<void> {
  const unique = [...new Map(entries.map((e) => [`${e.planDate}|${e.jobName}`, e])).values()];
  for (let i = 0; i < unique.length; i += 10_000) {
    const part = unique.slice(i, i + 10_000);
    await trx.executeQuery(CompiledQuery.raw(
      'INSERT INTO plan_entries (plan_date, job_name, next_due_at, last_nominal_at, job_revision) ' +
      `SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::int[]) ${ENTRY_CONFLICT}`,
      [part.map((e) => e.planDate), part.map((e) => e.jobName), part.map((e) => e.nextDueAt), part.map((e) => e.lastNominalAt), part.map((e) => e.jobRevision)],
    ));
  }
}

/**
 * SQLite: the runs of one reason (reasons are shared objects: 10,000 runs waiting for the same agent have one) as
 * ranges of consecutive ids, one UPDATE per range. A plan tick's new runs are one range, so their first reasons
 * are one statement instead of 10,000 (plan-100k).
 */
export function setWaitReasonsSqlite(prepare: Prepare, items: { runId: number; reason: unknown }[]): void {
  const update = prepare(`UPDATE runs SET wait_reason = ? WHERE id BETWEEN ? AND ? AND state = 'waiting'`);
  // A plan tick's new runs usually share one reason over ascending consecutive ids (every id once): one UPDATE,
  // checked in one pass without the maps below (3 ms of the 10,000-due tick).
  const first = items[0];
  if (first === undefined) return;
  let k = 1;
  while (k < items.length && items[k]!.reason === first.reason && items[k]!.runId === first.runId + k) k++;
  if (k === items.length) {
    update.run(json(first.reason), first.runId, first.runId + k - 1);
    return;
  }
  // A run listed twice keeps its last reason, as when the rows were written in order.
  const last = new Map<number, unknown>();
  for (const i of items) last.set(i.runId, i.reason);
  const byReason = new Map<unknown, number[]>();
  for (const [runId, reason] of last) {
    let ids = byReason.get(reason);
    if (!ids) byReason.set(reason, (ids = []));
    ids.push(runId);
  }
  for (const [reason, ids] of byReason) {
    const text = json(reason);
    ids.sort((a, b) => a - b);
    for (let k = 0; k < ids.length; ) {
      let end = k;
      while (end + 1 < ids.length && ids[end + 1]! <= ids[end]! + 1) end++;
      update.run(text, ids[k], ids[end]);
      k = end + 1;
    }
  }
}
