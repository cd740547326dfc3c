import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely';
import { redactUrl, type StoreConfig } from '@batchalyzer/core';
import type { DB } from './db.js';
import { StoreUnavailableError } from './errors.js';
import { type Checkpointer, startCheckpointer } from './checkpointer.js';
import type { Dialect } from './migrate.js';

/** Opens a Kysely instance for the configured database; dialect details stay in this file and tx.ts. */
export interface Connection {
  db: Kysely<DB>;
  dialect: Dialect;
  location: string;
  /** PostgreSQL schema selected with `?schema=`. */
  schema?: string;
  /** SQLite: the cached prepared statements of the one connection, for hand-written hot paths (sqliteDirect). */
  statements?: Pick<Database.Database, 'prepare'>;
  /** SQLite: whether a transaction is open on the one connection (a writeTx between its statements). */
  inTransaction?: () => boolean;
  /** SQLite: the thread that checkpoints the WAL instead of this connection (`backgroundCheckpoints`). */
  checkpointer?: Checkpointer;
  /** SQLite with a database file: where job output goes (output-files.ts), `<database>.output`, beside it. */
  outputDir?: string;
}

const INT8 = 20;
const NUMERIC = 1700;

export async function connect(config: StoreConfig, opts: { backgroundCheckpoints?: boolean } = {}): Promise<Connection> {
  if (config.kind === 'sqlite') {
    let database: Database.Database;
    try {
      if (config.path !== ':memory:') mkdirSync(dirname(config.path), { recursive: true });
      database = new Database(config.path);
      database.pragma('journal_mode = WAL');
      database.pragma('busy_timeout = 10000');
      database.pragma('foreign_keys = ON');
      database.pragma('synchronous = NORMAL');
    } catch (err) {
      throw new StoreUnavailableError(`SQLite database ${config.path}`, err as Error);
    }
    const statements = withStatementCache(database);
    const checkpointer = opts.backgroundCheckpoints && config.path !== ':memory:' ? startCheckpointer(database, config.path) : undefined;
    return {
      db: new Kysely<DB>({ dialect: new SqliteDialect({ database: statements }) }), dialect: 'sqlite', location: config.path, statements,
      inTransaction: () => database.inTransaction,
      ...(checkpointer ? { checkpointer } : {}),
      // An in-memory database keeps output in blobs: a directory would outlive it (and a kill) with nothing to
      // remove it, and it is what tests and throwaway stores use, where the bytes are few.
      ...(config.path !== ':memory:' && config.path !== '' ? { outputDir: `${config.path}.output` } : {}),
    };
  }
  // `?schema=NAME` selects a schema (created if missing); it is ours, not a libpq option, so strip it.
  const url = new URL(config.url);
  const schema = url.searchParams.get('schema');
  url.searchParams.delete('schema');
  if (schema !== null && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw new StoreUnavailableError('PostgreSQL database', new Error(`schema "${schema}" must be a lower-case identifier`));
  }
  // Loaded only for PostgreSQL: ~70 ms of module loading that every server start and CLI call on SQLite skipped.
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({
    connectionString: url.toString(),
    max: 10,
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === INT8 || oid === NUMERIC ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  if (schema) {
    // Queued before any other query on the new client, so every statement sees the schema.
    pool.on('connect', (client) => {
      client.query(`SET search_path TO "${schema}"`).catch(() => undefined);
    });
  }
  // A dropped idle connection must not crash the process; the pool replaces it.
  pool.on('error', () => undefined);
  return {
    db: new Kysely<DB>({ dialect: new PostgresDialect({ pool }) }),
    dialect: 'postgres',
    location: redactUrl(config.url),
    ...(schema ? { schema } : {}),
  };
}

/** Bounds of the statement cache: distinct statements, and their total SQL text (multi-row inserts are long). */
const CACHE_STATEMENTS = 256;
const CACHE_TEXT = 2_000_000;

/**
 * Kysely's SQLite driver prepares every statement anew (~20 % of the store's time on the dispatch path,
 * docs/performance.md); the statements it compiles are the same few texts over and over, so prepared
 * statements are kept by SQL text (least recently used go first). A statement still iterating (a streamed
 * select) is never handed out twice: a fresh one is prepared instead.
 */
export function withStatementCache(database: Database.Database): Pick<Database.Database, 'prepare' | 'close'> {
  const cache = new Map<string, Database.Statement>();
  let text = 0;
  return {
    prepare(source: string) {
      const hit = cache.get(source);
      if (hit) {
        cache.delete(source);
        cache.set(source, hit);
        return hit.busy ? database.prepare(source) : hit;
      }
      const stmt = database.prepare(source);
      cache.set(source, stmt);
      text += source.length;
      for (const [old] of cache) {
        if (cache.size <= CACHE_STATEMENTS && text <= CACHE_TEXT) break;
        cache.delete(old);
        text -= old.length;
      }
      return stmt;
    },
    close() {
      cache.clear();
      return database.close();
    },
  } as Pick<Database.Database, 'prepare' | 'close'>;
}

/**
 * Runs `fn` in a write transaction. SQLite uses BEGIN IMMEDIATE so that a second process (the CLI next to a
 * running server) waits for the write lock up front instead of failing half-way with SQLITE_BUSY.
 */
export async function writeTx<T>(conn: Connection, fn: (trx: Kysely<DB>) => Promise<T>): Promise<T> {
  if (conn.dialect === 'postgres') return conn.db.transaction().execute(fn);
  return conn.db.connection().execute(async (c) => {
    await sql`BEGIN IMMEDIATE`.execute(c);
    try {
      const out = await fn(c);
      await sql`COMMIT`.execute(c);
      return out;
    } catch (err) {
      await sql`ROLLBACK`.execute(c).catch(() => undefined);
      throw err;
    }
  });
}

/**
 * SQLite: runs `fn` synchronously with prepared statements on the one connection, in a write transaction (BEGIN
 * IMMEDIATE, as writeTx) or not. For the hot paths (dispatch, start, end, the ownership read, output batches),
 * where building and compiling each query cost more than running it (dispatch-latency).
 *
 * Everything from BEGIN to COMMIT runs in one synchronous stretch, so no other query can interleave with it. The
 * only thing to wait for is a transaction that is open on the connection while its owner awaits between
 * statements (writeTx): then the call queues for Kysely's connection behind it, and a read never sees that
 * transaction's uncommitted rows. Otherwise it runs at once: taking Kysely's connection for it (a new Kysely
 * object, frozen, and a mutex round trip through microtasks) cost ~25 µs a call, as much as a small commit's
 * statements (e2e-true: 4-5 calls a run). A Kysely query issued earlier and still waiting for the connection may
 * then run after this call; every store call is atomic on its own and none relies on the order of calls it did
 * not await (PostgreSQL, with its pool, gives no such order either). `onRollback` runs when a write transaction
 * does not commit, synchronously, before the ROLLBACK; `commitFailed` tells a failed COMMIT (whose outcome can be
 * unknown after an I/O error: the commit frame may be in the WAL and replayed at recovery) from `fn` throwing
 * (nothing committed).
 */
export async function sqliteDirect<T>(
  conn: Connection, write: boolean, fn: (prepare: (sql: string) => Database.Statement) => T, onRollback?: (commitFailed: boolean) => void,
): Promise<T> {
  const prepare = (sql: string) => conn.statements!.prepare(sql);
  const run = (): T => {
    if (!write) return fn(prepare);
    prepare('BEGIN IMMEDIATE').run();
    let committing = false;
    try {
      const out = fn(prepare);
      committing = true;
      prepare('COMMIT').run();
      return out;
    } catch (err) {
      // Before ROLLBACK, still in the same synchronous stretch: what the transaction did outside the database
      // (output files) is dealt with before any other write can begin.
      onRollback?.(committing);
      try {
        prepare('ROLLBACK').run();
      } catch {
        // not in a transaction any more (it failed before BEGIN took effect)
      }
      throw err;
    }
  };
  if (!conn.inTransaction!()) return run();
  return conn.db.connection().execute(async () => run());
}

/**
 * Serialises capacity checks on the named resources until the transaction ends. PostgreSQL needs advisory
 * locks (READ COMMITTED would let two transactions both see free capacity); SQLite's write lock already
 * serialises every write transaction. Locks are taken in sorted order so that two dispatches cannot deadlock.
 */
export async function lockResources(conn: Connection, trx: Kysely<DB>, names: string[]): Promise<void> {
  if (conn.dialect !== 'postgres') return;
  for (const name of [...new Set(names)].sort()) {
    await sql`SELECT pg_advisory_xact_lock(hashtext(${`batchalyzer.resource.${name}`}))`.execute(trx);
  }
}
