/**
 * Named error classes. Every message says what went wrong, where, and how to fix it;
 * `context` carries the machine-readable details for logs and API responses.
 */
export class BatchalyzerError extends Error {
  readonly code: string;
  readonly context: Record<string, unknown>;
  constructor(code: string, message: string, context: Record<string, unknown> = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.context = context;
  }
}

/** One problem found while validating input, located by a dotted path (`jobs.backup.schedule.cron`). */
export interface ValidationIssue {
  path: string;
  message: string;
}

export class ValidationError extends BatchalyzerError {
  readonly issues: ValidationIssue[];
  constructor(subject: string, issues: ValidationIssue[], opts: { changesNothing?: boolean } = {}) {
    const n = issues.length;
    super(
      'validation_failed',
      `${subject} is invalid (${n} error${n === 1 ? '' : 's'})${opts.changesNothing === false ? '' : '; nothing was changed'}:\n` +
        issues.map((i) => `  ${i.path || '(top level)'}: ${i.message}`).join('\n'),
      { issues },
    );
    this.issues = issues;
  }
}

export class ConfigError extends BatchalyzerError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super('config_invalid', message, context);
  }
}

export class NotFoundError extends BatchalyzerError {
  constructor(kind: string, name: string | number, hint = '') {
    super('not_found', `${kind} "${name}" does not exist${hint ? `; ${hint}` : ''}`, { kind, name });
  }
}

export class ConflictError extends BatchalyzerError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super('conflict', message, context);
  }
}
