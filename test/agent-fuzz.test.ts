import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { AGENT_PATH, encodeOutputFrame, PROTOCOL_VERSION, signChallenge } from '@batchalyzer/protocol';
import { FAST_HUB, registerAgent, serverWithAgent, until } from './support/agent.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});

/** Deterministic pseudo-random numbers (mulberry32), so a failure can be replayed. */
function prng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Closed = { code: number; reason: string };

class Client {
  ws: WebSocket;
  closed: Promise<Closed>;
  private inbox: Record<string, unknown>[] = [];

  constructor(url: string) {
    this.ws = new WebSocket(url.replace(/^http/, 'ws') + AGENT_PATH, { maxPayload: 4 * 1024 * 1024 });
    this.closed = new Promise((r) => this.ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
    this.ws.on('error', () => undefined);
    this.ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString()) as Record<string, unknown>;
      // Play a well-behaved agent for dispatches, so that the evil agent owns a run of its own.
      if (m.type === 'dispatch') {
        const p = m.payload as { runId: number; attempt: number };
        this.ws.send(JSON.stringify({ type: 'accepted', runId: p.runId, attempt: p.attempt }));
      } else this.inbox.push(m);
    });
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
  }

  next(type: string, match: (m: Record<string, unknown>) => boolean = () => true): Promise<Record<string, unknown>> {
    return until(`${type} frame`, () => {
      const i = this.inbox.findIndex((m) => m.type === type && match(m));
      return i >= 0 ? this.inbox.splice(i, 1)[0] : undefined;
    }, 10_000, 5);
  }

  async authenticate(name: string, key: string, protocol = PROTOCOL_VERSION, heartbeats = true): Promise<void> {
    await this.opened();
    this.send({
      type: 'hello', protocol, agent: name, version: 'fuzz', clock: Date.now(), facts: {},
      capabilities: { command: true, shell: true, node: true, checks: { builtin: true, plugin: true, node: true } },
      queueId: 'fuzz-queue-0001', activeRuns: [], draining: false,
    });
    const challenge = await this.next('challenge');
    this.send({ type: 'auth', signature: signChallenge(key, challenge.nonce as string, name, protocol) });
    await this.next('welcome');
    if (!heartbeats) return;
    // Like a real agent: heartbeats, or the server drops the connection as silent.
    const beat = setInterval(() => this.ws.readyState === WebSocket.OPEN && this.send({ type: 'heartbeat', at: Date.now(), activeRuns: [] }), 300);
    this.ws.on('close', () => clearInterval(beat));
  }

  acks(): unknown[] {
    return this.inbox.filter((m) => m.type === 'ack').map((m) => m.seq);
  }

  send(m: unknown): void {
    this.ws.send(typeof m === 'string' || Buffer.isBuffer(m) ? m : JSON.stringify(m));
  }
}

describe('hostile agent frames (brief §8)', () => {
  it('1,000+ malformed or hostile frames: the server never crashes, stores nothing from them, and closes each offending connection with a reason', async () => {
    const { server, agent, store, data } = await serverWithAgent('a1');
    cleanup.push(() => server.stop(), () => agent.kill9(), () => store.close());
    const evilKey = readFileSync(await registerAgent(data, 'evil'), 'utf8').trim();
    // Throw-away connections use a second name: the first one stays connected as the owner of a run.
    const evil2Key = readFileSync(await registerAgent(data, 'evil2'), 'utf8').trim();
    const victim = await server.run('a1', { shell: 'exec sleep 300' });
    await until('victim running', async () => (await store.getRun(victim))!.state === 'running');

    // The evil agent gets one run of its own (legitimately) and reports one chunk for it.
    const owner = new Client(server.url);
    await owner.authenticate('evil', evilKey);
    const own = await server.run('evil', { shell: 'true' });
    let seq = 1;
    owner.send({ type: 'report', seq, item: { kind: 'output', runId: own, attempt: 1, at: 1, stream: 'stdout', chunk: 1, data: Buffer.from('legit').toString('base64') } });
    owner.send({ type: 'durable', seq }); // protocol 3: acknowledged once on the agent's disk
    expect(await owner.next('ack', (m) => m.seq === 1)).toEqual({ type: 'ack', seq: 1 });

    const rnd = prng(20260115);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const junk = [null, 'x', -1, 0, 1.5, [], {}, true, 'A'.repeat(3000), 1e300, { $gt: 1 }];
    const item = (runId: number) => pick<Record<string, unknown>>([
      { kind: 'started', runId, attempt: 1, at: 1 },
      { kind: 'output', runId, attempt: 1, at: 1, stream: 'stdout', chunk: 7, data: Buffer.from('pwned').toString('base64') },
      { kind: 'step', runId, attempt: 1, at: 1, step: 1, stepKind: 'message', text: 'pwned' },
      { kind: 'finished', runId, attempt: 1, at: 1, exitCode: 0, signal: null, timedOut: false },
      { kind: 'lost', runId, attempt: 1, at: 1, reason: 'pwned' },
      { kind: 'truncated', runId, attempt: 1, at: 1, droppedBytes: 1 },
    ]);
    const mutate = (m: Record<string, unknown>): Record<string, unknown> => {
      const copy = structuredClone(m) as Record<string, Record<string, unknown>>;
      const target = rnd() < 0.5 && copy.item ? copy.item : copy;
      const keys = Object.keys(target);
      target[pick(keys)] = pick(junk) as never;
      return copy;
    };
    const preAuth: (() => unknown)[] = [
      () => pick(['{', '}{', 'null', '[]', '"hello"', '42', '{"type":', '\u0000\u0001\u0002', '{"type":"hello"}']),
      () => Buffer.from(Array.from({ length: 64 }, () => Math.floor(rnd() * 256))),
      () => ({ type: `bogus-${Math.floor(rnd() * 1000)}` }),
      () => mutate({ type: 'hello', protocol: 1, agent: 'evil', version: 'x', clock: 1, facts: {}, capabilities: {}, queueId: 'q', activeRuns: [], draining: false }),
      () => ({ type: 'report', seq: 1, item: item(victim) }),
      () => ({ type: 'auth', signature: 'AAAA' }),
    ];
    const postAuth: (() => unknown)[] = [
      () => ({ type: 'report', seq: 1000 + Math.floor(rnd() * 1e6), item: item(victim) }),
      () => ({ type: 'report', seq: 1000 + Math.floor(rnd() * 1e6), item: item(987654) }),
      () => mutate({ type: 'report', seq: 5000, item: item(victim) }),
      () => ({ type: 'accepted', runId: victim, attempt: 1 }),
      () => ({ type: 'kill-result', runId: victim, found: true }),
      () => ({ type: 'hello', protocol: 1, agent: 'a1', version: 'x', clock: 1, facts: {}, capabilities: { command: true, shell: true, node: true, checks: { builtin: true, plugin: true, node: true } }, queueId: 'fuzz-queue-0001', activeRuns: [], draining: false }),
      () => ({ type: `unknown-${Math.floor(rnd() * 100)}` }),
      () => pick(['not json', '{"type":"heartbeat","at":"soon","activeRuns":[]}', '{"type":"report","seq":-1}', '{"type":"durable","seq":-1}', '{"type":"durable","seq":"9"}']),
      // Protocol 2 binary output frames: for a run of another agent, garbage, a lying header length.
      () => encodeOutputFrame({ type: 'output', seq: 1000 + Math.floor(rnd() * 1e6), runId: victim, attempt: 1, at: 1, stream: 'stdout', chunk: 9 }, Buffer.from('pwned')),
      () => Buffer.from(Array.from({ length: 64 }, () => Math.floor(rnd() * 256))),
      () => Buffer.concat([Buffer.from([0, 0, 0, 200]), Buffer.from('{"type":"output"}')]),
    ];

    let frames = 0;
    const closes: Closed[] = [];
    const oneConnection = async (auth: boolean, frame: unknown) => {
      const c = new Client(server.url);
      if (auth) await c.authenticate('evil2', evil2Key);
      else await c.opened();
      c.send(frame);
      frames++;
      closes.push(await c.closed);
    };
    for (let i = 0; i < 450; i++) await oneConnection(false, pick(preAuth)());
    for (let i = 0; i < 550; i++) await oneConnection(true, pick(postAuth)());
    // A binary frame from an agent that said it speaks protocol 1.
    {
      const c = new Client(server.url);
      await c.authenticate('evil2', evil2Key, 1);
      c.send(encodeOutputFrame({ type: 'output', seq: 1, runId: victim, attempt: 1, at: 1, stream: 'stdout', chunk: 1 }, Buffer.from('pwned')));
      frames++;
      const closed = await c.closed;
      closes.push(closed);
      expect(closed.reason).toMatch(/^\[seq -\] binary frame from an agent speaking protocol 1/); // no queued item's fault: the agent charges nothing
    }
    // A durable watermark from an agent that said it speaks protocol 2.
    {
      const c = new Client(server.url);
      await c.authenticate('evil2', evil2Key, 2);
      c.send({ type: 'durable', seq: 1 });
      frames++;
      const closed = await c.closed;
      closes.push(closed);
      expect(closed.reason).toMatch(/^\[seq -\] durable from an agent speaking protocol 2/);
    }
    // Huge frames, before and after authentication.
    for (let i = 0; i < 4; i++) await oneConnection(i % 2 === 1, JSON.stringify({ type: 'heartbeat', at: 1, activeRuns: [], pad: 'x'.repeat(1024 * 1024 + 10) }));
    // Sequence replays on the owner's connection: the same sequence again, with other content.
    owner.send({ type: 'report', seq: 1, item: { kind: 'output', runId: own, attempt: 1, at: 1, stream: 'stdout', chunk: 2, data: Buffer.from('replayed').toString('base64') } });
    frames++;
    closes.push(await owner.closed);
    // A replay on a fresh connection (an agent re-sending after a reconnect) is acknowledged, not stored again.
    const again = new Client(server.url);
    await again.authenticate('evil', evilKey);
    again.send({ type: 'report', seq: 1, item: { kind: 'output', runId: own, attempt: 1, at: 1, stream: 'stdout', chunk: 3, data: Buffer.from('replayed').toString('base64') } });
    again.send({ type: 'durable', seq: 1 });
    frames++;
    expect(await again.next('ack', (m) => m.seq === 1)).toEqual({ type: 'ack', seq: 1 });
    again.ws.close();

    expect(frames).toBeGreaterThanOrEqual(1000);
    for (const c of closes) {
      if (c.code === 1009) continue; // "message too big", from ws's maxPayload
      expect(c.code, c.reason).toBe(4002);
      expect(c.reason.length).toBeGreaterThan(5);
    }
    expect(closes.filter((c) => c.code === 1009)).toHaveLength(4);
    // A close over one report names its sequence number (the agent charges that item); a replay is the agent's fault, not an item's.
    expect(closes.some((c) => /^\[seq -\] sequence replay: 1 after 1/.test(c.reason))).toBe(true);
    // Answers nobody asked for and frames out of place are no queued item's fault either (`[seq -]`: nothing charged).
    expect(closes.some((c) => new RegExp(`^\\[seq -\\] kill-result for run ${victim}, which was not asked to be killed$`).test(c.reason))).toBe(true);
    expect(closes.some((c) => new RegExp(`^\\[seq -\\] accepted for run ${victim} attempt 1, which was not dispatched`).test(c.reason))).toBe(true);
    expect(closes.some((c) => /^\[seq -\] unexpected hello after the handshake$/.test(c.reason))).toBe(true);
    expect(closes.some((c) => new RegExp(`^\\[seq \\d+\\] run ${victim} is not dispatched to agent evil2$`).test(c.reason))).toBe(true);
    expect(closes.some((c) => /^\[seq \d+\] run 987654 does not exist$/.test(c.reason))).toBe(true);
    expect(closes.some((c) => /^\[seq 5000\] invalid item/.test(c.reason))).toBe(true);
    expect(closes.every((c) => Buffer.byteLength(c.reason) <= 123)).toBe(true);

    // Nothing was stored from any of it, and the server and the legitimate agent are fine.
    expect(server.proc.exitCode).toBeNull();
    const victimRun = (await store.getRun(victim))!;
    expect(victimRun.state).toBe('running');
    expect(victimRun.outputBytes).toBe(0);
    expect(await store.runSteps(victim)).toEqual([]);
    expect((await store.readOutput(own, 'stdout')).toString()).toBe('legit');
    expect(await store.getRun(987654)).toBeUndefined();
    expect((await server.post<{ agents: { name: string }[] }>('/test/connected', {})).agents.map((a) => a.name)).toContain('a1');
    await server.post('/test/kill', { agent: 'a1', runId: victim });
    await until('victim killed', async () => (await store.getRun(victim))!.state === 'failed');
    const ok = await server.run('a1', { shell: 'echo fine' });
    await until('a1 still works', async () => (await store.getRun(ok))!.state === 'succeeded');
    expect(server.events.filter((e) => e.event === 'agent:disconnected' && e.name === 'a1')).toHaveLength(0);
  });
});

describe('acknowledgements (brief §12)', () => {
  it('protocol 2: reports committed one after the other are acknowledged together, only after their commits', async () => {
    // Heartbeats are answered by an ack of their own: this client sends none, and the delay is long enough that
    // both commits happen within it however slow the machine.
    const { server, agent, store, data } = await serverWithAgent('a1', [], { ...FAST_HUB, ackDelayMs: 2_000 });
    cleanup.push(() => server.stop(), () => agent.kill9(), () => store.close());
    const key = readFileSync(await registerAgent(data, 'quiet'), 'utf8').trim();
    const client = new Client(server.url);
    await client.authenticate('quiet', key, 2, false);
    const runId = await server.run('quiet', { shell: 'true' });
    await until('dispatched', async () => (await store.getRun(runId))!.state === 'dispatched');
    client.send({ type: 'report', seq: 1, item: { kind: 'started', runId, attempt: 1, at: Date.now() } });
    await until('started committed', async () => (await store.getRun(runId))!.state === 'running');
    expect(client.acks()).toEqual([]); // committed, and the ack waits for more
    client.send({ type: 'report', seq: 2, item: { kind: 'finished', runId, attempt: 1, at: Date.now(), exitCode: 0, signal: null, timedOut: false } });
    await until('finished committed', async () => (await store.getRun(runId))!.state === 'succeeded');
    expect(await client.next('ack')).toEqual({ type: 'ack', seq: 2 });
    expect(client.acks()).toEqual([]);
  });

  it('protocol 3: reports are committed as they arrive but acknowledged, and taken as replays, only up to the agent\'s durable watermark', async () => {
    const { server, agent, store, data } = await serverWithAgent('a1');
    cleanup.push(() => server.stop(), () => agent.kill9(), () => store.close());
    const key = readFileSync(await registerAgent(data, 'quiet'), 'utf8').trim();
    const client = new Client(server.url);
    await client.authenticate('quiet', key, 3, false);
    const runId = await server.run('quiet', { shell: 'true' });
    await until('dispatched', async () => (await store.getRun(runId))!.state === 'dispatched');
    const chunk = (n: number, text: string) => ({ kind: 'output', runId, attempt: 1, at: Date.now(), stream: 'stdout', chunk: n, data: Buffer.from(text).toString('base64') });
    client.send({ type: 'report', seq: 1, item: { kind: 'started', runId, attempt: 1, at: Date.now() } });
    client.send({ type: 'report', seq: 2, item: chunk(1, 'one ') });
    await until('committed', async () => (await store.readOutput(runId, 'stdout')).toString() === 'one ');
    expect((await store.getRun(runId))!.state).toBe('running');
    // A heartbeat is answered with the agent's recorded sequence: still 0, and no other ack came.
    client.send({ type: 'heartbeat', at: Date.now(), activeRuns: [runId] });
    expect(await client.next('ack')).toEqual({ type: 'ack', seq: 0 });
    expect(client.acks()).toEqual([]);

    // The agent's host dies before its fsync: it comes back with sequence 2 reused for other content. The server
    // must take it as new (it never recorded 2), not as a replay.
    client.ws.close();
    await client.closed;
    const after = new Client(server.url);
    await after.authenticate('quiet', key, 3, false);
    after.send({ type: 'durable', seq: 1 });
    after.send({ type: 'report', seq: 1, item: { kind: 'started', runId, attempt: 1, at: Date.now() } }); // re-sent: not acknowledged before
    after.send({ type: 'report', seq: 2, item: chunk(2, 'two') });
    await until('the reused sequence committed', async () => (await store.readOutput(runId, 'stdout')).toString() === 'one two');
    expect(await after.next('ack')).toEqual({ type: 'ack', seq: 1 }); // committed, but durable only up to 1
    after.send({ type: 'durable', seq: 2 });
    expect(await after.next('ack')).toEqual({ type: 'ack', seq: 2 });
    after.send({ type: 'heartbeat', at: Date.now(), activeRuns: [runId] });
    expect(await after.next('ack')).toEqual({ type: 'ack', seq: 2 });
    expect((await store.runEvents(runId)).filter((e) => e.toState === 'running')).toHaveLength(1);
  });
});
