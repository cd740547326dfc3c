/** The agent's log: one line per event, info to stdout and warnings/errors to stderr (no logging library: brief §8 "light"). */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

export interface Log {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function createLog(level: LogLevel, out: (line: string, isError: boolean) => void = defaultOut): Log {
  const line = (l: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[l] < ORDER[level]) return;
    const extra = fields && Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : '';
    out(`${new Date().toISOString()} ${l} ${msg}${extra}\n`, ORDER[l] >= ORDER.warn);
  };
  return {
    debug: (m, f) => line('debug', m, f),
    info: (m, f) => line('info', m, f),
    warn: (m, f) => line('warn', m, f),
    error: (m, f) => line('error', m, f),
  };
}

function defaultOut(text: string, isError: boolean): void {
  (isError ? process.stderr : process.stdout).write(text);
}
