/**
 * 0006: a run's state changes (dispatch, start, end: three commits a run) move it in only one index. Every index
 * holding `state` moved the run's entry at each of them (e2e-true: 2.4 WAL pages a commit for each such index).
 * `runs_state_id` keeps `state` (listings by state, the active runs at start); the job-first and plan-date-first
 * indexes lose it: a listing by job (or plan date) and state walks that job's (day's) runs newest first and keeps
 * those in the state, so it reads at most that job's (day's) retained runs. The agent index only ever serves "the
 * runs an agent holds" (a lost agent's runs, removing an agent), so it holds only those: a run enters it when
 * dispatched and leaves when it ends; starting does not touch it.
 *
 * With no statistics SQLite rates an equality on any first index column alike and breaks the tie by creation
 * order, which read job-and-state listings through `runs_state_id` (every run in the state). Fixed statistics
 * (the SQLite-only part below, the documented use of `sqlite_stat1`) tell it how many runs share a value: a
 * state many, a plan date fewer, a job few. An ANALYZE by an operator replaces them with measured ones (the
 * bundled SQLite also samples values, so plans then follow the values asked for). Dropping an index drops its row:
 * a later migration that re-creates one of these indexes must write its row again. PostgreSQL keeps its own
 * statistics (autovacuum).
 */
export const name = 'state_free_indexes';
export const sql = `
DROP INDEX runs_job_state_id;
CREATE INDEX runs_job_id ON runs (job_name, id);
DROP INDEX runs_date_state;
CREATE INDEX runs_date_id ON runs (plan_date, id);
DROP INDEX runs_agent_state;
CREATE INDEX runs_agent_active ON runs (agent_name, id) WHERE agent_name IS NOT NULL AND ended_at IS NULL;
`;
/** Rows per value, as `sqlite_stat1` writes them: a million runs, 10 states, 100 days, 10,000 jobs, 1,000 held by agents. */
export const sqlite = `
ANALYZE sqlite_schema;
DELETE FROM sqlite_stat1 WHERE tbl = 'runs';
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
  ('runs', 'runs_state_id', '1000000 100000 1'),
  ('runs', 'runs_date_id', '1000000 10000 1'),
  ('runs', 'runs_job_id', '1000000 100 1'),
  ('runs', 'runs_agent_active', '1000 10 1'),
  ('runs', 'runs_ended', '1000000 1');
ANALYZE sqlite_schema;
`;
