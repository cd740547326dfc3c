import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openStore, type Store } from '@batchalyzer/store';
import { CLI, cli, ROOT, tempDir } from './cli.js';

/**
 * Support for the agent end-to-end tests: a server process (test/support/agent-server.mjs, the agent hub with a
 * simple RunReports), real agent processes from the built CLI, and bounded waiting helpers. Nothing sleeps for
 * a fixed time to wait for an outcome: everything awaits an event or polls with a deadline.
 */

export const AGENT_BIN = join(ROOT, 'packages', 'agent', 'dist', 'main.js');
const SERVER_SCRIPT = join(ROOT, 'test', 'support', 'agent-server.mjs');

/** Short liveness times so that tests see stale/missing/lost within seconds. */
export const FAST_HUB = { heartbeatMs: 300, staleAfterMs: 1500, missingAfterMs: 3000, lostRunLeaseMs: 1000, tickMs: 100, dispatchTimeoutMs: 5000 };

/** The text halves.mjs prints (a numbered pattern, so that any reordering shows). */
export function pattern(n: number): string {
  let s = '';
  for (let i = 0; s.length < n; i++) s += `${String(i).padStart(6, '0')}:abcdefghijklmnopqrstuvwxyz\n`;
  return s.slice(0, n);
}

export async function until<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000, everyMs = 50): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Collects a child's output lines as they come. */
class Lines {
  readonly lines: string[] = [];
  constructor(proc: ChildProcess) {
    for (const s of [proc.stdout!, proc.stderr!]) {
      let buf = '';
      s.on('data', (d: Buffer) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          this.lines.push(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
    }
  }
  text(): string {
    return this.lines.join('\n');
  }
}

function exited(proc: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode });
  return new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
}

export type ServerEvent = { event: string; [k: string]: unknown };

export class TestServer {
  proc!: ChildProcess;
  url = '';
  port = 0;
  readonly events: ServerEvent[] = [];
  private out!: Lines;

  constructor(readonly data: string, readonly hubConfig: Record<string, unknown> = FAST_HUB) {}

  async start(port = this.port): Promise<this> {
    this.proc = spawn(process.execPath, [SERVER_SCRIPT, this.data, String(port), JSON.stringify(this.hubConfig)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    this.out = new Lines(this.proc);
    this.proc.stdout!.on('data', () => {
      for (const l of this.out.lines.splice(0)) {
        if (l.startsWith('{')) this.events.push(JSON.parse(l) as ServerEvent);
        else {
          const m = /listening on (http:\/\/\S+)/.exec(l);
          if (m) this.url = m[1]!;
        }
      }
    });
    await until('server to listen', () => this.url !== '' || (this.proc.exitCode !== null ? Promise.reject(new Error('server exited')) : false));
    this.port = Number(new URL(this.url).port);
    return this;
  }

  /** Waits for an event matching `match` at or after index `from`; returns it. */
  event(name: string, match: (e: ServerEvent) => boolean = () => true, timeoutMs = 20_000, from = 0): Promise<ServerEvent> {
    return until(`server event ${name}`, () => this.events.slice(from).find((e) => e.event === name && match(e)), timeoutMs);
  }

  async post<T = Record<string, unknown>>(path: string, body: unknown): Promise<T> {
    const res = await fetch(`${this.url}${path}`, { method: 'POST', body: JSON.stringify(body) });
    const json = (await res.json()) as T & { error?: string };
    if (!res.ok) throw new Error(json.error ?? `HTTP ${res.status}`);
    return json;
  }

  async run(agent: string, run: unknown, extra: Record<string, unknown> = {}): Promise<number> {
    return (await this.post<{ runId: number }>('/test/run', { agent, run, ...extra })).runId;
  }

  async kill9(): Promise<void> {
    this.proc.kill('SIGKILL');
    await exited(this.proc);
    this.url = '';
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    await exited(this.proc);
  }
}

export async function registerAgent(data: string, name: string): Promise<string> {
  const keyFile = join(tempDir('batchalyzer-key-'), 'agent.key');
  const r = await cli(['agent', 'register', name, '--data', data, '--key-file', keyFile]);
  if (r.code !== 0) throw new Error(`register failed: ${r.stderr}`);
  return keyFile;
}

export class TestAgent {
  proc!: ChildProcess;
  private out!: Lines;

  readonly data: string;

  constructor(readonly opts: { name: string; url: string; keyFile: string; data?: string; args?: string[]; bin?: 'cli' | 'agent' }) {
    this.data = opts.data ?? tempDir('batchalyzer-agent-');
  }

  start(): this {
    const args = ['--server', this.opts.url, '--name', this.opts.name, '--key-file', this.opts.keyFile, '--data', this.data, '--reconnect-max', '500ms', ...(this.opts.args ?? [])];
    const argv = this.opts.bin === 'agent' ? [AGENT_BIN, ...args] : [CLI, 'agent', ...args];
    this.proc = spawn(process.execPath, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    this.out = new Lines(this.proc);
    return this;
  }

  output(): string {
    return this.out.text();
  }

  waitOutput(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    return until(`agent output ${pattern}`, () => pattern.exec(this.out.text()) ?? undefined, timeoutMs);
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async kill9(): Promise<void> {
    this.proc.kill('SIGKILL');
    await exited(this.proc);
  }

  async stop(): Promise<{ code: number | null; signal: string | null }> {
    if (!this.alive) return { code: this.proc.exitCode, signal: this.proc.signalCode };
    this.proc.kill('SIGTERM');
    return exited(this.proc);
  }

  exited(): Promise<{ code: number | null; signal: string | null }> {
    return exited(this.proc);
  }
}

export function openTestStore(data: string): Promise<Store> {
  return openStore({ kind: 'sqlite', path: join(data, 'batchalyzer.db') }, { migrate: false });
}

/** True when the process exists and is not a zombie (this container's PID 1 may not reap orphans). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** A server with agent `name` registered and connected. */
export async function serverWithAgent(name = 'a1', agentArgs: string[] = [], hubConfig: Record<string, unknown> = FAST_HUB) {
  const data = tempDir();
  const keyFile = await registerAgent(data, name);
  const server = await new TestServer(data, hubConfig).start();
  const agent = new TestAgent({ name, url: server.url, keyFile, args: agentArgs }).start();
  await server.event('agent:connected', (e) => e.name === name);
  const store = await openTestStore(data);
  return { data, keyFile, server, agent, store };
}
