import { type Kysely, sql } from 'kysely';
import { type Connection, writeTx } from './connection.js';
import type { DB } from './db.js';
import { migrate, type MigrationReport } from './migrate.js';
import { OutputFiles, type OutputWarning } from './output-files.js';

export const json = (v: unknown) => (v === undefined ? null : JSON.stringify(v));
export const parse = (v: string | null): unknown => (v === null ? null : JSON.parse(v));

/** The store's connection and lifecycle (SqlStore's base: sql-store.ts). */
export abstract class SqlBase {
  readonly kind: 'sqlite' | 'postgres';
  readonly location: string;
  protected readonly db: Kysely<DB>;
  /** SQLite with a database file: output bytes go to files, the store keeps the index (output-files.ts). */
  protected readonly files: OutputFiles | undefined;

  constructor(protected readonly conn: Connection, onWarning: (w: OutputWarning) => void = (w) => process.emitWarning(w.message, { code: w.code })) {
    this.kind = conn.dialect;
    this.location = conn.location;
    this.db = conn.db;
    this.files = conn.outputDir ? new OutputFiles(conn.outputDir, onWarning) : undefined;
  }

  protected tx<T>(fn: (trx: Kysely<DB>) => Promise<T>): Promise<T> {
    return writeTx(this.conn, fn);
  }

  async migrate(): Promise<MigrationReport> {
    if (this.conn.schema) {
      await sql.raw(`CREATE SCHEMA IF NOT EXISTS "${this.conn.schema}"`).execute(this.db).catch(async (err) => {
        // Two processes creating the schema at once: fine if it exists now.
        const r = await sql<{ n: number }>`SELECT count(*) AS n FROM pg_namespace WHERE nspname = ${this.conn.schema}`.execute(this.db);
        if (!r.rows[0]?.n) throw err;
      });
    }
    return this.tx((trx) => migrate(trx, this.kind, Date.now()));
  }

  async schemaVersion(): Promise<number> {
    try {
      const r = await this.db.selectFrom('schema_migrations').select((eb) => eb.fn.max('version').as('v')).executeTakeFirst();
      return Number(r?.v ?? 0);
    } catch {
      return 0; // no ledger yet: a database batchalyzer has never migrated
    }
  }

  async ping(): Promise<void> {
    await sql`SELECT 1`.execute(this.db);
  }

  async close(): Promise<void> {
    await this.conn.checkpointer?.stop();
    // Files last: an append still queued for the connection runs before destroy() returns, and may open one.
    await this.db.destroy();
    await this.files?.close();
  }
}
