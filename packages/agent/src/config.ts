import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { AGENT_PATH, MAX_BINARY_CHUNK_BYTES, MAX_CHUNK_BYTES, PROTOCOL_VERSION } from '@batchalyzer/protocol';
import { globToRegExp } from './glob.js';
import type { LogLevel } from './log.js';

export type SpawnerChoice = 'auto' | 'native' | 'node';

/**
 * The agent's configuration, compiled once from flags > environment > JSON config file > defaults (brief §8).
 * Only the CLI entry reads process.env and passes it in here.
 */
export interface AgentConfig {
  name: string;
  /** The agent key text ("bza1.…"): read from --key-file (or BATCHALYZER_AGENT_KEY). */
  key: string;
  /** WebSocket URLs, tried in turn. */
  servers: string[];
  dataDir: string;
  /** Kinds of work this agent accepts (brief §8 refusals). */
  accept: { command: boolean; shell: boolean; node: boolean; checks: { builtin: boolean; plugin: boolean; node: boolean } };
  /** Executable path patterns: when `allow` is non-empty, only matching executables run; `deny` always wins. */
  allow: string[];
  deny: string[];
  allowRe: RegExp[];
  denyRe: RegExp[];
  drainTimeoutMs: number;
  reconnect: { minMs: number; maxMs: number };
  /** Output is sent when a stream buffered this many bytes, or after flushIntervalMs, whichever is first. */
  chunkBytes: number;
  flushIntervalMs: number;
  /** Unacknowledged queue items kept in memory up to this size; older ones are read back from disk. */
  queueMemoryBytes: number;
  /** The minimal environment every job starts from (docs/agent.md "Environment"). */
  baseEnv: Record<string, string>;
  /** How jobs are started (docs/agent.md "Spawning"): auto = the native spawner when it loads, else child_process. */
  spawner: SpawnerChoice;
  /** Only for testing version refusals. */
  protocolVersion: number;
  logLevel: LogLevel;
}

/** Flags as the CLI passes them; every field optional. */
export interface AgentFlags {
  server?: string[];
  name?: string;
  keyFile?: string;
  data?: string;
  allow?: string[];
  deny?: string[];
  /** Kinds to refuse: jobs, command, shell, node, checks, check-builtin, check-plugin, check-node. */
  refuse?: string[];
  drainTimeout?: string;
  reconnectMax?: string;
  flushInterval?: string;
  logLevel?: string;
  spawner?: string;
  protocolVersion?: string;
  config?: string;
}

export class AgentConfigError extends Error {
  override readonly name = 'AgentConfigError';
}

export const AGENT_ENV: Record<string, string> = {
  server: 'BATCHALYZER_AGENT_SERVER',
  name: 'BATCHALYZER_AGENT_NAME',
  keyFile: 'BATCHALYZER_AGENT_KEY_FILE',
  data: 'BATCHALYZER_AGENT_DATA',
  allow: 'BATCHALYZER_AGENT_ALLOW',
  deny: 'BATCHALYZER_AGENT_DENY',
  refuse: 'BATCHALYZER_AGENT_REFUSE',
  drainTimeout: 'BATCHALYZER_AGENT_DRAIN_TIMEOUT',
  logLevel: 'BATCHALYZER_AGENT_LOG_LEVEL',
  spawner: 'BATCHALYZER_AGENT_SPAWNER',
};
const LIST_KEYS = new Set(['server', 'allow', 'deny', 'refuse']);
const REFUSE_KINDS = ['jobs', 'command', 'shell', 'node', 'checks', 'check-builtin', 'check-plugin', 'check-node'];
/** Variables of the agent's own environment that jobs inherit (docs/agent.md). */
export const BASE_ENV_NAMES = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'USER', 'LOGNAME', 'SHELL', 'TZ', 'TMPDIR'];

export interface AgentConfigInput {
  flags: AgentFlags;
  env: Record<string, string | undefined>;
  cwd: string;
  version?: string;
}

export function parseDurationMs(text: string, where: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new AgentConfigError(`${where}: "${text}" is not a duration; write e.g. 500ms, 30s, 5m or 1h`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 'ms']!;
  return Math.round(Number(m[1]) * unit);
}

function fromFile(path: string): AgentFlags {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new AgentConfigError(`cannot read agent config file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; it is a JSON object`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new AgentConfigError(`agent config file ${path} must be a JSON object of option: value`);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!(k in AGENT_ENV) && k !== 'reconnectMax' && k !== 'flushInterval') {
      throw new AgentConfigError(`agent config file ${path}: unknown option "${k}"; known: ${[...Object.keys(AGENT_ENV), 'reconnectMax', 'flushInterval'].join(', ')}`);
    }
    if (LIST_KEYS.has(k)) {
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new AgentConfigError(`agent config file ${path}: "${k}" is a list of strings`);
      out[k] = v;
    } else if (typeof v === 'string' || typeof v === 'number') out[k] = String(v);
    else throw new AgentConfigError(`agent config file ${path}: "${k}" must be text`);
  }
  return out as AgentFlags;
}

function fromEnv(env: Record<string, string | undefined>): AgentFlags {
  const out: Record<string, unknown> = {};
  for (const [k, name] of Object.entries(AGENT_ENV)) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    out[k] = LIST_KEYS.has(k) ? v.split(',').map((s) => s.trim()).filter(Boolean) : v;
  }
  return out as AgentFlags;
}

/** http(s):// → ws(s)://, and the agent path unless the URL names one. */
export function agentUrl(text: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new AgentConfigError(`--server: "${text}" is not a URL; write e.g. http://batchalyzer.example:8080`);
  }
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new AgentConfigError(`--server: "${text}" must be http(s):// or ws(s)://`);
  if (u.pathname === '/' || u.pathname === '') u.pathname = AGENT_PATH;
  return u.toString();
}

export function compileAgentConfig(input: AgentConfigInput): AgentConfig {
  const envFlags = fromEnv(input.env);
  const configPath = input.flags.config ?? input.env.BATCHALYZER_AGENT_CONFIG;
  const file = configPath ? fromFile(resolve(input.cwd, configPath)) : {};
  const pick = <K extends keyof AgentFlags>(k: K): AgentFlags[K] => {
    const f = input.flags[k];
    if (f !== undefined && !(Array.isArray(f) && f.length === 0)) return f;
    return envFlags[k] ?? file[k];
  };
  const name = pick('name');
  if (!name) throw new AgentConfigError('--name is required (env BATCHALYZER_AGENT_NAME): the name the agent was registered under');
  const servers = (pick('server') ?? []).map(agentUrl);
  if (servers.length === 0) throw new AgentConfigError('--server is required (env BATCHALYZER_AGENT_SERVER): the server URL, e.g. http://127.0.0.1:8080; repeat it for several servers');
  let key = input.env.BATCHALYZER_AGENT_KEY?.trim() ?? '';
  const keyFile = pick('keyFile');
  if (keyFile) {
    try {
      key = readFileSync(resolve(input.cwd, keyFile), 'utf8').trim();
    } catch (err) {
      throw new AgentConfigError(`cannot read key file ${keyFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  if (!key) throw new AgentConfigError('--key-file is required (or env BATCHALYZER_AGENT_KEY): the key printed by `batchalyzer agent register NAME`');
  const refuse = new Set(pick('refuse') ?? []);
  for (const r of refuse) {
    if (!REFUSE_KINDS.includes(r)) throw new AgentConfigError(`--refuse: unknown kind "${r}"; kinds are ${REFUSE_KINDS.join(', ')}`);
  }
  const jobs = !refuse.has('jobs');
  const checks = !refuse.has('checks');
  const allow = pick('allow') ?? [];
  const deny = pick('deny') ?? [];
  const logLevel = (pick('logLevel') ?? 'info') as LogLevel;
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(logLevel)) throw new AgentConfigError(`--log-level: "${logLevel}" is debug, info, warn, error or silent`);
  const baseEnv: Record<string, string> = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };
  for (const n of BASE_ENV_NAMES) if (input.env[n]) baseEnv[n] = input.env[n]!;
  const spawner = (pick('spawner') ?? 'auto') as SpawnerChoice;
  if (!['auto', 'native', 'node'].includes(spawner)) throw new AgentConfigError(`--spawner: "${spawner}" is auto, native or node`);
  const pv = pick('protocolVersion');
  return {
    name,
    key,
    servers,
    dataDir: resolve(input.cwd, pick('data') ?? 'agent-data'),
    accept: {
      command: jobs && !refuse.has('command'),
      shell: jobs && !refuse.has('shell'),
      node: jobs && !refuse.has('node'),
      checks: { builtin: checks && !refuse.has('check-builtin'), plugin: checks && !refuse.has('check-plugin'), node: checks && !refuse.has('check-node') },
    },
    allow,
    deny,
    allowRe: allow.map(globToRegExp),
    denyRe: deny.map(globToRegExp),
    drainTimeoutMs: parseDurationMs(pick('drainTimeout') ?? '5m', '--drain-timeout'),
    reconnect: { minMs: 200, maxMs: parseDurationMs(pick('reconnectMax') ?? '30s', '--reconnect-max') },
    // Protocol 2 carries output raw in binary frames: bulk output goes in the largest chunks the protocol takes (one
    // frame, one queue record, one row each). Half of that, 256 KiB, cost the agent 0.48 instead of 0.36 s of CPU per
    // 256 MB (output-stream): the per-chunk work (queue record, frame, ack, sync round) and the garbage it makes.
    chunkBytes: (pv !== undefined ? Number(pv) : PROTOCOL_VERSION) >= 2 ? MAX_BINARY_CHUNK_BYTES : MAX_CHUNK_BYTES,
    flushIntervalMs: parseDurationMs(pick('flushInterval') ?? '200ms', '--flush-interval'),
    queueMemoryBytes: 8 * 1024 * 1024,
    baseEnv,
    spawner,
    protocolVersion: pv !== undefined ? Number(pv) : PROTOCOL_VERSION,
    logLevel,
  };
}
