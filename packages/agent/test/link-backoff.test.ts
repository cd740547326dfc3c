import { mkdtempSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { generateAgentKey } from '@batchalyzer/protocol';
import { type WebSocket, WebSocketServer } from 'ws';
import { compileAgentConfig } from '../src/config.js';
import { ServerLink, STABLE_LINK_MS } from '../src/link.js';
import { createLog } from '../src/log.js';
import { DiskQueue } from '../src/queue.js';
import { cleanup, handshakeServer, until } from './support/link.js';

/**
 * A server that welcomes the agent and then does what `afterWelcome` says with the n-th connection (from 0): as a
 * server whose store fails does, closing with 1011 at the agent's first report. Records when each was welcomed.
 */
async function server(afterWelcome: (ws: WebSocket, n: number) => void) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  cleanup.push(() => wss.close());
  await new Promise((r) => wss.once('listening', r));
  const welcomed: number[] = [];
  wss.on('connection', (ws) => {
    ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString()) as { type: string };
      if (m.type === 'hello') ws.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(16), serverTime: Date.now() }));
      if (m.type === 'auth') {
        ws.send(JSON.stringify({ type: 'welcome', serverTime: Date.now(), heartbeatMs: 60_000 }));
        welcomed.push(Date.now());
        afterWelcome(ws, welcomed.length - 1);
      }
    });
  });
  return { port: (wss.address() as AddressInfo).port, welcomed };
}

function start(port: number, items = 0) {
  const data = mkdtempSync(join(tmpdir(), 'bz-link-backoff-'));
  const config = compileAgentConfig({
    env: { BATCHALYZER_AGENT_KEY: generateAgentKey().key }, cwd: data,
    flags: { name: 'a1', server: [`http://127.0.0.1:${port}`], data, reconnectMax: '10s' },
  });
  const queue = DiskQueue.open(join(data, 'queue'));
  for (let n = 1; n <= items; n++) queue.append({ kind: 'step', runId: 5, attempt: 1, at: 1, step: n, stepKind: 'message', text: `step ${n}` });
  queue.flush();
  const link = new ServerLink(config, queue, { hello: () => ({ name: 'a1' }) as never, dispatch: () => null, kill: () => false, activeRuns: () => [] }, createLog('silent'));
  link.start();
  cleanup.push(() => link.stop(), () => queue.close());
  return queue;
}

const gaps = (t: number[]) => t.slice(1).map((x, i) => x - t[i]!);

describe('reconnect back-off after closes that follow the welcome (brief §8)', () => {
  it('a server that welcomes and closes at once (1011, store failing) is retried with a growing back-off, not every 200 ms', async () => {
    const s = await server((ws) => ws.close(1011, 'report not stored; reconnect and re-send'));
    start(s.port);
    await until('six connections', () => s.welcomed.length >= 6);
    const g = gaps(s.welcomed);
    // Steps 200, 400, 800, 1600, 3200 ms, each waited 50–100 %: the fifth wait is at least 1.6 s (it was 100–200 ms).
    expect(g[4]).toBeGreaterThanOrEqual(1500);
    expect(g[3]).toBeGreaterThanOrEqual(750);
  });

  it('starts over once the server acknowledged something new', async () => {
    // Each connection commits one more item (an ack that moves the queue on) before the server closes it.
    const s = await server((ws, n) => {
      ws.send(JSON.stringify({ type: 'ack', seq: n + 1 }));
      setTimeout(() => ws.close(1011, 'report not stored; reconnect and re-send'), 20);
    });
    const queue = start(s.port, 10);
    await until('six connections', () => s.welcomed.length >= 6);
    expect(queue.acked).toBeGreaterThanOrEqual(5);
    for (const g of gaps(s.welcomed)) expect(g).toBeLessThan(1000); // 200 ms steps (waits of 100–200 ms), never 1.6 s
  });

  it('starts over once a connection stayed up long enough', async () => {
    // Four quick closes grow the back-off; the fifth connection stays up past STABLE_LINK_MS, and the next wait is short again.
    const s = await server((ws, n) => setTimeout(() => ws.close(1011, 'report not stored; reconnect and re-send'), n === 4 ? STABLE_LINK_MS + 300 : 0));
    start(s.port);
    await until('six connections', () => s.welcomed.length >= 6);
    const g = gaps(s.welcomed);
    expect(g[3]).toBeGreaterThanOrEqual(750); // grown: 1600 ms step
    expect(g[4]! - (STABLE_LINK_MS + 300)).toBeLessThan(1000); // after the long connection: a 200 ms step, not 3.2 s
  }, 30_000);

  it('a wall-clock step during a short connection is no uptime: the back-off still grows', async () => {
    // The wall clock jumps 10 s forward (NTP, a suspended VM) while each connection is up for 20 ms.
    const realNow = Date.now.bind(Date);
    let offset = 0;
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() + offset);
    cleanup.push(() => vi.restoreAllMocks());
    const welcomed: number[] = [];
    const s = await server((ws) => {
      welcomed.push(performance.now());
      setTimeout(() => {
        offset += 10_000;
        ws.close(1011, 'report not stored; reconnect and re-send');
      }, 20);
    });
    start(s.port);
    for (let i = 0; i < 3000 && welcomed.length < 6; i++) await new Promise((r) => setTimeout(r, 5)); // no Date.now deadline
    expect(welcomed.length).toBeGreaterThanOrEqual(6);
    const g = gaps(welcomed);
    expect(g[4]).toBeGreaterThanOrEqual(1500); // grown as in the first test; it was reset to 100–200 ms by the clock step
  }, 30_000);

  it('a wall-clock step is no silence: the heartbeat check keeps a healthy link', async () => {
    const realNow = Date.now.bind(Date);
    let offset = 0;
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() + offset);
    cleanup.push(() => vi.restoreAllMocks());
    let connections = 0;
    let beats = 0;
    const { port } = await handshakeServer((ws, m) => {
      if (m.type !== 'heartbeat') return;
      beats++;
      ws.send(JSON.stringify({ type: 'ack', seq: 0 }));
      setTimeout(() => (offset += 60_000), 10); // the wall clock leaps a minute after every answer, before the next beat
    }, { heartbeatMs: 50, onConnection: () => connections++ });
    start(port);
    for (let i = 0; i < 3000 && beats < 10; i++) await new Promise((r) => setTimeout(r, 5));
    expect(beats).toBeGreaterThanOrEqual(10);
    expect(connections).toBe(1); // with Date.now the second beat saw "three heartbeats of silence" and reconnected
  }, 30_000);
});
