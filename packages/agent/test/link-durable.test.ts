import { execFileSync } from 'node:child_process';
import { mkdtempSync, open, openSync, closeSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateAgentKey } from '@batchalyzer/protocol';
import { type WebSocket, WebSocketServer } from 'ws';
import { compileAgentConfig } from '../src/config.js';
import { ServerLink } from '../src/link.js';
import { createLog } from '../src/log.js';
import { DiskQueue } from '../src/queue.js';
import { cleanup, until } from './support/link.js';

/**
 * Every thread of libuv's pool blocked in open() of a FIFO until release(): the queue's write and fdatasync,
 * handed to the pool after these, cannot run before then (no timing involved).
 */
function blockThreadPool(): { release: () => Promise<void> } {
  const fifo = join(mkdtempSync(join(tmpdir(), 'bz-fifo-')), 'hold');
  execFileSync('mkfifo', [fifo]);
  const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const opened = Array.from({ length: threads }, () => new Promise<void>((r) => open(fifo, 'r', (err, fd) => (err ? r() : closeSync(fd), r()))));
  return {
    release: async () => {
      // Returns once a reader is there; the write end stays open until every reader got through: a pool thread that
      // reaches its open() only after a close would wait for a writer forever (and with it the queue's writes).
      const w = openSync(fifo, 'w');
      await Promise.all(opened);
      closeSync(w);
    },
  };
}

/** A server speaking just enough of the protocol: challenge, welcome, and a kill to probe the agent's order. */
async function fakeServer() {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  cleanup.push(() => wss.close());
  await new Promise((r) => wss.once('listening', r));
  const frames: Record<string, unknown>[] = [];
  let socket: WebSocket | undefined;
  wss.on('connection', (ws) => {
    socket = ws;
    ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString()) as Record<string, unknown>;
      frames.push(m);
      if (m.type === 'hello') ws.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(16), serverTime: Date.now() }));
      if (m.type === 'auth') ws.send(JSON.stringify({ type: 'welcome', serverTime: Date.now(), heartbeatMs: 60_000 }));
    });
  });
  return { port: (wss.address() as AddressInfo).port, frames, send: (m: unknown) => socket!.send(JSON.stringify(m)) };
}

async function connected(protocol: string) {
  const server = await fakeServer();
  const data = mkdtempSync(join(tmpdir(), 'bz-link-durable-'));
  const config = compileAgentConfig({
    env: { BATCHALYZER_AGENT_KEY: generateAgentKey().key }, cwd: data,
    flags: { name: 'a1', server: [`http://127.0.0.1:${server.port}`], data, protocolVersion: protocol },
  });
  const queue = DiskQueue.open(join(data, 'queue'));
  const link = new ServerLink(config, queue, { hello: () => ({ name: 'a1' }) as never, dispatch: () => null, kill: () => false, activeRuns: () => [] }, createLog('silent'));
  link.start();
  cleanup.push(() => link.stop(), () => queue.close());
  await until('welcome', () => link.connected);
  return { server, queue };
}

const step = { kind: 'step' as const, runId: 5, attempt: 1, at: 1, step: 1, stepKind: 'message' as const, text: 'hello' };

describe('the agent link and the queue\'s fsync', () => {
  it('protocol 3: an item goes out before its fsync returned, and the durable watermark follows once it has', async () => {
    const { server, queue } = await connected('3');
    await until('durable after welcome', () => server.frames.find((m) => m.type === 'durable'));
    expect(server.frames.filter((m) => m.type === 'durable')).toEqual([{ type: 'durable', seq: 0 }]);
    const pool = blockThreadPool();
    let durableAtArrival = -1;
    const seq = queue.append(step);
    const report = await until('report', () => server.frames.find((m) => m.type === 'report'));
    durableAtArrival = queue.durableSeq;
    expect(report).toMatchObject({ type: 'report', seq, item: step });
    expect(durableAtArrival).toBe(0); // sent while its write and fsync wait in the (blocked) thread pool
    // The server acknowledges nothing beyond the agent's durable watermark, and the queue forgets nothing beyond it.
    queue.ack(seq);
    expect(queue.acked).toBe(0);
    await pool.release();
    expect(await until('durable 1', () => server.frames.find((m) => m.type === 'durable' && m.seq === seq))).toBeTruthy();
    server.send({ type: 'ack', seq });
    await until('acked', () => queue.acked === seq);
    expect(queue.length).toBe(0);
  });

  it('protocol 2: an item goes out only after its fsync returned, and no durable frame is sent', async () => {
    const { server, queue } = await connected('2');
    const pool = blockThreadPool();
    const seq = queue.append(step);
    // A round trip through the agent: had the item been sendable, it would have left before the answer.
    server.send({ type: 'kill', runId: 77 });
    await until('kill-result', () => server.frames.find((m) => m.type === 'kill-result'));
    expect(server.frames.filter((m) => m.type === 'report')).toEqual([]);
    await pool.release();
    const report = await until('report', () => server.frames.find((m) => m.type === 'report'));
    expect(queue.durableSeq).toBeGreaterThanOrEqual(seq);
    expect(report).toMatchObject({ type: 'report', seq, item: step });
    expect(server.frames.filter((m) => m.type === 'durable')).toEqual([]);
  });
});

describe('the queue serves items before they are on disk (protocol 3)', () => {
  it('from memory while pending, from the batch in the thread pool until its write landed, then from the file', async () => {
    const q = DiskQueue.open(mkdtempSync(join(tmpdir(), 'bz-queue-ahead-')), 0); // no memory budget: sent items are read back
    cleanup.push(() => q.close());
    const data = Buffer.alloc(32 * 1024, 0x61); // bulk: its batch is written in the thread pool, not on the loop
    const pool = blockThreadPool();
    const seq = q.append({ kind: 'output', runId: 7, attempt: 1, at: 1, stream: 'stdout', chunk: 1, data });
    expect(q.get(seq)).toBeUndefined(); // not durable: a protocol-2 link does not see it
    expect(q.nextAtOrAfter(1, q.lastSeq)).toBe(seq);
    expect((q.get(seq, q.lastSeq)!.item as { data: Buffer }).data.equals(data)).toBe(true);
    q.release(seq); // sent
    await new Promise((r) => setImmediate(r)); // the group commit handed the batch to the (blocked) thread pool
    // Its bytes are not in the file yet: a re-send (after a reconnect) must not read them back from there.
    expect((q.get(seq, q.lastSeq)!.item as { data: Buffer }).data.equals(data)).toBe(true);
    q.ack(seq);
    expect(q.acked).toBe(0); // never forgotten before it is durable
    const durable = new Promise((r) => q.once('durable', r));
    await pool.release();
    await durable;
    expect((q.get(seq)!.item as { data: Buffer }).data.equals(data)).toBe(true); // read back from the segment
  });
});
