/**
 * 0003: fewer index writes per new run (plan-100k: a tick creates 10,000 runs, and every index of `runs` is
 * written for each). `runs_state_due` served no query (`runs_state_id` serves the state filters). The agent and
 * end-time indexes only ever serve `agent_name = ?` (removeAgent, listRuns) and `ended_at < ?` (pruneBefore),
 * which never match NULL, so they now leave out the rows where those are NULL: every waiting run.
 */
export const name = 'leaner_run_indexes';
export const sql = `
DROP INDEX runs_state_due;
DROP INDEX runs_agent_state;
CREATE INDEX runs_agent_state ON runs (agent_name, state) WHERE agent_name IS NOT NULL;
DROP INDEX runs_ended;
CREATE INDEX runs_ended ON runs (ended_at) WHERE ended_at IS NOT NULL;
`;
