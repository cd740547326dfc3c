import { CompiledQuery, type Kysely, type Selectable, sql } from 'kysely';
import { type ApplyPlan, ConflictError, type Definitions, emptyDefinitions, NotFoundError, parseDuration } from '@batchalyzer/core';
import { lockResources, sqliteDirect } from './connection.js';
import type Database from 'better-sqlite3';
import { EarlyRunTouchedError, OutputFileError } from './errors.js';
import type { DB } from './db.js';
import { LATEST_SCHEMA_VERSION } from './migrate.js';
import { insertRunsPostgres, insertRunsSqlite, type LoadedSpecs, newRunRecord, specTexts, setWaitReasonsSqlite, writeEntriesPostgres, writeEntriesSqlite } from './bulk-writes.js';
import type { OutputFiles, Touched } from './output-files.js';
import { json, parse } from './sql-base.js';
import { SqlRecords } from './sql-records.js';
import { runFromRow, agentFromRow } from './rows.js';
import { ACTIVE_STATES } from './port.js';
import type {
  AgentLinkUpdate, AgentRecord, ConditionRecord, ConditionRef, DispatchResult, FinishResult, FinishRun, NewRun, OutputChunk, Page,
  PlanDayRecord, PlanEntryRecord, PoolTake, RateTake, RunEvent, RunFilter, RunRecord, RunState, RunStep, Store,
} from './port.js';

const EMPTY = Buffer.alloc(0);

/** Aborts a transaction (rolling back its writes) and carries the refusal out of it. */
class Refusal extends Error {
  constructor(readonly result: DispatchResult) {
    super('refused');
  }
}

/** The advisory lock applyDefinitions holds on PostgreSQL: hashtext(this || current_schema()). Exported for tests. */
export const DEFINITIONS_LOCK = 'batchalyzer.definitions.';

/**
 * The store on Kysely: one query codebase for SQLite and PostgreSQL (dialect details live in connection.ts). The
 * run lifecycle, definitions, plan and output are here; connection and lifecycle in sql-base.ts, messages, checks
 * and auth in sql-records.ts.
 */
export class SqlStore extends SqlRecords implements Store {
  // ── Definitions ──────────────────────────────────────────────────────────────────────────────

  async loadDefinitions(): Promise<Definitions> {
    const d = emptyDefinitions();
    const read = (db: Kysely<DB>) => Promise.all([
      db.selectFrom('settings').selectAll().where('key', 'in', ['timezone', 'newDayAt']).execute(),
      db.selectFrom('agent_groups').selectAll().orderBy('name').execute(),
      db.selectFrom('resources').selectAll().orderBy('name').execute(),
      // Only what is read below: 100,000 job rows of five columns were a measurable part of a cold start.
      db.selectFrom('jobs').select(['name', 'spec']).orderBy('name').execute(),
      db.selectFrom('checks').select(['name', 'spec']).orderBy('name').execute(),
      db.selectFrom('notify_rules').selectAll().orderBy('name').execute(),
    ]);
    // One snapshot: on PostgreSQL the six reads went to different pool connections, so an apply committed between
    // them gave a torn set (a job naming a resource the read did not see). SQLite has one connection.
    const [settings, groups, resources, jobs, checks, rules] = this.kind === 'postgres'
      ? await this.db.transaction().setIsolationLevel('repeatable read').setAccessMode('read only').execute(read)
      : await read(this.db);
    for (const s of settings) d.settings[s.key as 'timezone' | 'newDayAt'] = s.value;
    for (const g of groups) d.groups[g.name] = JSON.parse(g.members);
    for (const r of resources) d.resources[r.name] = JSON.parse(r.spec);
    const texts = new Map<string, string>();
    for (const j of jobs) {
      d.jobs[j.name] = JSON.parse(j.spec);
      texts.set(j.name, j.spec);
    }
    this.loadedSpecs = { jobs: d.jobs, texts };
    for (const c of checks) d.checks[c.name] = JSON.parse(c.spec);
    for (const n of rules) d.notify[n.name] = JSON.parse(n.spec);
    return d;
  }

  async applyDefinitions(plan: ApplyPlan, actor: string, at: number): Promise<void> {
    const r = plan.result;
    const upserts = (kind: ApplyPlan['changes'][number]['kind']) => plan.changes.filter((c) => c.kind === kind && c.action !== 'delete').map((c) => c.name);
    const deletes = (kind: ApplyPlan['changes'][number]['kind']) => plan.changes.filter((c) => c.kind === kind && c.action === 'delete').map((c) => c.name);
    // Multi-row statements in chunks (parameter limits: SQLite 32766, PostgreSQL 65535), all in one transaction.
    const chunks = <T>(items: T[], size = 500): T[][] => Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));
    await this.tx(async (trx) => {
      // PostgreSQL: applies one at a time, so that their audit ids (what definitionsVersion reads) follow commit
      // order; two concurrent applies could commit the lower id last, and a server that had read the higher one
      // never saw the other change. SQLite's write lock serialises them already.
      if (this.kind === 'postgres') await sql`SELECT pg_advisory_xact_lock(hashtext(${DEFINITIONS_LOCK} || current_schema()))`.execute(trx);
      for (const key of upserts('settings')) {
        const value = r.settings[key as 'timezone' | 'newDayAt']!;
        await trx.insertInto('settings').values({ key, value, updated_at: at })
          .onConflict((oc) => oc.column('key').doUpdateSet({ value, updated_at: at })).execute();
      }
      const drop = async (kind: 'groups' | 'resources' | 'jobs' | 'checks' | 'notify', table: 'agent_groups' | 'resources' | 'jobs' | 'checks' | 'notify_rules') => {
        for (const names of chunks(deletes(kind))) await trx.deleteFrom(table).where('name', 'in', names).execute();
      };
      await drop('groups', 'agent_groups');
      await drop('resources', 'resources');
      await drop('jobs', 'jobs');
      await drop('checks', 'checks');
      await drop('notify', 'notify_rules');
      for (const names of chunks(upserts('groups'))) {
        await trx.insertInto('agent_groups').values(names.map((name) => ({ name, members: JSON.stringify(r.groups[name]), updated_at: at })))
          .onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({ members: eb.ref('excluded.members'), updated_at: at }))).execute();
      }
      for (const names of chunks(upserts('resources'))) {
        const rows = names.map((name) => {
          const spec = r.resources[name]!;
          const [capacity, window] = spec.pool !== undefined ? [spec.pool, null] : spec.rate!.split('/');
          return {
            name, kind: spec.pool !== undefined ? ('pool' as const) : ('rate' as const), capacity: Number(capacity),
            window_ms: window === null || window === undefined ? null : (parseDuration(window) as number), spec: JSON.stringify(spec), updated_at: at,
          };
        });
        await trx.insertInto('resources').values(rows).onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({
          kind: eb.ref('excluded.kind'), capacity: eb.ref('excluded.capacity'), window_ms: eb.ref('excluded.window_ms'), spec: eb.ref('excluded.spec'), updated_at: at,
        }))).execute();
      }
      for (const names of chunks(upserts('jobs'))) {
        const rows = names.map((name) => ({ name, spec: JSON.stringify(r.jobs[name]), enabled: r.jobs[name]!.enabled === false ? 0 : 1, updated_at: at }));
        await trx.insertInto('jobs').values(rows).onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({
          spec: eb.ref('excluded.spec'), enabled: eb.ref('excluded.enabled'), updated_at: at, revision: eb('jobs.revision', '+', 1),
        }))).execute();
      }
      for (const names of chunks(upserts('checks'))) {
        const rows = names.map((name) => ({ name, spec: JSON.stringify(r.checks[name]), enabled: r.checks[name]!.enabled === false ? 0 : 1, updated_at: at }));
        await trx.insertInto('checks').values(rows).onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({
          spec: eb.ref('excluded.spec'), enabled: eb.ref('excluded.enabled'), updated_at: at,
        }))).execute();
      }
      for (const names of chunks(upserts('notify'))) {
        await trx.insertInto('notify_rules').values(names.map((name) => ({ name, spec: JSON.stringify(r.notify[name]), updated_at: at })))
          .onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({ spec: eb.ref('excluded.spec'), updated_at: at }))).execute();
      }
      for (const changes of chunks(plan.changes)) {
        await trx.insertInto('audit_log').values(changes.map((c) => ({
          at, actor, action: c.action, target: `${c.kind}/${c.name}`, detail: json(c.fields ?? null),
        }))).execute();
      }
    });
  }

  async definitionsVersion(): Promise<number> {
    // The latest audit entry that is a definitions change: a token revoke is audited too, but must not make the
    // engine reload every definition and check its runs created ahead. Read backwards along the primary key, it
    // stops at the first such entry (nearly always the last one).
    if (this.kind === 'sqlite') {
      // Asked at the start of every engine pass (dispatch-latency): a prepared statement, not a compiled query.
      const r = await sqliteDirect(this.conn, false, (prepare) =>
        prepare(`SELECT id AS v FROM audit_log WHERE target NOT LIKE 'tokens/%' ORDER BY id DESC LIMIT 1`).get() as { v: number | null } | undefined);
      return Number(r?.v ?? 0);
    }
    const r = await this.db.selectFrom('audit_log').select('id as v').where('target', 'not like', 'tokens/%').orderBy('id', 'desc').limit(1).executeTakeFirst();
    return Number(r?.v ?? 0);
  }

  // ── Agents ───────────────────────────────────────────────────────────────────────────────────

  async registerAgent(name: string, keyHash: string, at: number): Promise<AgentRecord> {
    return this.tx(async (trx) => {
      const existing = await trx.selectFrom('agents').select('name').where('name', '=', name).executeTakeFirst();
      if (existing) throw new ConflictError(`agent "${name}" is already registered; rotate its key instead, or remove it first`, { name });
      await trx.insertInto('agents').values({ name, key_hash: keyHash, created_at: at }).execute();
      return agentFromRow(await trx.selectFrom('agents').selectAll().where('name', '=', name).executeTakeFirstOrThrow());
    });
  }

  async getAgent(name: string): Promise<AgentRecord | undefined> {
    const row = await this.db.selectFrom('agents').selectAll().where('name', '=', name).executeTakeFirst();
    return row && agentFromRow(row);
  }

  async getAgentKeyHash(name: string): Promise<string | undefined> {
    return (await this.db.selectFrom('agents').select('key_hash').where('name', '=', name).executeTakeFirst())?.key_hash;
  }

  async listAgents(): Promise<AgentRecord[]> {
    return (await this.db.selectFrom('agents').selectAll().orderBy('name').execute()).map(agentFromRow);
  }

  private async updateAgent(name: string, values: { key_hash?: string; enabled?: number }): Promise<void> {
    const r = await this.db.updateTable('agents').set(values).where('name', '=', name).executeTakeFirst();
    if (Number(r.numUpdatedRows) === 0) throw new NotFoundError('agent', name, 'register it with `batchalyzer agent register NAME`');
  }

  setAgentKeyHash(name: string, keyHash: string): Promise<void> {
    return this.updateAgent(name, { key_hash: keyHash });
  }

  async updateAgentLink(name: string, link: AgentLinkUpdate): Promise<void> {
    const values: Record<string, unknown> = {};
    if (link.status !== undefined) values.status = link.status;
    if (link.lastSeenAt !== undefined) values.last_seen_at = link.lastSeenAt;
    if (link.connectedAt !== undefined) values.connected_at = link.connectedAt;
    if (link.version !== undefined) values.version = link.version;
    if (link.facts !== undefined) values.facts = json(link.facts);
    if (link.capabilities !== undefined) values.capabilities = json(link.capabilities);
    if (link.draining !== undefined) values.draining = link.draining ? 1 : 0;
    if (Object.keys(values).length === 0) return;
    const r = await this.db.updateTable('agents').set(values).where('name', '=', name).executeTakeFirst();
    if (Number(r.numUpdatedRows) === 0) throw new NotFoundError('agent', name);
  }

  setAgentEnabled(name: string, enabled: boolean): Promise<void> {
    return this.updateAgent(name, { enabled: enabled ? 1 : 0 });
  }

  async removeAgent(name: string): Promise<void> {
    await this.tx(async (trx) => {
      // `ended_at IS NULL` (true of every run in progress) lets both dialects read the agent's runs in progress
      // through `runs_agent_active` (migration 0006), which holds only those.
      const busy = await trx.selectFrom('runs').select('id').where('agent_name', '=', name).where('state', 'in', ['dispatched', 'running'])
        .where('ended_at', 'is', null).executeTakeFirst();
      if (busy) throw new ConflictError(`agent "${name}" still has run ${busy.id} in progress; disable it and wait for its runs to end first`, { name });
      const r = await trx.deleteFrom('agents').where('name', '=', name).executeTakeFirst();
      if (Number(r.numDeletedRows) === 0) throw new NotFoundError('agent', name);
    });
  }

  // ── Runs ─────────────────────────────────────────────────────────────────────────────────────

  async createRuns(runs: NewRun[], actor: string, at: number): Promise<RunRecord[]> {
    if (runs.length === 0) return [];
    return this.tx((trx) => this.insertRuns(trx, runs, actor, at));
  }

  /**
   * Inserts runs and their creation events in bulk (bulk-writes.ts): a plan tick that makes 10,000 occurrences due
   * must stay well under 100 ms (docs/performance.md, plan-100k). Ids are assigned in input order on both dialects
   * (the write lock is held). The records share the caller's spec objects: the stored text is their JSON, and
   * nothing changes a run's spec in place.
   */
  private async insertRuns(trx: Kysely<DB>, runs: NewRun[], actor: string, at: number): Promise<RunRecord[]> {
    if (runs.length === 0) return [];
    const specOf = specTexts(this.loadedSpecs);
    const ids = this.kind === 'sqlite' ? insertRunsSqlite(this.prepare, runs, specOf, actor, at) : await insertRunsPostgres(trx, runs, specOf, actor, at);
    return runs.map((r, k) => newRunRecord(r, ids[k]!, at));
  }

  /** The job specs last loaded and their texts: a run's stored spec is that text (bulk-writes.ts, specTexts). */
  private loadedSpecs: LoadedSpecs | null = null;

  /** SQLite: the one connection's cached statements, for writes inside a transaction that holds it. */
  private readonly prepare = (text: string) => this.conn.statements!.prepare(text);

  // ── Plan days ────────────────────────────────────────────────────────────────────────────────

  async createPlanDay(day: PlanDayRecord, entries: PlanEntryRecord[]): Promise<boolean> {
    return this.tx(async (trx) => {
      const r = await trx.insertInto('plan_days').values({
        plan_date: day.planDate, timezone: day.timezone, starts_at: day.startsAt, ends_at: day.endsAt, loaded_at: day.loadedAt,
      }).onConflict((oc) => oc.column('plan_date').doNothing()).executeTakeFirst();
      if (Number(r.numInsertedOrUpdatedRows ?? 0) === 0) return false;
      await this.writeEntries(trx, entries);
      return true;
    });
  }

  /** Upserts entries with fixed statement texts: a plan day of 100,000 jobs is 100 statements, each prepared once (plan-100k). */
  private async writeEntries(trx: Kysely<DB>, entries: PlanEntryRecord[]): Promise<void> {
    if (this.kind === 'postgres') await writeEntriesPostgres(trx, entries);
    else writeEntriesSqlite(this.prepare, entries);
  }

  async planDays(): Promise<PlanDayRecord[]> {
    const rows = await this.db.selectFrom('plan_days').selectAll().orderBy('plan_date').execute();
    return rows.map((r) => ({ planDate: r.plan_date, timezone: r.timezone, startsAt: r.starts_at, endsAt: r.ends_at, loadedAt: r.loaded_at }));
  }

  private entriesFrom(rows: Selectable<DB['plan_entries']>[]): PlanEntryRecord[] {
    return rows.map((r) => ({ planDate: r.plan_date, jobName: r.job_name, nextDueAt: r.next_due_at, lastNominalAt: r.last_nominal_at, jobRevision: r.job_revision }));
  }

  async pendingPlanEntries(): Promise<PlanEntryRecord[]> {
    return this.entriesFrom(await this.db.selectFrom('plan_entries').selectAll().where('next_due_at', 'is not', null).execute());
  }

  async planEntries(planDate: string): Promise<PlanEntryRecord[]> {
    return this.entriesFrom(await this.db.selectFrom('plan_entries').selectAll().where('plan_date', '=', planDate).orderBy('job_name').execute());
  }

  async upsertPlanEntries(entries: PlanEntryRecord[]): Promise<void> {
    if (entries.length) await this.tx((trx) => this.writeEntries(trx, entries));
  }

  async advancePlan(entries: PlanEntryRecord[], runs: NewRun[], actor: string, at: number): Promise<RunRecord[]> {
    return this.tx(async (trx) => {
      await this.writeEntries(trx, entries);
      return this.insertRuns(trx, runs, actor, at);
    });
  }

  async withdrawEarlyRuns(runIds: number[], entries: PlanEntryRecord[]): Promise<void> {
    if (runIds.length === 0 && entries.length === 0) return;
    // Runs and entry moves commit together: a crash leaves either the early runs with their entries past them, or
    // neither run nor move (the entries then make the occurrences again), never an occurrence twice or not at all.
    await this.tx(async (trx) => {
      const removed = new Set<number>();
      for (let i = 0; i < runIds.length; i += 1000) {
        const part = runIds.slice(i, i + 1000);
        // Events, steps and holds go with the row (ON DELETE CASCADE), so only a run nothing has happened to may go:
        // the same facts the engine checks (ahead.ts, untouchedAhead), here as a backstop. A run waiting for a
        // retry has attempt > 1; one put back after a dispatch, held and released, or retried has updated_at past
        // created_at (every UPDATE of a run's state, hold, attempt or agent sets updated_at; wait reasons and
        // output counters do not); one made when due has created_at >= nominal_at. Timestamps are milliseconds: a
        // hold and release within the creation millisecond, or a clock stepped back, leaves updated_at equal to
        // created_at, so a run with any event besides its creation (the only one with no from_state) is refused too.
        const r = await trx.deleteFrom('runs').where('id', 'in', part).where('state', '=', 'waiting').where('held', '=', 0)
          .where('origin', '=', 'schedule').where('attempt', '=', 1).whereRef('updated_at', '=', 'created_at').whereRef('created_at', '<', 'nominal_at')
          .where(sql<boolean>`NOT EXISTS (SELECT 1 FROM run_events WHERE run_events.run_id = runs.id AND run_events.from_state IS NOT NULL)`)
          .returning('id').execute();
        for (const row of r) removed.add(Number(row.id));
      }
      if (removed.size !== runIds.length) throw new EarlyRunTouchedError(runIds.length, removed.size, runIds.filter((id) => !removed.has(id)));
      await this.writeEntries(trx, entries);
    });
  }

  async lastOccurrenceAt(planDate: string, jobName: string, except: number[]): Promise<number | null> {
    // Through runs_job_id: the job's retained runs, not the plan day's (withdrawals only, a few entries a change).
    let q = this.db.selectFrom('runs').select((eb) => eb.fn.max('nominal_at').as('last'))
      .where('job_name', '=', jobName).where('plan_date', '=', planDate).where('origin', 'in', ['schedule', 'catch-up']);
    if (except.length) q = q.where('id', 'not in', except);
    const row = await q.executeTakeFirst();
    return row?.last == null ? null : Number(row.last);
  }

  async activeRuns(): Promise<RunRecord[]> {
    return (await this.db.selectFrom('runs').selectAll().where('state', 'in', ['waiting', 'dispatched', 'running']).orderBy('id').execute()).map(runFromRow);
  }

  async setWaitReasons(items: { runId: number; reason: unknown }[]): Promise<void> {
    if (items.length === 0) return;
    // Reasons are shared objects (runs waiting for the same thing): each serialised once.
    const texts = new Map<unknown, string | null>();
    const textOf = (reason: unknown) => {
      let t = texts.get(reason);
      if (t === undefined) texts.set(reason, (t = json(reason)));
      return t;
    };
    if (this.kind === 'sqlite') {
      await sqliteDirect(this.conn, true, (prepare) => setWaitReasonsSqlite(prepare, items));
      return;
    }
    // UPDATE … FROM takes an arbitrary one of several rows for the same id (PostgreSQL documents it): a run
    // listed twice keeps the last reason given only if each id is sent once.
    const unique = [...new Map(items.map((i) => [i.runId, i])).values()];
    await this.tx(async (trx) => {
      for (let k = 0; k < unique.length; k += 10_000) {
        const part = unique.slice(k, k + 10_000);
        await trx.executeQuery(CompiledQuery.raw(
          `UPDATE runs SET wait_reason = v.reason FROM unnest($1::bigint[], $2::text[]) AS v (id, reason)
          WHERE v.id = runs.id AND runs.state = 'waiting'`,
          [part.map((i) => i.runId), part.map((i) => textOf(i.reason))],
        ));
      }
    });
  }

  async allResourceHolds(): Promise<{ runId: number; resource: string; units: number }[]> {
    const rows = await this.db.selectFrom('resource_holds').select(['run_id', 'resource', 'units']).orderBy('run_id').execute();
    return rows.map((r) => ({ runId: r.run_id, resource: r.resource, units: r.units }));
  }

  async rateTakesAfter(since: number): Promise<{ resource: string; at: number }[]> {
    return this.db.selectFrom('rate_takes').select(['resource', 'at']).where('at', '>', since).orderBy('at').execute();
  }

  async pruneBefore(before: number, planDateBefore: string): Promise<{ runs: number }> {
    const ended = (trx: Kysely<DB>) => trx.deleteFrom('runs').where('ended_at', '<', before).where('state', 'not in', ['waiting', 'dispatched', 'running']);
    const out = await this.tx(async (trx) => {
      // With output files, the runs that had output say which files to delete once the rows are gone (a run with
      // no output has no file: most runs of a busy day).
      const rows = this.files ? await ended(trx).returning(['id', 'output_bytes']).execute() : undefined;
      const n = rows ? rows.length : Number((await ended(trx).executeTakeFirst()).numDeletedRows);
      await trx.deleteFrom('plan_entries').where('plan_date', '<', planDateBefore).execute();
      await trx.deleteFrom('plan_days').where('plan_date', '<', planDateBefore).execute();
      await trx.deleteFrom('conditions').where('plan_date', '<', planDateBefore).execute();
      await trx.deleteFrom('rate_takes').where('at', '<', before).execute();
      return { runs: n, ids: rows?.filter((r) => Number(r.output_bytes) > 0).map((r) => r.id) };
    });
    if (this.files && out.ids) {
      // After the commit, in the background (this runs inside the scheduling pass, and 100,000 pruned runs were
      // 200,000 file system round trips before the new day's first dispatch): a kill in between leaves files of
      // deleted runs, which a later prune removes with their whole shard once no run below it is left (ids are
      // never reused: AUTOINCREMENT). output_bytes counts every stored chunk, so a run with a file has bytes > 0.
      const oldest = await this.db.selectFrom('runs').select((eb) => eb.fn.min('id').as('id')).executeTakeFirst();
      const next = await sql<{ seq: number }>`SELECT seq FROM sqlite_sequence WHERE name = 'runs'`.execute(this.db);
      this.files.removeLater(out.ids, Number(oldest?.id ?? (next.rows[0]?.seq ?? 0) + 1));
    }
    return { runs: out.runs };
  }

  async getRun(id: number): Promise<RunRecord | undefined> {
    if (this.kind === 'sqlite') {
      const row = await sqliteDirect(this.conn, false, (prepare) => prepare('SELECT * FROM runs WHERE id = ?').get(id) as Selectable<DB['runs']> | undefined);
      return row && runFromRow(row);
    }
    const row = await this.db.selectFrom('runs').selectAll().where('id', '=', id).executeTakeFirst();
    return row && runFromRow(row);
  }

  async listRuns(filter: RunFilter, page: { limit: number; before?: number }): Promise<Page<RunRecord>> {
    let q = this.db.selectFrom('runs').selectAll();
    if (filter.state?.length) q = q.where('state', 'in', filter.state);
    if (filter.job !== undefined) q = q.where('job_name', '=', filter.job);
    if (filter.planDate !== undefined) q = q.where('plan_date', '=', filter.planDate);
    if (filter.agent !== undefined) q = q.where('agent_name', '=', filter.agent);
    // An agent's runs in progress (a lost agent's, agents/hub.ts) through `runs_agent_active` (migration 0006),
    // which holds only runs not ended: the condition adds nothing (no active run has ended), it lets the planner
    // use that partial index.
    if (filter.agent !== undefined && filter.state?.length && filter.state.every((s) => ACTIVE_STATES.includes(s))) q = q.where('ended_at', 'is', null);
    if (page.before !== undefined) q = q.where('id', '<', page.before);
    const rows = await q.orderBy('id', 'desc').limit(page.limit + 1).execute();
    const items = rows.slice(0, page.limit).map(runFromRow);
    return rows.length > page.limit ? { items, next: items[items.length - 1]!.id } : { items };
  }

  async runEvents(id: number): Promise<RunEvent[]> {
    const rows = await this.db.selectFrom('run_events').selectAll().where('run_id', '=', id).orderBy('id').execute();
    return rows.map((r) => ({ at: r.at, fromState: r.from_state as RunState | null, toState: r.to_state as RunState, actor: r.actor, detail: parse(r.detail) }));
  }

  async dispatchRun(input: { runId: number; agent: string; at: number; actor: string; pools: PoolTake[]; rates: RateTake[] }): Promise<DispatchResult> {
    const { runId, agent, at, actor } = input;
    const refused = (result: DispatchResult) => {
      throw new Refusal(result);
    };
    if (this.kind === 'sqlite') {
      // Every dispatch, as hand-written cached statements (building and compiling the queries cost more than
      // running them: dispatch-latency, e2e-true); same claim, same capacity re-check, same rows as below.
      // SQLite's write lock (BEGIN IMMEDIATE) serialises the re-check with every other dispatch.
      try {
        return await sqliteDirect(this.conn, true, (prepare) => {
          const claimed = prepare(`UPDATE runs SET state = 'dispatched', agent_name = ?, dispatched_at = ?, wait_reason = NULL, updated_at = ?
            WHERE id = ? AND state = 'waiting' AND held = 0`).run(agent, at, at, runId).changes > 0;
          if (!claimed) {
            const run = prepare('SELECT state, held FROM runs WHERE id = ?').get(runId) as { state: string; held: number } | undefined;
            return { ok: false, reason: run?.state === 'waiting' && run.held ? 'held' : 'not-waiting' } as const;
          }
          for (const p of input.pools) {
            const used = prepare('SELECT coalesce(sum(units), 0) AS u FROM resource_holds WHERE resource = ?').get(p.resource) as { u: number };
            if (Number(used.u) + p.units > p.capacity) refused({ ok: false, reason: 'pool-full', resource: p.resource });
          }
          for (const r of input.rates) {
            const taken = prepare('SELECT count(*) AS n FROM rate_takes WHERE resource = ? AND at > ?').get(r.resource, at - r.windowMs) as { n: number };
            if (Number(taken.n) + 1 > r.capacity) refused({ ok: false, reason: 'rate-exhausted', resource: r.resource });
          }
          for (const p of input.pools) {
            prepare('INSERT INTO resource_holds (run_id, resource, units, acquired_at) VALUES (?, ?, ?, ?)').run(runId, p.resource, p.units, at);
          }
          for (const r of input.rates) prepare('INSERT INTO rate_takes (resource, at, run_id) VALUES (?, ?, ?)').run(r.resource, at, runId);
          prepare(`INSERT INTO run_events (run_id, at, from_state, to_state, actor, detail) VALUES (?, ?, 'waiting', 'dispatched', ?, ?)`)
            .run(runId, at, actor, json({ agent }));
          return { ok: true } as const;
        });
      } catch (err) {
        if (err instanceof Refusal) return err.result;
        throw err;
      }
    }
    try {
      return await this.tx(async (trx) => {
        // Claim the run first: the row lock makes a concurrent dispatch of the same run wait, then find it taken.
        const row = await trx.updateTable('runs')
          .set({ state: 'dispatched', agent_name: agent, dispatched_at: at, wait_reason: null, updated_at: at })
          .where('id', '=', runId).where('state', '=', 'waiting').where('held', '=', 0).returning('id').executeTakeFirst();
        if (!row) {
          const run = await trx.selectFrom('runs').select(['state', 'held']).where('id', '=', runId).executeTakeFirst();
          return refused({ ok: false, reason: run?.state === 'waiting' && run.held ? 'held' : 'not-waiting' });
        }
        // Re-check capacity inside the transaction: the decision may have been made on a stale snapshot.
        await lockResources(this.conn, trx, [...input.pools, ...input.rates].map((r) => r.resource));
        for (const p of input.pools) {
          const used = await trx.selectFrom('resource_holds').select((eb) => eb.fn.coalesce(eb.fn.sum<number>('units'), eb.lit(0)).as('u'))
            .where('resource', '=', p.resource).executeTakeFirst();
          if (Number(used?.u ?? 0) + p.units > p.capacity) refused({ ok: false, reason: 'pool-full', resource: p.resource });
        }
        for (const r of input.rates) {
          const taken = await trx.selectFrom('rate_takes').select((eb) => eb.fn.countAll<number>().as('n'))
            .where('resource', '=', r.resource).where('at', '>', at - r.windowMs).executeTakeFirst();
          if (Number(taken?.n ?? 0) + 1 > r.capacity) refused({ ok: false, reason: 'rate-exhausted', resource: r.resource });
        }
        for (const p of input.pools) {
          await trx.insertInto('resource_holds').values({ run_id: runId, resource: p.resource, units: p.units, acquired_at: at }).execute();
        }
        for (const r of input.rates) await trx.insertInto('rate_takes').values({ resource: r.resource, at, run_id: runId }).execute();
        await trx.insertInto('run_events').values({ run_id: runId, at, from_state: 'waiting', to_state: 'dispatched', actor, detail: json({ agent }) }).execute();
        return { ok: true } as const;
      });
    } catch (err) {
      if (err instanceof Refusal) return err.result;
      throw err;
    }
  }

  async startRun(runId: number, at: number): Promise<boolean> {
    // Only the agent's name comes back (for the event's actor): the engine holds the run and applies the change itself.
    if (this.kind === 'sqlite') {
      return sqliteDirect(this.conn, true, (prepare) => {
        const r = prepare(`UPDATE runs SET state = 'running', started_at = ?, updated_at = ? WHERE id = ? AND state = 'dispatched' RETURNING agent_name`)
          .get(at, at, runId) as { agent_name: string | null } | undefined;
        if (!r) return false;
        prepare(`INSERT INTO run_events (run_id, at, from_state, to_state, actor, detail) VALUES (?, ?, 'dispatched', 'running', ?, NULL)`)
          .run(runId, at, `agent:${r.agent_name}`);
        return true;
      });
    }
    return this.tx(async (trx) => {
      const row = await trx.updateTable('runs').set({ state: 'running', started_at: at, updated_at: at })
        .where('id', '=', runId).where('state', '=', 'dispatched').returning('agent_name').executeTakeFirst();
      if (!row) return false;
      await trx.insertInto('run_events').values({ run_id: runId, at, from_state: 'dispatched', to_state: 'running', actor: `agent:${row.agent_name}`, detail: null }).execute();
      return true;
    });
  }

  async finishRun(input: FinishRun): Promise<FinishResult> {
    if (this.kind === 'sqlite' && !input.post?.length) {
      // Every run's end, as hand-written cached statements (e2e-true); same rows as below. Posting conditions
      // (postIn) stays on the query builder.
      return sqliteDirect(this.conn, true, (prepare) => {
        const before = prepare('SELECT * FROM runs WHERE id = ?').get(input.runId) as Selectable<DB['runs']> | undefined;
        if (!before) throw new NotFoundError('run', input.runId);
        const from = input.onlyFrom ?? ['waiting', 'dispatched', 'running'];
        if (!from.includes(before.state as RunState)) return { run: runFromRow(before), changed: false, posted: [] };
        const row = prepare(`UPDATE runs SET state = ?, ended_at = ?, updated_at = ?, exit_code = ?, signal = ?, end_reason = ?, result = ?
          WHERE id = ? RETURNING *`).get(input.state, input.at, input.at, input.exitCode ?? null, input.signal ?? null, input.reason ?? null, json(input.result), input.runId) as Selectable<DB['runs']>;
        prepare('INSERT INTO run_events (run_id, at, from_state, to_state, actor, detail) VALUES (?, ?, ?, ?, ?, ?)').run(
          input.runId, input.at, before.state, input.state, input.actor, json({ exitCode: input.exitCode ?? null, signal: input.signal ?? null, reason: input.reason ?? null }),
        );
        prepare('DELETE FROM resource_holds WHERE run_id = ?').run(input.runId);
        return { run: runFromRow(row), changed: true, posted: [] };
      });
    }
    return this.tx(async (trx) => {
      const before = await trx.selectFrom('runs').selectAll().where('id', '=', input.runId).executeTakeFirst();
      if (!before) throw new NotFoundError('run', input.runId);
      const from = input.onlyFrom ?? ['waiting', 'dispatched', 'running'];
      if (!from.includes(before.state as RunState)) return { run: runFromRow(before), changed: false, posted: [] };
      const row = await trx.updateTable('runs').set({
        state: input.state, ended_at: input.at, updated_at: input.at, exit_code: input.exitCode ?? null, signal: input.signal ?? null,
        end_reason: input.reason ?? null, result: json(input.result),
      }).where('id', '=', input.runId).returningAll().executeTakeFirstOrThrow();
      await trx.insertInto('run_events').values({
        run_id: input.runId, at: input.at, from_state: before.state, to_state: input.state, actor: input.actor,
        detail: json({ exitCode: input.exitCode ?? null, signal: input.signal ?? null, reason: input.reason ?? null }),
      }).execute();
      await trx.deleteFrom('resource_holds').where('run_id', '=', input.runId).execute();
      const posted: ConditionRef[] = [];
      for (const c of input.post ?? []) {
        if (await this.postIn(trx, { ...c, actor: input.actor, at: input.at, runId: input.runId })) posted.push(c);
      }
      return { run: runFromRow(row), changed: true, posted };
    });
  }

  async retryRun(input: { runId: number; at: number; dueAt: number; actor: string; reason: string; exitCode?: number | null; signal?: string | null }): Promise<RunRecord | undefined> {
    return this.tx(async (trx) => {
      const before = await trx.selectFrom('runs').select(['state', 'attempt']).where('id', '=', input.runId).executeTakeFirst();
      if (!before || !['dispatched', 'running'].includes(before.state)) return undefined;
      const row = await trx.updateTable('runs').set({
        state: 'waiting', attempt: before.attempt + 1, due_at: input.dueAt, agent_name: null, dispatched_at: null, started_at: null,
        updated_at: input.at,
      }).where('id', '=', input.runId).returningAll().executeTakeFirstOrThrow();
      await trx.insertInto('run_events').values({
        run_id: input.runId, at: input.at, from_state: before.state, to_state: 'waiting', actor: input.actor,
        detail: json({ attempt: before.attempt, reason: input.reason, exitCode: input.exitCode ?? null, signal: input.signal ?? null, retryAt: input.dueAt }),
      }).execute();
      await trx.deleteFrom('resource_holds').where('run_id', '=', input.runId).execute();
      return runFromRow(row);
    });
  }

  async requeueRun(input: { runId: number; at: number; actor: string; reason: string }): Promise<RunRecord | undefined> {
    return this.tx(async (trx) => {
      const row = await trx.updateTable('runs').set({ state: 'waiting', agent_name: null, dispatched_at: null, updated_at: input.at })
        .where('id', '=', input.runId).where('state', '=', 'dispatched').returningAll().executeTakeFirst();
      if (!row) return undefined;
      await trx.insertInto('run_events').values({ run_id: input.runId, at: input.at, from_state: 'dispatched', to_state: 'waiting', actor: input.actor, detail: json({ reason: input.reason }) }).execute();
      await trx.deleteFrom('resource_holds').where('run_id', '=', input.runId).execute();
      return runFromRow(row);
    });
  }

  async setRunHeld(runId: number, held: boolean, actor: string, at: number): Promise<RunRecord | undefined> {
    return this.tx(async (trx) => {
      const row = await trx.updateTable('runs').set({ held: held ? 1 : 0, updated_at: at })
        .where('id', '=', runId).where('state', '=', 'waiting').returningAll().executeTakeFirst();
      if (row) await trx.insertInto('run_events').values({ run_id: runId, at, from_state: 'waiting', to_state: 'waiting', actor, detail: json({ held }) }).execute();
      return row && runFromRow(row);
    });
  }

  async resourceUsage(): Promise<Record<string, number>> {
    const rows = await this.db.selectFrom('resource_holds').select((eb) => ['resource', eb.fn.sum<number>('units').as('units')]).groupBy('resource').execute();
    return Object.fromEntries(rows.map((r) => [r.resource, Number(r.units)]));
  }

  async resourceHolders(resource: string): Promise<{ runId: number; units: number }[]> {
    const rows = await this.db.selectFrom('resource_holds').select(['run_id', 'units']).where('resource', '=', resource).orderBy('run_id').execute();
    return rows.map((r) => ({ runId: r.run_id, units: r.units }));
  }

  async rateTakesSince(resource: string, since: number): Promise<number> {
    const r = await this.db.selectFrom('rate_takes').select((eb) => eb.fn.countAll<number>().as('n')).where('resource', '=', resource).where('at', '>', since).executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  // ── Output ───────────────────────────────────────────────────────────────────────────────────

  async appendOutput(chunks: OutputChunk[]): Promise<number> {
    if (chunks.length === 0) return 0;
    if (this.kind === 'sqlite') {
      // Cached statements: a batch of bulk output is one transaction with no query building (output-stream).
      const files = this.files;
      // Files this transaction writes, and their sizes before it: cut back if it does not commit (output-files.ts).
      const touched: Touched = new Map();
      return sqliteDirect(this.conn, true, (prepare) => {
        const insert = files
          ? prepare('INSERT INTO run_output (run_id, stream, seq, at, data, file_offset, file_length) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, stream, seq) DO NOTHING')
          : prepare('INSERT INTO run_output (run_id, stream, seq, at, data) VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, stream, seq) DO NOTHING');
        const bytes = new Map<number, number>();
        let added = 0;
        for (const c of chunks) {
          let inserted: boolean;
          if (files && c.data.length > 0) {
            inserted = this.appendToFile(prepare, insert, files, touched, c);
          } else {
            inserted = (files ? insert.run(c.runId, c.stream, c.seq, c.at, c.data, null, null) : insert.run(c.runId, c.stream, c.seq, c.at, c.data)).changes > 0;
          }
          if (inserted) {
            added++;
            bytes.set(c.runId, (bytes.get(c.runId) ?? 0) + c.data.length);
          }
        }
        const update = prepare('UPDATE runs SET output_bytes = output_bytes + ? WHERE id = ?');
        for (const [runId, n] of bytes) update.run(n, runId);
        return added;
        // A failed COMMIT may still have committed (an I/O error after the commit frame reached the WAL): its files
        // are only closed, and their next opening cuts them to what the index really holds. Otherwise nothing
        // committed, and the bytes are cut off at once.
      }, files && ((commitFailed) => (commitFailed ? files.forget(touched) : files.rollback(touched))));
    }
    return this.tx(async (trx) => {
      let added = 0;
      const bytes = new Map<number, number>();
      for (const c of chunks) {
        const r = await trx.insertInto('run_output').values({ run_id: c.runId, stream: c.stream, seq: c.seq, at: c.at, data: c.data })
          .onConflict((oc) => oc.columns(['run_id', 'stream', 'seq']).doNothing()).executeTakeFirst();
        if (Number(r.numInsertedOrUpdatedRows ?? 0) > 0) {
          added++;
          bytes.set(c.runId, (bytes.get(c.runId) ?? 0) + c.data.length);
        }
      }
      for (const [runId, n] of bytes) {
        await trx.updateTable('runs').set((eb) => ({ output_bytes: eb('output_bytes', '+', n) })).where('id', '=', runId).execute();
      }
      return added;
    });
  }

  /**
   * One chunk into its run's file, inside the output transaction. Order: the index row first (a chunk already
   * stored, or an unknown run, stops here with nothing written and no file created), then the bytes, then the
   * commit after the batch: a committed row always points at written bytes. A file open in this process gives its
   * offset up front (one statement, the steady stream); else the row gets its range once `end` opened the file.
   * A file that cannot be written (permissions, a full disk, no descriptors) costs that chunk its file, not the
   * batch: the bytes go into the row as a blob, which readOutput reads in order with the rest. Failing the batch
   * made the agent re-send it forever and held up every later report of that agent.
   */
  private appendToFile(prepare: (sql: string) => Database.Statement, insert: Database.Statement, files: OutputFiles, touched: Touched, c: OutputChunk): boolean {
    const known = files.openEnd(c.runId, c.stream, touched);
    if (insert.run(c.runId, c.stream, c.seq, c.at, EMPTY, known ?? null, known === undefined ? null : c.data.length).changes === 0) return false;
    try {
      const offset = known ?? files.end(c.runId, c.stream, () => this.indexedEnd(prepare, c.runId, c.stream), touched);
      files.append(c.runId, c.stream, c.data, offset);
      if (known === undefined) {
        prepare('UPDATE run_output SET file_offset = ?, file_length = ? WHERE run_id = ? AND stream = ? AND seq = ?').run(offset, c.data.length, c.runId, c.stream, c.seq);
      }
    } catch (err) {
      if (!(err instanceof OutputFileError)) throw err;
      files.fellBack(c.runId, c.stream, err);
      prepare('UPDATE run_output SET data = ?, file_offset = NULL, file_length = NULL WHERE run_id = ? AND stream = ? AND seq = ?').run(c.data, c.runId, c.stream, c.seq);
    }
    return true;
  }

  /** Where the run's committed file output ends (output-files.ts cuts off anything past it when it opens the file). */
  private indexedEnd(prepare: (sql: string) => { get(...args: unknown[]): unknown }, runId: number, stream: string): number {
    const row = prepare('SELECT max(file_offset + file_length) AS e FROM run_output WHERE run_id = ? AND stream = ?').get(runId, stream) as { e: number | null };
    return row.e ?? 0;
  }

  async readOutput(runId: number, stream: 'stdout' | 'stderr'): Promise<Buffer> {
    const rows = await this.db.selectFrom('run_output').select(['data', 'file_offset', 'file_length']).where('run_id', '=', runId).where('stream', '=', stream).orderBy('seq').execute();
    if (!this.files || rows.every((r) => r.file_offset === null)) return Buffer.concat(rows.map((r) => r.data));
    const ranges = rows.filter((r) => r.file_offset !== null).map((r) => ({ offset: r.file_offset!, length: r.file_length! }));
    const fromFile = await this.files.read(runId, stream, ranges);
    let i = 0;
    return Buffer.concat(rows.map((r) => (r.file_offset === null ? r.data : fromFile[i++]!)));
  }

  async markOutputTruncated(runId: number): Promise<void> {
    await this.db.updateTable('runs').set({ output_truncated: 1 }).where('id', '=', runId).execute();
  }

  async appendRunSteps(steps: RunStep[]): Promise<number> {
    if (steps.length === 0) return 0;
    return this.tx(async (trx) => {
      let added = 0;
      for (const st of steps) {
        const r = await trx.insertInto('run_steps').values({ run_id: st.runId, seq: st.seq, at: st.at, kind: st.kind, text: st.text, data: json(st.data) })
          .onConflict((oc) => oc.columns(['run_id', 'seq']).doNothing()).executeTakeFirst();
        added += Number(r.numInsertedOrUpdatedRows ?? 0) > 0 ? 1 : 0;
      }
      return added;
    });
  }

  async runSteps(runId: number): Promise<RunStep[]> {
    const rows = await this.db.selectFrom('run_steps').selectAll().where('run_id', '=', runId).orderBy('seq').execute();
    return rows.map((r) => ({ runId: r.run_id, seq: r.seq, at: r.at, kind: r.kind as RunStep['kind'], text: r.text, data: parse(r.data) ?? undefined }));
  }

  // ── Conditions ───────────────────────────────────────────────────────────────────────────────

  private async postIn(trx: Kysely<DB>, c: ConditionRef & { actor: string; at: number; runId?: number | null }): Promise<boolean> {
    const r = await trx.insertInto('conditions').values({ name: c.name, plan_date: c.planDate, posted_at: c.at, run_id: c.runId ?? null, actor: c.actor })
      .onConflict((oc) => oc.columns(['name', 'plan_date']).doNothing()).executeTakeFirst();
    const added = Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
    if (added) {
      await trx.insertInto('condition_events').values({ name: c.name, plan_date: c.planDate, action: 'post', at: c.at, actor: c.actor, run_id: c.runId ?? null }).execute();
    }
    return added;
  }

  postCondition(c: ConditionRef & { actor: string; at: number; runId?: number | null }): Promise<boolean> {
    return this.tx((trx) => this.postIn(trx, c));
  }

  async removeCondition(c: ConditionRef & { actor: string; at: number }): Promise<boolean> {
    return this.tx(async (trx) => {
      const r = await trx.deleteFrom('conditions').where('name', '=', c.name).where('plan_date', '=', c.planDate).executeTakeFirst();
      const removed = Number(r.numDeletedRows) > 0;
      if (removed) {
        await trx.insertInto('condition_events').values({ name: c.name, plan_date: c.planDate, action: 'remove', at: c.at, actor: c.actor, run_id: null }).execute();
      }
      return removed;
    });
  }

  async listConditions(filter: { planDate?: string; name?: string }): Promise<ConditionRecord[]> {
    let q = this.db.selectFrom('conditions').selectAll();
    if (filter.planDate !== undefined) q = q.where('plan_date', '=', filter.planDate);
    if (filter.name !== undefined) q = q.where('name', '=', filter.name);
    const rows = await q.orderBy('plan_date').orderBy('name').execute();
    return rows.map((r) => ({ name: r.name, planDate: r.plan_date, postedAt: r.posted_at, runId: r.run_id, actor: r.actor }));
  }
}

export { LATEST_SCHEMA_VERSION };
