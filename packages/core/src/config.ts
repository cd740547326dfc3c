import { isAbsolute, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from './errors.js';
import { isValidTimeZone, TIMEZONE_HINT } from './time.js';

/**
 * Configuration is compiled once, here, from flags > environment > config file > defaults into a fully
 * resolved object. Nothing else in batchalyzer reads process.env: the CLI passes it in.
 */
export type StoreConfig = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

export interface ServerConfig {
  dataDir: string;
  store: StoreConfig;
  listen: { host: string; port: number };
  /** Default zone for schedules and plan days when the definitions do not set one. */
  timezone: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Where the configuration came from, for `--help`-style diagnostics. */
  sources: string[];
}

/** Options as they arrive from flags or the config file; every field optional. */
export interface RawOptions {
  data?: string;
  db?: string;
  listen?: string;
  timezone?: string;
  logLevel?: string;
}

export const ENV_VARS: Record<keyof RawOptions, string> = {
  data: 'BATCHALYZER_DATA',
  db: 'BATCHALYZER_DB',
  listen: 'BATCHALYZER_LISTEN',
  timezone: 'BATCHALYZER_TIMEZONE',
  logLevel: 'BATCHALYZER_LOG_LEVEL',
};

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export interface ConfigInput {
  flags: RawOptions;
  env: Record<string, string | undefined>;
  /** Text of the YAML config file, if one was given, and its path for messages. */
  file?: { path: string; text: string };
  cwd: string;
  /** The host's zone, used when nothing else sets one. */
  hostTimezone: string;
}

function fromFile(file: { path: string; text: string }): RawOptions {
  let raw: unknown;
  try {
    raw = parseYaml(file.text);
  } catch (err) {
    throw new ConfigError(`config file ${file.path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`config file ${file.path} must be a mapping of option: value`);
  const out: RawOptions = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!(k in ENV_VARS)) {
      throw new ConfigError(`config file ${file.path}: unknown option "${k}"; known options are ${Object.keys(ENV_VARS).join(', ')}`);
    }
    if (typeof v !== 'string' && typeof v !== 'number') throw new ConfigError(`config file ${file.path}: option "${k}" must be text`);
    out[k as keyof RawOptions] = String(v);
  }
  return out;
}

export function parseListen(text: string, where: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text) ?? /^()()(\d+)$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`${where}: "${text}" is not a listen address; write HOST:PORT (e.g. 127.0.0.1:8080) or a port`);
  }
  // A bare port matches the second pattern with empty groups: it listens on 127.0.0.1, not on every interface.
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

export function compileConfig(input: ConfigInput): ServerConfig {
  const file = input.file ? fromFile(input.file) : {};
  const sources: string[] = [];
  const pick = (key: keyof RawOptions): { value: string; where: string } | undefined => {
    const flag = input.flags[key];
    if (flag !== undefined) return { value: flag, where: `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` };
    const env = input.env[ENV_VARS[key]];
    if (env !== undefined && env !== '') return { value: env, where: ENV_VARS[key] };
    const f = file[key];
    if (f !== undefined) return { value: f, where: `${input.file!.path}: ${key}` };
    return undefined;
  };
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(input.cwd, p));

  const data = pick('data');
  const dataDir = abs(data?.value ?? 'data');
  const db = pick('db');
  let store: StoreConfig;
  if (db && /^postgres(ql)?:\/\//.test(db.value)) {
    store = { kind: 'postgres', url: db.value };
    sources.push(db.where);
  } else if (db && /^sqlite:/.test(db.value)) {
    store = { kind: 'sqlite', path: abs(db.value.replace(/^sqlite:(\/\/)?/, '')) };
  } else if (db) {
    throw new ConfigError(`${db.where}: "${db.value}" is not a database URL; use postgres://USER@HOST:PORT/DB, or leave it out to use SQLite under --data`);
  } else {
    store = { kind: 'sqlite', path: join(dataDir, 'batchalyzer.db') };
  }
  const listenOpt = pick('listen');
  const listen = parseListen(listenOpt?.value ?? '127.0.0.1:8080', listenOpt?.where ?? 'default');
  const tzOpt = pick('timezone');
  const timezone = tzOpt?.value ?? input.hostTimezone;
  if (!isValidTimeZone(timezone)) throw new ConfigError(`${tzOpt?.where ?? 'host'}: unknown time zone "${timezone}"; ${TIMEZONE_HINT}`);
  const levelOpt = pick('logLevel');
  const logLevel = (levelOpt?.value ?? 'info') as ServerConfig['logLevel'];
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`${levelOpt!.where}: log level "${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  for (const o of [data, listenOpt, tzOpt, levelOpt]) if (o) sources.push(o.where);
  return { dataDir, store, listen, timezone, logLevel, sources };
}

/** A PostgreSQL URL with its password hidden, for logs and the health endpoint. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@/]*@/, '//$1:***@');
}
