/**
 * 0004: one job-first index on `runs` instead of two (plan-100k: every index is written for each of the 10,000
 * runs a busy minute creates, ~5 ms per index). `runs_job_date` (job, plan date, id) served only listings by job
 * and plan date, which only the engine asks for (one run, at start, for an `after` chain that lost its next time);
 * `runs_job_state_id` (job, state, id) now serves it too: the job's runs are found through it and sorted by id.
 * Listings by job and state (api-list) keep their index order. A job-and-id index would serve every job listing
 * in order, but SQLite (without statistics) then reads job-and-state listings through `runs_state_id` instead,
 * every run in the state.
 */
export const name = 'one_job_index';
export const sql = `
DROP INDEX runs_job_date;
`;
