import { BatchalyzerError } from '@batchalyzer/core';

export class SchemaTooNewError extends BatchalyzerError {
  constructor(found: number, known: number) {
    super(
      'schema_too_new',
      `the database schema is at version ${found}, but this batchalyzer only knows versions up to ${known}; ` +
        'run a batchalyzer release at least as new as the one that last migrated this database, or point --data/--db elsewhere',
      { found, known },
    );
  }
}

export class MigrationMismatchError extends BatchalyzerError {
  constructor(version: number, name: string) {
    super(
      'migration_mismatch',
      `migration ${version} (${name}) recorded in the database differs from the one in this release; ` +
        'released migrations must never be edited: restore the original file and add a new numbered migration instead',
      { version, name },
    );
  }
}

export class StoreUnavailableError extends BatchalyzerError {
  constructor(what: string, cause: Error) {
    super('store_unavailable', `cannot open the ${what}: ${cause.message}; check the path or URL and that the database is running`, {
      cause: cause.message,
    });
  }
}

export class EarlyRunTouchedError extends BatchalyzerError {
  /** The listed runs that were not untouched (the rest were not withdrawn either). */
  readonly refused: number[];
  constructor(expected: number, found: number, refused: number[]) {
    super(
      'early_run_touched',
      `only ${found} of ${expected} runs created ahead of their due time were still untouched (waiting, not held, never dispatched or retried), so none was withdrawn; ` +
        'the scheduler decides again from the current runs in its next pass (nothing to do by hand)',
      { expected, found, refused },
    );
    this.refused = refused;
  }
}

/** Job output could not be written to or read from its file beside the SQLite database (output-files.ts). */
export class OutputFileError extends BatchalyzerError {
  constructor(what: string, path: string, cause: Error) {
    super(
      'output_file',
      `cannot ${what} job output file ${path}: ${cause.message}; the server keeps job output beside its SQLite database ` +
        '(`<database>.output`): check that this directory is writable by the server and that its disk is not full',
      { path, cause: cause.message },
    );
  }
}
