/** Placeholder in branch perf-idx only: replaced at merge by perf-out's 0005 (output-file columns on run_output). */
export const name = 'placeholder';
export const sql = '';
