import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  encodeOutputFrame, fitCloseReason, generateAgentKey, parseAgentMessage, parseOutputFrame, parseRejectionReason, rejectionReason,
} from '@batchalyzer/protocol';
import { type WebSocket, WebSocketServer } from 'ws';
import { compileAgentConfig } from '../src/config.js';
import { ServerLink } from '../src/link.js';
import { createLog } from '../src/log.js';
import { DiskQueue } from '../src/queue.js';
import { cleanup, handshakeServer, until } from './support/link.js';

describe('the close reason of a rejected report (protocol close.ts)', () => {
  it('names the sequence number in front of the reason; the agent reads it back', () => {
    expect(rejectionReason('run 7 is not dispatched to agent web2', 17)).toBe('[seq 17] run 7 is not dispatched to agent web2');
    expect(parseRejectionReason('[seq 17] run 7 is not dispatched to agent web2')).toEqual({ seq: 17, reason: 'run 7 is not dispatched to agent web2' });
    expect(parseRejectionReason(rejectionReason('x', Number.MAX_SAFE_INTEGER))).toEqual({ seq: Number.MAX_SAFE_INTEGER, reason: 'x' });
    // Without a sequence (a violation that is no single report's fault): the reason as it was.
    expect(rejectionReason('sequence replay: 5 after 5 on this connection')).toBe('sequence replay: 5 after 5 on this connection');
    expect(rejectionReason('bad', 0)).toBe('bad');
    expect(rejectionReason('bad', 1.5)).toBe('bad');
  });

  it('`[seq -]` marks a violation that is no queued item\'s fault', () => {
    expect(rejectionReason('kill-result for run 1, which was not asked to be killed', null)).toBe('[seq -] kill-result for run 1, which was not asked to be killed');
    expect(parseRejectionReason('[seq -] kill-result for run 1, which was not asked to be killed')).toEqual({ seq: undefined, reason: 'kill-result for run 1, which was not asked to be killed', noItem: true });
    expect(parseRejectionReason('[seq 5] x').noItem).toBeUndefined();
    expect(parseRejectionReason('x').noItem).toBeUndefined();
    expect(Buffer.byteLength(rejectionReason('é'.repeat(200), null))).toBeLessThanOrEqual(123);
  });

  it('a reason without a sequence (a server of an earlier release) or with garbage in its place names none', () => {
    for (const text of [
      'run 7 is not dispatched to agent web2', '', 'invalid item.stepKind: Invalid option', '[seq] x', '[seq abc] x', '[seq 0] x', '[seq -3] x',
      '[seq 1.5] x', '[seq 99999999999999999] x', '[seq 9999999999999999] x', '[SEQ 5] x', ' [seq 5] x', 'seq 5: x', '[seq 5 x', 'x [seq 5] y',
    ]) {
      expect(parseRejectionReason(text), text).toEqual({ seq: undefined, reason: text });
    }
    expect(parseRejectionReason('[seq 5]')).toEqual({ seq: 5, reason: '' });
  });

  it('fits in a close frame (123 bytes of UTF-8) with the sequence intact, also with multi-byte characters', () => {
    for (const reason of ['x'.repeat(300), 'é'.repeat(200), '🙂'.repeat(100), `a${'€'.repeat(100)}`]) {
      const text = rejectionReason(reason, 123456789);
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(123);
      expect(Buffer.from(text).toString()).toBe(text); // cut on a character boundary: no replacement character
      expect(parseRejectionReason(text).seq).toBe(123456789);
      expect(reason.startsWith(parseRejectionReason(text).reason)).toBe(true);
    }
    expect(fitCloseReason('short')).toBe('short');
  });

  it('a report frame that fails validation carries its sequence number when it has a usable one', () => {
    const bad = { kind: 'step', runId: 1, attempt: 1, at: 1, step: 1, stepKind: 'bogus', text: 'x' };
    const r = parseAgentMessage(JSON.stringify({ type: 'report', seq: 9, item: bad }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatchObject({ code: 'invalid', seq: 9 });
    for (const frame of [{ type: 'report', seq: 'x', item: bad }, { type: 'report', seq: 0, item: bad }, { type: 'report', item: bad }, { type: 'heartbeat', seq: 9 }]) {
      const p = parseAgentMessage(JSON.stringify(frame));
      expect(p.ok).toBe(false);
      if (!p.ok) expect(p.error.seq).toBeUndefined();
    }
    const o = parseOutputFrame(encodeOutputFrame({ type: 'output', seq: 12, runId: 1, attempt: 1, at: 1, stream: 'stdnot', chunk: 1 } as never, Buffer.from('x')));
    expect(o.ok).toBe(false);
    if (!o.ok) expect(o.error).toMatchObject({ code: 'invalid', seq: 12 });
  });
});

/**
 * A server that welcomes the agent, records the reports of each connection and closes it with 4002 and `reason`
 * once it received report `closeAfter`, acknowledging nothing: as the real server does when it reads an invalid
 * report before it committed the ones before it.
 */
async function rejectingServer(closeAfter: number, reason: string) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  cleanup.push(() => wss.close());
  await new Promise((r) => wss.once('listening', r));
  const connections: number[][] = [];
  let reject = true;
  let current: WebSocket | undefined;
  wss.on('connection', (ws) => {
    const seqs: number[] = [];
    current = ws;
    connections.push(seqs);
    ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString()) as { type: string; seq?: number };
      if (m.type === 'hello') ws.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(16), serverTime: Date.now() }));
      if (m.type === 'auth') ws.send(JSON.stringify({ type: 'welcome', serverTime: Date.now(), heartbeatMs: 60_000 }));
      if (m.type !== 'report' || ws.readyState !== ws.OPEN) return; // what follows the close is not read
      seqs.push(m.seq!);
      if (reject && m.seq === closeAfter) ws.close(4002, reason);
    });
  });
  return {
    port: (wss.address() as AddressInfo).port,
    connections,
    /** From now on the server takes everything (the bad item no longer arrives). */
    accept: () => (reject = false),
    ack: (seq: number) => current!.send(JSON.stringify({ type: 'ack', seq })),
  };
}

async function agentLink(port: number, reconnectMax = '50ms', data = mkdtempSync(join(tmpdir(), 'bz-link-rejected-'))) {
  const config = compileAgentConfig({
    env: { BATCHALYZER_AGENT_KEY: generateAgentKey().key }, cwd: data,
    flags: { name: 'a1', server: [`http://127.0.0.1:${port}`], data, reconnectMax },
  });
  const queue = DiskQueue.open(join(data, 'queue'));
  const link = new ServerLink(config, queue, { hello: () => ({ name: 'a1' }) as never, dispatch: () => null, kill: () => false, activeRuns: () => [] }, createLog('silent'));
  cleanup.push(() => link.stop(), () => queue.close());
  const rejectedLog = join(data, 'queue', 'rejected.log');
  const rejected = () => (existsSync(rejectedLog) ? readFileSync(rejectedLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { seq: number; reason: string; item: { step: number } }) : []);
  return { link, queue, rejected, data };
}

/** Steps 1..n in the queue, on disk. */
function queueSteps(queue: DiskQueue, n: number): void {
  for (let i = 1; i <= n; i++) queue.append(step(i));
  queue.flush();
}

const step = (n: number) => ({ kind: 'step' as const, runId: 5, attempt: 1, at: 1, step: n, stepKind: 'message' as const, text: `step ${n}` });

describe('the agent charges the report the server names', () => {
  it('a named item after unacknowledged ones is skipped after three rejections; the ones before and after it are still sent', async () => {
    const server = await rejectingServer(3, rejectionReason('invalid item.text: too long', 3));
    const { link, queue, rejected } = await agentLink(server.port);
    queueSteps(queue, 4);
    link.start();
    await until('rejected.log', () => rejected().length > 0);
    expect(rejected()).toEqual([expect.objectContaining({ queue: queue.queueId, seq: 3, reason: 'invalid item.text: too long', item: step(3) })]);
    expect(server.connections.slice(0, 3)).toEqual([[1, 2, 3], [1, 2, 3], [1, 2, 3]]);
    // The next connection sends the items before and after it, not it (a gap the server takes).
    await until('fourth connection', () => server.connections[3]?.length === 3);
    expect(server.connections[3]).toEqual([1, 2, 4]);
    expect(queue.acked).toBe(0); // nothing before it is forgotten until the server acknowledges it
    server.ack(4); // cumulative: covers the skipped item too
    await until('acked', () => queue.acked === 4);
    expect(queue.length).toBe(0);
  });

  it('a skipped item stays skipped after the agent restarts (rejected.log names it): it is not sent again', async () => {
    const server = await rejectingServer(3, rejectionReason('invalid item.text: too long', 3));
    const first = await agentLink(server.port);
    for (let n = 1; n <= 4; n++) first.queue.append(step(n));
    first.queue.flush();
    first.link.start();
    await until('rejected.log', () => first.rejected().length > 0);
    first.link.stop();
    first.queue.close();
    // A new agent process on the same data: the server still rejects item 3, but it never arrives.
    const before = server.connections.length;
    const again = await agentLink(server.port, '50ms', first.data);
    again.link.start();
    await until('reconnected', () => server.connections[before]?.length === 3);
    expect(server.connections[before]).toEqual([1, 2, 4]);
    await new Promise((r) => setTimeout(r, 300));
    expect(server.connections.length).toBe(before + 1); // no rejection, no reconnect
    expect(again.rejected().map((r) => r.seq)).toEqual([3]); // no second line
    server.ack(4);
    await until('acked', () => again.queue.acked === 4);
  });

  it('a rejected.log of another queue (or of an earlier version, without the queue id) skips nothing', async () => {
    const server = await rejectingServer(99, rejectionReason('unused', 99));
    const data = mkdtempSync(join(tmpdir(), 'bz-link-rejected-'));
    mkdirSync(join(data, 'queue'), { recursive: true });
    writeFileSync(join(data, 'queue', 'rejected.log'), [
      JSON.stringify({ at: 'x', queue: 'an-older-queue-0001', seq: 2, reason: 'r', item: step(2) }),
      JSON.stringify({ at: 'x', reason: 'r', seq: 3, item: step(3) }),
      '{"at":"x","queue":"torn',
    ].join('\n') + '\n');
    const before = DiskQueue.open(join(data, 'queue')); // the queue holds its items when the agent starts
    for (let n = 1; n <= 3; n++) before.append(step(n));
    before.flush();
    before.close();
    const { link } = await agentLink(server.port, '50ms', data);
    link.start();
    await until('sent', () => server.connections[0]?.length === 3);
    expect(server.connections[0]).toEqual([1, 2, 3]);
  });

  it('a skipped item with nothing after it is forgotten once the items before it are acknowledged', async () => {
    const server = await rejectingServer(3, rejectionReason('run 5 does not exist', 3));
    const { link, queue, rejected } = await agentLink(server.port);
    queueSteps(queue, 3);
    link.start();
    await until('rejected.log', () => rejected().length > 0);
    await until('fourth connection', () => server.connections[3]?.length === 2);
    expect(server.connections[3]).toEqual([1, 2]);
    expect(queue.acked).toBe(0);
    server.ack(2);
    await until('skipped item acknowledged here', () => queue.acked === 3);
    expect(queue.length).toBe(0);
    expect(rejected().map((r) => r.seq)).toEqual([3]);
  });

  it('a reason without a sequence (a server of an earlier release): the first unacknowledged item is charged, as before', async () => {
    const server = await rejectingServer(3, 'invalid item.text: too long');
    const { link, queue, rejected } = await agentLink(server.port);
    queueSteps(queue, 3);
    link.start();
    await until('rejected.log', () => rejected().length > 0);
    expect(rejected()).toEqual([expect.objectContaining({ seq: 1, reason: 'invalid item.text: too long', item: step(1) })]);
    await until('head skipped', () => queue.acked === 1);
    server.accept();
    await until('fourth connection', () => server.connections[3]?.length === 2);
    expect(server.connections[3]).toEqual([2, 3]);
  });

  it('a sequence that is not in the queue (garbage from the server) charges nothing', async () => {
    const server = await rejectingServer(2, rejectionReason('confused', 77));
    const { link, queue, rejected } = await agentLink(server.port);
    queueSteps(queue, 2);
    link.start();
    await until('five connections', () => server.connections.length >= 5 && server.connections[4]!.length === 2);
    expect(rejected()).toEqual([]);
    expect(queue.acked).toBe(0);
  });
});

describe('what the agent does not charge, and how fast it retries (brief §8)', () => {
  it('a run of items the server rejects by name does not grow the back-off: the good report behind them is acknowledged in seconds', async () => {
    // Every item of run 5 is rejected by name, as the server does for a run retention deleted (owns: "does not exist").
    let closes = 0;
    const { port } = await handshakeServer((ws, msg) => {
      const m = msg as unknown as { type: string; seq: number; item: { runId: number } };
      if (m.type !== 'report' || ws.readyState !== ws.OPEN) return;
      if (m.item.runId === 5) {
        closes++;
        ws.close(4002, rejectionReason('run 5 does not exist', m.seq));
        return;
      }
      ws.send(JSON.stringify({ type: 'ack', seq: m.seq }));
    });
    // A long cap: with the back-off growing over the 12 rejections, the waits alone were 0.2+0.4+0.8+1.6+3.2+5×7 s ≈ 41 s.
    const { link, queue, rejected } = await agentLink(port, '5s');
    for (let n = 1; n <= 4; n++) queue.append(step(n));
    queue.append({ ...step(1), runId: 6 });
    queue.flush();
    const t0 = performance.now();
    link.start();
    await until('all acknowledged', () => queue.acked === 5);
    expect(closes).toBe(12);
    expect(rejected().map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    expect(performance.now() - t0).toBeLessThan(8_000); // 12 reconnects of the 200 ms step (100–200 ms each)
  }, 20_000);

  it('a 4002 the agent sends itself (a server frame it cannot read) charges nothing', async () => {
    // A newer server's field in an ack: the agent closes with 4002, and ws hands that code back to its close handler.
    const closes: { code: number; reason: string }[] = [];
    const { port } = await handshakeServer((ws, msg) => {
      const m = msg as unknown as { type: string };
      if (m.type === 'report') ws.send(JSON.stringify({ type: 'ack', seq: 0, newField: 1 }));
    }, { onConnection: (ws) => {
      ws.on('close', (code, reason) => closes.push({ code, reason: reason.toString() }));
    } });
    const { link, queue, rejected } = await agentLink(port);
    queue.append({ kind: 'finished', runId: 5, attempt: 1, at: 1, exitCode: 0, signal: null, timedOut: false });
    queue.flush();
    link.start();
    await until('five closes', () => closes.length >= 5);
    expect(closes.every((c) => c.code === 4002)).toBe(true);
    expect(rejected()).toEqual([]); // it was: the good report in rejected.log and acknowledged here (lost)
    expect(queue.acked).toBe(0);
  });

  it('the agent\'s own close reason fits in a close frame also when it quotes multi-byte text (ws threw, and the agent died)', async () => {
    const closes: { code: number; reason: string }[] = [];
    const { port } = await handshakeServer((ws, msg) => {
      const m = msg as unknown as { type: string };
      if (m.type === 'auth') {
        ws.send(JSON.stringify({ type: 'ack', seq: 1, ['é'.repeat(100)]: 1 }));
      }
    }, { onConnection: (ws) => {
      ws.on('close', (code, reason) => closes.push({ code, reason: reason.toString() }));
    } });
    const { link } = await agentLink(port);
    link.start();
    const first = await until('a close', () => closes[0]);
    expect(first.code).toBe(4002);
    expect(Buffer.byteLength(first.reason)).toBeLessThanOrEqual(123);
    expect(Buffer.from(first.reason).toString()).toBe(first.reason);
    await until('reconnected', () => closes.length >= 2); // still alive, and retrying
  });

  it('`[seq -]` (no queued item\'s fault: a second or late answer, a replay) charges nothing', async () => {
    const server = await rejectingServer(2, rejectionReason('kill-result for run 1, which was not asked to be killed', null));
    const { link, queue, rejected } = await agentLink(server.port);
    queueSteps(queue, 2);
    link.start();
    await until('five connections', () => server.connections.length >= 5 && server.connections[4]!.length === 2);
    expect(rejected()).toEqual([]);
    expect(queue.acked).toBe(0);
  });

  it('a named item that is not on disk yet is not charged; once it is, it is', async () => {
    const server = await rejectingServer(2, rejectionReason('invalid item.text: too long', 2));
    const { link, queue, rejected } = await agentLink(server.port);
    queueSteps(queue, 2);
    // As if the fsync of item 2 had not completed: it is sent (protocol 3 sends ahead) but not durable.
    let durable = 1;
    Object.defineProperty(queue, 'durableSeq', { get: () => durable, configurable: true });
    link.start();
    await until('five connections', () => server.connections.length >= 5 && server.connections[4]!.length === 2);
    expect(rejected()).toEqual([]);
    durable = 2;
    await until('rejected.log', () => rejected().length > 0);
    expect(rejected().map((r) => r.seq)).toEqual([2]);
  });

  it('a named item whose fsync hangs does not make the agent reconnect every 200 ms: the back-off grows', async () => {
    const server = await rejectingServer(2, rejectionReason('run 5 does not exist', 2));
    const { link, queue } = await agentLink(server.port, '5s');
    queueSteps(queue, 2);
    Object.defineProperty(queue, 'durableSeq', { get: () => 1, configurable: true }); // the fsync of item 2 never returns
    link.start();
    await new Promise((r) => setTimeout(r, 4000));
    // Growing waits (100–200, 200–400, 400–800, 800–1,600, 1,600–3,200 ms): at most 6 connections in 4 s; it was 24.
    expect(server.connections.length).toBeLessThanOrEqual(7);
  }, 20_000);

  it('named rejections restart the back-off at most 10 times a minute (a stream of bad reports is no reconnect storm)', async () => {
    let connections = 0;
    const { port } = await handshakeServer((ws, msg) => {
      const m = msg as unknown as { type: string; seq: number };
      // Every report is of a run the server no longer has: the first of each connection is named and rejected.
      if (m.type === 'report' && ws.readyState === ws.OPEN) ws.close(4002, rejectionReason('run 5 does not exist', m.seq));
    }, { onConnection: (ws) => {
      connections++;
    } });
    const { link, queue, rejected } = await agentLink(port, '5s');
    for (let n = 1; n <= 30; n++) queue.append(step(n));
    queue.flush();
    link.start();
    await new Promise((r) => setTimeout(r, 5000));
    // 10 fast reconnects (100–200 ms each), then 200–400, 400–800, 800–1,600, 1,600–3,200 ms: at most ~15 in 5 s.
    // Without the limit every one of the 90 rejections came back at the 200 ms step (30+ in 5 s).
    expect(connections).toBeGreaterThanOrEqual(10);
    expect(connections).toBeLessThanOrEqual(18);
    expect(rejected().length).toBeGreaterThanOrEqual(3); // the items are still charged and skipped as before
  }, 20_000);

  it('after closing over a server frame it cannot read, the agent acts on nothing that follows on that connection', async () => {
    let welcomed = 0;
    const { port } = await handshakeServer((ws, m) => {
      if (m.type !== 'auth') return;
      welcomed++;
      ws.send(JSON.stringify({ type: 'ack', seq: 0, newField: 1 })); // unreadable to this agent: it closes
      ws.send(JSON.stringify({ type: 'kill', runId: 9 })); // its kill-result could not be sent any more
    });
    const data = mkdtempSync(join(tmpdir(), 'bz-link-rejected-'));
    const config = compileAgentConfig({
      env: { BATCHALYZER_AGENT_KEY: generateAgentKey().key }, cwd: data,
      flags: { name: 'a1', server: [`http://127.0.0.1:${port}`], data, reconnectMax: '100ms' },
    });
    const queue = DiskQueue.open(join(data, 'queue'));
    const kills: number[] = [];
    const link = new ServerLink(config, queue, {
      hello: () => ({ name: 'a1' }) as never, dispatch: () => null, kill: (runId) => (kills.push(runId), true), activeRuns: () => [],
    }, createLog('silent'));
    cleanup.push(() => link.stop(), () => queue.close());
    link.start();
    await until('three connections', () => welcomed >= 3);
    expect(kills).toEqual([]);
  });
});
