/**
 * 0005: job output in files (SQLite with a database file; docs/storage.md, "Job output"). A chunk whose bytes are
 * in the run's output file has `file_offset` and `file_length` set and an empty `data`; a chunk with
 * `file_offset` NULL has its bytes in `data` (PostgreSQL, an in-memory SQLite database, and output stored before
 * this migration).
 */
export const name = 'output_files';
export const sql = `
ALTER TABLE run_output ADD COLUMN file_offset BIGINT;
ALTER TABLE run_output ADD COLUMN file_length INTEGER;
`;
