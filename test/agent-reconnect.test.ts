import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { pino } from 'pino';
import { compileConfig, planApplyFromYaml } from '@batchalyzer/core';
import { AGENT_PATH, generateAgentKey, PROTOCOL_VERSION, signChallenge } from '@batchalyzer/protocol';
import { type BatchalyzerServer, createServer } from '@batchalyzer/server';
import { openStore, type Store } from '@batchalyzer/store';
import { tempDir } from './support/cli.js';
import { until } from './support/agent.js';

/**
 * Agents coming back to a restarted server (brief §8, restart bench): a server in this process on a real SQLite
 * database, agents played by protocol clients (hello → Ed25519 challenge → welcome, reports with sequence
 * numbers). Nothing here measures time: the tests await frames and events.
 */

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});

const CAPS = { command: true, shell: true, node: true, checks: { builtin: true, plugin: true, node: true } };

class Agent {
  readonly ws: WebSocket;
  /** Every frame received, in order, with its place in the log shared by all agents of a test. */
  readonly frames: { m: Record<string, unknown>; at: number }[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly opened: Promise<void>;

  constructor(url: string, readonly name: string, private readonly key: string, private readonly log: string[], activeRuns: number[] = []) {
    this.ws = new WebSocket(url.replace(/^http/, 'ws') + AGENT_PATH);
    this.ws.on('error', () => undefined);
    this.closed = new Promise((r) => this.ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('close', (code) => reject(new Error(`agent ${name}: connection closed before the upgrade (${code})`)));
    });
    this.ws.on('open', () => this.send({
      type: 'hello', protocol: PROTOCOL_VERSION, agent: name, version: 'test', clock: Date.now(), facts: {}, capabilities: CAPS,
      queueId: `${name}-queue-0001`, activeRuns, draining: false,
    }));
    this.ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString()) as Record<string, unknown>;
      this.frames.push({ m, at: this.log.push(`${name}:${m.type as string}${m.type === 'ack' ? `:${m.seq as number}` : ''}`) });
      if (m.type === 'challenge') this.send({ type: 'auth', signature: signChallenge(this.key, m.nonce as string, name, PROTOCOL_VERSION) });
    });
  }

  send(m: unknown): void {
    this.ws.send(JSON.stringify(m));
  }

  frame(match: (m: Record<string, unknown>) => boolean, what: string): Promise<{ m: Record<string, unknown>; at: number }> {
    return until(`${this.name}: ${what}`, () => this.frames.find((f) => match(f.m)), 30_000, 5);
  }

  welcome(): Promise<{ m: Record<string, unknown>; at: number }> {
    return this.frame((m) => m.type === 'welcome', 'welcome');
  }
}

async function setup(agents: string[], store?: (s: Store) => Store) {
  const dir = tempDir();
  const config = compileConfig({ flags: { data: dir, listen: '127.0.0.1:0', timezone: 'UTC' }, env: {}, cwd: dir, hostTimezone: 'UTC' });
  const raw = await openStore(config.store);
  const keys: Record<string, string> = {};
  for (const name of agents) {
    const k = generateAgentKey();
    await raw.registerAgent(name, k.publicKey, Date.now());
    keys[name] = k.key;
  }
  const plan = planApplyFromYaml(await raw.loadDefinitions(), `timezone: UTC
jobs:
  w: { run: { command: [/bin/true] }, on: { agent: ${agents[0]} }, concurrency: { max: 100000 } }
`, 'test.yaml', { defaultTimezone: 'UTC' });
  await raw.applyDefinitions(plan, 'test', Date.now());
  return { dir, config, raw, keys, wrap: store ?? ((s: Store) => s) };
}

describe('agents reconnecting to a restarted server', () => {
  it('an agent replaying a long queue of results does not hold up the other agents\' handshakes, and every result is committed', async () => {
    const others = ['b0', 'b1', 'b2', 'b3', 'b4'];
    const { config, raw, keys } = await setup(['flood', ...others]);
    // 3,000 runs were running on "flood" when the previous server died; their results wait in its queue. (With
    // 1,000 a fast commit path could store them all before five sockets finished their handshakes on a loaded
    // machine, which says nothing about sharing the loop.)
    const spec = (await raw.loadDefinitions()).jobs.w!;
    const now = Date.now();
    const runs: number[] = [];
    for (let i = 0; i < 3000; i += 500) {
      const created = await raw.createRuns(Array.from({ length: 500 }, () => ({
        jobName: 'w', planDate: new Date(now).toISOString().slice(0, 10), nominalAt: null, dueAt: now, origin: 'manual' as const, priority: 0, spec,
      })), 'test', now);
      for (const r of created) {
        await raw.dispatchRun({ runId: r.id, agent: 'flood', at: now, actor: 'test', pools: [], rates: [] });
        await raw.startRun(r.id, now);
        runs.push(r.id);
      }
    }
    const server = await createServer(config, { logger: pino({ level: 'silent' }), store: raw });
    await server.start();
    cleanup.push(() => server.stop());
    const ended = new Set<number>();
    server.events.on('run:ended', (e) => ended.add(e.runId));

    const log: string[] = [];
    const flood = new Agent(server.url(), 'flood', keys.flood!, log, runs);
    await flood.welcome();
    flood.send({ type: 'durable', seq: runs.length }); // protocol 3: the queued results are on the agent's disk
    runs.forEach((runId, i) => flood.send({ type: 'report', seq: i + 1, item: { kind: 'finished', runId, attempt: 1, at: now + 1, exitCode: 0, signal: null, timedOut: false } }));
    // The others come back while the flood is being committed.
    const back = others.map((name) => new Agent(server.url(), name, keys[name]!, log));
    const welcomes = await Promise.all(back.map((a) => a.welcome()));
    const lastAck = await flood.frame((m) => m.type === 'ack' && m.seq === runs.length, 'ack of the last result');

    // Each handshake completed before the flood was all committed: commits share the event loop.
    for (const w of welcomes) expect(w.at).toBeLessThan(lastAck.at);
    // Acknowledged in batches, never beyond what is committed, and everything is committed.
    const acks = flood.frames.filter((f) => f.m.type === 'ack').map((f) => f.m.seq as number);
    expect(acks).toEqual([...acks].sort((a, b) => a - b));
    expect(acks.length).toBeLessThan(runs.length);
    await until('all results ended', () => ended.size === runs.length);
    const states = await Promise.all(runs.slice(0, 50).map(async (id) => (await raw.getRun(id))!.state));
    expect(new Set(states)).toEqual(new Set(['succeeded']));
    expect(server.agents.connected().map((a) => a.name).sort()).toEqual(['flood', ...others].sort());
  });

  it('an agent that connects while the server is still starting is taken once it has started, not cut off', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let starting!: () => void;
    const listening = new Promise<void>((r) => (starting = r));
    const { config, raw, keys } = await setup(['early']);
    // Start-up reads the agents (engine, then hub) after the HTTP port opened: hold it there.
    const held = new Proxy(raw, {
      get(target, prop, receiver) {
        if (prop === 'listAgents') {
          return async () => {
            starting();
            await gate;
            return target.listAgents();
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const server: BatchalyzerServer = await createServer(config, { logger: pino({ level: 'silent' }), store: held });
    const started = server.start();
    cleanup.push(async () => {
      release();
      await started;
      await server.stop();
    });
    await listening;
    const agent = new Agent(server.url(), 'early', keys.early!, []);
    // Received and held, not answered yet: the agent link is not started.
    const hub = server.agents as unknown as { parked: Set<unknown> };
    await until('the upgrade to be held', () => hub.parked.size === 1);
    expect(agent.ws.readyState).toBe(WebSocket.CONNECTING);
    release();
    await started;
    await agent.opened;
    await agent.welcome();
    expect(server.agents.connected().map((a) => a.name)).toEqual(['early']);
  });
});
