/**
 * 0002: indexes for the paginated run listing (brief §11: every list is paginated; 100,000 runs must stay fast).
 * `listRuns` filters by state, or job and state, and pages by descending id: these indexes serve the filter and
 * the order together, so a page reads 51 index entries instead of sorting every run in the state
 * (measured by `npm run bench -- api-list`, docs/performance.md).
 */
export const name = 'run_list_indexes';
export const sql = `
CREATE INDEX runs_state_id ON runs (state, id);
CREATE INDEX runs_job_state_id ON runs (job_name, state, id);
`;
