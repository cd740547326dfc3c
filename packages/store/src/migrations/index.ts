import * as m0001 from './0001_initial.js';
import * as m0002 from './0002_run_list_indexes.js';
import * as m0003 from './0003_leaner_plan_indexes.js';
import * as m0004 from './0004_one_job_index.js';
import * as m0005 from './0005_output_files.js';
import * as m0006 from './0006_state_free_indexes.js';

/** A migration's SQL runs on both dialects; `sqlite`, when present, runs after it on SQLite only. */
interface MigrationModule {
  name: string;
  sql: string;
  sqlite?: string;
}

/** The ordered, append-only list of migrations. Version = position + 1. */
export const MIGRATIONS: { version: number; name: string; sql: string; sqlite?: string }[] = ([m0001, m0002, m0003, m0004, m0005, m0006] as MigrationModule[])
  .map((m, i) => ({ version: i + 1, name: m.name, sql: m.sql, ...(m.sqlite !== undefined ? { sqlite: m.sqlite } : {}) }));
