import type { AddressInfo } from 'node:net';
import { afterEach } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';

/** Undone after each test, last first (servers, links, queues). Registered in every file that imports this. */
export const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0).reverse()) c();
});

/** Polls until f returns something truthy; monotonic time, so tests that mock Date.now can use it. */
export async function until<T>(what: string, f: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v) return v;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A stand-in server on loopback that does the handshake (hello → challenge, auth → welcome with `heartbeatMs`) and
 * hands every parsed frame, the handshake's included, to `onMessage`. Closed after the test.
 */
export async function handshakeServer(
  onMessage: (ws: WebSocket, m: { type: string; [k: string]: unknown }) => void,
  opts: { heartbeatMs?: number; onConnection?: (ws: WebSocket) => void } = {},
): Promise<{ port: number; wss: WebSocketServer }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  cleanup.push(() => wss.close());
  await new Promise((r) => wss.once('listening', r));
  wss.on('connection', (ws) => {
    opts.onConnection?.(ws);
    ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString()) as { type: string };
      if (m.type === 'hello') ws.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(16), serverTime: Date.now() }));
      if (m.type === 'auth') ws.send(JSON.stringify({ type: 'welcome', serverTime: Date.now(), heartbeatMs: opts.heartbeatMs ?? 60_000 }));
      onMessage(ws, m);
    });
  });
  return { port: (wss.address() as AddressInfo).port, wss };
}
