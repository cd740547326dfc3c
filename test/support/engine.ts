import { join } from 'node:path';
import { pino } from 'pino';
import { compileConfig, planApplyFromYaml } from '@batchalyzer/core';
import { MAX_ACTIVE_RUNS } from '@batchalyzer/protocol';
import { type BatchalyzerServer, createServer, type AgentLink, type ConnectedAgent, type DispatchPayload, type EngineOptions, type ServerEvents } from '@batchalyzer/server';
import { tempDir } from './cli.js';

/**
 * Scenario harness at the server's dispatch boundary: a real server (store, engine, events) with an injected
 * clock, and an agent link that records what would be sent to agents. The test plays the agents' part by
 * calling `server.reports`, exactly as the real agent link does.
 */
export class FakeClock {
  constructor(public t: number) {}
  now = () => this.t;
  advance(ms: number) {
    this.t += ms;
  }
}

export class BoundaryLink implements AgentLink {
  readonly agents = new Map<string, ConnectedAgent>();
  readonly sent: { agent: string; payload: DispatchPayload }[] = [];
  readonly kills: { agent: string; runId: number }[] = [];

  private lists = 0;

  /** The agent connects, or sends a new list of its active runs. */
  connect(name: string, over: Partial<Omit<ConnectedAgent, 'activeRuns'>> & { activeRuns?: Iterable<number> } = {}): void {
    const activeRuns = new Set(over.activeRuns ?? []);
    this.agents.set(name, {
      name, connectedAt: 0, draining: false, version: 'test',
      capabilities: { command: true, shell: true, node: true, checks: { builtin: true, plugin: true, node: true } }, ...over,
      activeRuns, activeRunsCut: activeRuns.size >= MAX_ACTIVE_RUNS, listVersion: ++this.lists,
    });
  }
  /** Agents whose lists stay as they are (a paused connection); the others send a new list before each look. */
  readonly silent = new Set<string>();

  connected(): ConnectedAgent[] {
    for (const a of this.agents.values()) if (!this.silent.has(a.name)) a.listVersion = ++this.lists;
    return [...this.agents.values()];
  }
  async dispatch(agent: string, payload: DispatchPayload): Promise<void> {
    if (!this.agents.has(agent)) throw new Error(`${agent} is not connected`);
    this.sent.push({ agent, payload });
  }
  async kill(agent: string, runId: number): Promise<void> {
    this.kills.push({ agent, runId });
  }
}

export interface Harness {
  server: BatchalyzerServer;
  link: BoundaryLink;
  clock: FakeClock;
  dir: string;
  apply(yaml: string): Promise<void>;
  restart(): Promise<void>;
  next<K extends keyof ServerEvents>(event: K, match?: (p: ServerEvents[K]) => boolean): Promise<ServerEvents[K]>;
  /** Plays an agent: start and finish a dispatched run. */
  finish(runId: number, exitCode: number, opts?: { signal?: string; attempt?: number }): Promise<void>;
  close(): Promise<void>;
}

export async function harness(start = Date.parse('2026-06-01T10:00:00Z'), dir = tempDir(), engine: Partial<EngineOptions> = {}): Promise<Harness> {
  const clock = new FakeClock(start);
  const link = new BoundaryLink();
  const config = compileConfig({ flags: { data: dir, listen: '127.0.0.1:0', timezone: 'UTC' }, env: {}, cwd: dir, hostTimezone: 'UTC' });
  const make = async () => {
    const s = await createServer(config, { clock, logger: pino({ level: 'silent' }), engine: { reconcileAfterMs: 3_600_000, ...engine } });
    s.engine.attachLink(link);
    await s.start();
    return s;
  };
  const h: Harness = {
    server: await make(),
    link,
    clock,
    dir,
    async apply(yaml) {
      const store = h.server.store;
      const plan = planApplyFromYaml(await store.loadDefinitions(), yaml, 'test.yaml', { defaultTimezone: 'UTC' });
      await store.applyDefinitions(plan, 'test', clock.now());
      h.server.events.emit('definitions:applied', { changes: plan.changes.length, actor: 'test' });
      await h.server.engine.pass();
    },
    async restart() {
      await h.server.stop();
      h.server = await make();
    },
    next(event, match) {
      return h.server.events.once(event, match);
    },
    async finish(runId, exitCode, opts = {}) {
      const run = h.server.engine.state.runs.get(runId)!;
      await h.server.reports.started(run.agentName!, runId, opts.attempt ?? run.attempt, clock.now());
      await h.server.reports.finished(run.agentName!, { runId, attempt: opts.attempt ?? run.attempt, at: clock.now(), exitCode, signal: opts.signal ?? null, timedOut: false });
      await h.server.engine.pass();
    },
    async close() {
      await h.server.stop();
    },
  };
  return h;
}

export const dataFile = (dir: string) => join(dir, 'batchalyzer.db');
