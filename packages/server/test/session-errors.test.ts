import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { CLOSE } from '@batchalyzer/protocol';
import { AgentSession } from '../src/agents/session.js';

/** Just enough of a ws socket to see what the session sends and how it closes. */
class FakeWs extends EventEmitter {
  OPEN = 1;
  readyState = 1;
  sent: string[] = [];
  closed: { code: number; reason: string } | undefined;
  send(d: string) {
    this.sent.push(d);
  }
  close(code: number, reason: string) {
    this.closed = { code, reason };
    this.readyState = 3;
  }
  terminate() {
    this.readyState = 3;
  }
  pause() {}
  resume() {}
}

function readySession(hubOverrides: Record<string, unknown>) {
  const ws = new FakeWs();
  const quiet = { warn() {}, error() {}, info() {}, debug() {} };
  const hub = {
    store: {}, events: { emit() {} }, logger: quiet,
    config: { handshakeTimeoutMs: 60_000, maxFrameBytes: 1 << 20, heartbeatMs: 10_000, maxPendingReports: 100, ackDelayMs: 5 },
    pacer: { enter: () => undefined, leave() {} }, monotonic: () => performance.now(),
    claim: () => null, online: async () => {}, offline() {}, draining() {}, seen() {},
    acceptedSeq: () => 0, setAcceptedSeq() {}, wasDispatchedTo: async () => false, holderOf: () => undefined,
    deliver: async () => {}, deliverOutput: async () => {},
    ...hubOverrides,
  };
  const s = new AgentSession(ws as never, { socket: { remoteAddress: '127.0.0.1', remotePort: 1 } } as never, hub as never);
  Object.assign(s, { state: 'ready', name: 'a1', hello: { protocol: 3 }, connectedAt: 1 });
  return { s, ws };
}

describe('agent session: the server\'s own failures (brief §8)', () => {
  it('an exception while handling a frame closes with 1011 (reconnect and re-send), never a 4002 that would charge a queued report', () => {
    const { ws } = readySession({ seen() { throw new Error('bug in seen'); } });
    ws.emit('message', Buffer.from(JSON.stringify({ type: 'heartbeat', at: Date.now(), activeRuns: [] })), false);
    expect(ws.closed?.code).toBe(CLOSE.serverError);
    expect(ws.closed?.reason).toMatch(/reconnect and re-send/);
  });
});
