import { sql } from 'kysely';
import { ConflictError } from '@batchalyzer/core';
import { sqliteDirect } from './connection.js';
import { messageFromRow, tokenFromRow } from './rows.js';
import { json, parse, SqlBase } from './sql-base.js';
import type { CheckValue, MessageEvent, MessageRecord, MessageStatus, Page, RaiseMessage, Role, TokenRecord } from './port.js';

/** Messages, check values, tokens and users: the store's records beside the run lifecycle (SqlStore: sql-store.ts). */
export abstract class SqlRecords extends SqlBase {
  // ── Messages ─────────────────────────────────────────────────────────────────────────────────

  async raiseMessage(m: RaiseMessage): Promise<{ message: MessageRecord; created: boolean }> {
    return this.tx(async (trx) => {
      const live = await trx.selectFrom('messages').selectAll().where('key', '=', m.key).where('status', '<>', 'resolved').executeTakeFirst();
      if (live) {
        const row = await trx.updateTable('messages').set((eb) => ({
          count: eb('count', '+', 1), last_at: m.at, severity: m.severity, text: m.text,
        })).where('id', '=', live.id).returningAll().executeTakeFirstOrThrow();
        const detail = live.severity !== m.severity ? { from: live.severity, to: m.severity } : { count: row.count };
        await trx.insertInto('message_events').values({ message_id: live.id, at: m.at, actor: m.actor, action: live.severity !== m.severity ? 'severity' : 'repeat', detail: json(detail) }).execute();
        return { message: messageFromRow(row), created: false };
      }
      const row = await trx.insertInto('messages').values({
        key: m.key, severity: m.severity, source: m.source, source_ref: m.sourceRef ?? null, agent_name: m.agentName ?? null,
        job_name: m.jobName ?? null, text: m.text, status: 'open', parent_id: null, first_at: m.at, last_at: m.at,
        deferred_until: null, resolved_at: null,
      }).returningAll().executeTakeFirstOrThrow();
      await trx.insertInto('message_events').values({ message_id: row.id, at: m.at, actor: m.actor, action: 'open', detail: json({ text: m.text }) }).execute();
      return { message: messageFromRow(row), created: true };
    });
  }

  async resolveMessage(key: string, actor: string, at: number, why?: string): Promise<MessageRecord | undefined> {
    if (this.kind === 'sqlite') {
      // Asked after every successful run, nearly always to find nothing open: a cached statement (e2e-true).
      const open = await sqliteDirect(this.conn, false, (prepare) => prepare(`SELECT id FROM messages WHERE key = ? AND status <> 'resolved'`).get(key) as { id: number } | undefined);
      return open ? this.setMessageStatus(open.id, 'resolved', actor, at, null, why) : undefined;
    }
    const live = await this.db.selectFrom('messages').select('id').where('key', '=', key).where('status', '<>', 'resolved').executeTakeFirst();
    if (!live) return undefined;
    return this.setMessageStatus(live.id, 'resolved', actor, at, null, why);
  }

  async setMessageStatus(id: number, status: MessageStatus, actor: string, at: number, until?: number | null, why?: string): Promise<MessageRecord | undefined> {
    if (status === 'deferred' && (until === undefined || until === null)) {
      throw new ConflictError('deferring a message needs a time until which it stays deferred', { id });
    }
    return this.tx(async (trx) => {
      const row = await trx.updateTable('messages').set({
        status, deferred_until: status === 'deferred' ? until! : null, resolved_at: status === 'resolved' ? at : null,
      }).where('id', '=', id).where('status', '<>', 'resolved').returningAll().executeTakeFirst();
      if (row) {
        await trx.insertInto('message_events').values({ message_id: id, at, actor, action: status, detail: json({ until: until ?? null, why: why ?? null }) }).execute();
      }
      return row && messageFromRow(row);
    });
  }

  async listMessages(filter: { status?: MessageStatus[] }, page: { limit: number; before?: number }): Promise<Page<MessageRecord>> {
    let q = this.db.selectFrom('messages').selectAll();
    if (filter.status?.length) q = q.where('status', 'in', filter.status);
    if (page.before !== undefined) q = q.where('id', '<', page.before);
    const rows = await q.orderBy('id', 'desc').limit(page.limit + 1).execute();
    const items = rows.slice(0, page.limit).map(messageFromRow);
    return rows.length > page.limit ? { items, next: items[items.length - 1]!.id } : { items };
  }

  async messageEvents(id: number): Promise<MessageEvent[]> {
    const rows = await this.db.selectFrom('message_events').selectAll().where('message_id', '=', id).orderBy('id').execute();
    return rows.map((r) => ({ at: r.at, actor: r.actor, action: r.action, detail: parse(r.detail) }));
  }

  // ── Checks ───────────────────────────────────────────────────────────────────────────────────

  async recordCheckValues(values: CheckValue[]): Promise<void> {
    if (values.length === 0) return;
    if (this.kind === 'postgres') {
      // One statement per 10,000 values with one array parameter per column (INSERT … SELECT unnest): about three
      // times the rows/s of multi-row VALUES on PostgreSQL (STACK.md; bench check-ingest).
      await this.tx(async (trx) => {
        for (let i = 0; i < values.length; i += 10_000) {
          const part = values.slice(i, i + 10_000);
          await sql`INSERT INTO check_values (check_name, agent_name, series, at, value, state)
            SELECT * FROM unnest(${part.map((v) => v.checkName)}::text[], ${part.map((v) => v.agentName)}::text[], ${part.map((v) => v.series)}::text[],
              ${part.map((v) => v.at)}::bigint[], ${part.map((v) => v.value)}::float8[], ${part.map((v) => v.state ?? null)}::text[])`.execute(trx);
        }
      });
      return;
    }
    await this.tx(async (trx) => {
      // Parameter limits: SQLite allows 32766 bound values, PostgreSQL 65535; 6 per row.
      for (let i = 0; i < values.length; i += 1000) {
        await trx.insertInto('check_values').values(values.slice(i, i + 1000).map((v) => ({
          check_name: v.checkName, agent_name: v.agentName, series: v.series, at: v.at, value: v.value, state: v.state ?? null,
        }))).execute();
      }
    });
  }

  async checkValues(checkName: string, agentName: string, series: string, since: number): Promise<{ at: number; value: number }[]> {
    return this.db.selectFrom('check_values').select(['at', 'value']).where('check_name', '=', checkName).where('agent_name', '=', agentName)
      .where('series', '=', series).where('at', '>=', since).orderBy('at').execute();
  }

  // ── Auth ─────────────────────────────────────────────────────────────────────────────────────

  async createToken(t: { name: string; tokenHash: string; role: Role; createdBy: string; at: number; expiresAt?: number | null }): Promise<TokenRecord> {
    const row = await this.tx((trx) => trx.insertInto('api_tokens').values({
      name: t.name, token_hash: t.tokenHash, role: t.role, created_by: t.createdBy, created_at: t.at, expires_at: t.expiresAt ?? null,
    }).returningAll().executeTakeFirstOrThrow());
    return tokenFromRow(row);
  }

  async findTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    const row = await this.db.selectFrom('api_tokens').selectAll().where('token_hash', '=', hash).executeTakeFirst();
    return row && tokenFromRow(row);
  }

  async listTokens(): Promise<TokenRecord[]> {
    return (await this.db.selectFrom('api_tokens').selectAll().orderBy('id').execute()).map(tokenFromRow);
  }

  async revokeToken(id: number, actor: string, at: number): Promise<boolean> {
    return this.tx(async (trx) => {
      const r = await trx.updateTable('api_tokens').set({ revoked: 1 }).where('id', '=', id).where('revoked', '=', 0).executeTakeFirst();
      const done = Number(r.numUpdatedRows) > 0;
      if (done) await trx.insertInto('audit_log').values({ at, actor, action: 'revoke', target: `tokens/${id}`, detail: null }).execute();
      return done;
    });
  }

  async upsertUser(u: { name: string; passwordHash: string; role: Role; at: number }): Promise<void> {
    await this.tx((trx) => trx.insertInto('users').values({ name: u.name, password_hash: u.passwordHash, role: u.role, created_at: u.at })
      .onConflict((oc) => oc.column('name').doUpdateSet({ password_hash: u.passwordHash, role: u.role })).execute());
  }

  async getUser(name: string): Promise<{ name: string; passwordHash: string; role: Role; disabled: boolean } | undefined> {
    const row = await this.db.selectFrom('users').selectAll().where('name', '=', name).executeTakeFirst();
    return row && { name: row.name, passwordHash: row.password_hash, role: row.role as Role, disabled: row.disabled === 1 };
  }
}
