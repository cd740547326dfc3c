/**
 * 0003: fewer index writes per new run and per moved plan entry (plan-100k: a tick creates 10,000 runs and
 * moves 10,000 entries, and every index is written for each). `runs_state_due` served no query (`runs_state_id`
 * serves the state filters). The agent and end-time indexes only ever serve `agent_name = ?` (removeAgent,
 * listRuns) and `ended_at < ?` (pruneBefore), which never match NULL, so they now leave out the rows where
 * those are NULL: every waiting run. Likewise `plan_entries_due` only serves `next_due_at IS NOT NULL`
 * (pendingPlanEntries): an entry whose day is done leaves it instead of being moved within it.
 */
export const name = 'leaner_plan_indexes';
export const sql = `
DROP INDEX runs_state_due;
DROP INDEX runs_agent_state;
CREATE INDEX runs_agent_state ON runs (agent_name, state) WHERE agent_name IS NOT NULL;
DROP INDEX runs_ended;
CREATE INDEX runs_ended ON runs (ended_at) WHERE ended_at IS NOT NULL;
DROP INDEX plan_entries_due;
CREATE INDEX plan_entries_due ON plan_entries (next_due_at) WHERE next_due_at IS NOT NULL;
`;
