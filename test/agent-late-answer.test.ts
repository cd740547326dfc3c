import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { pino } from 'pino';
import { compileConfig } from '@batchalyzer/core';
import { type BatchalyzerServer, createServer, type DispatchPayload } from '@batchalyzer/server';
import { tempDir } from './support/cli.js';
import { until } from './support/agent.js';
import { protocolAgent } from './support/protocol-agent.js';

let server: BatchalyzerServer | undefined;
let ws: WebSocket | undefined;
afterEach(async () => {
  ws?.terminate();
  await server?.stop();
  server = ws = undefined;
});

/** An in-process server with a short request time-out, and a protocol client that answers only when told. */
async function slowAgent() {
  const dir = tempDir();
  const config = compileConfig({ flags: { data: dir, listen: '127.0.0.1:0', timezone: 'UTC' }, env: {}, cwd: dir, hostTimezone: 'UTC' });
  server = await createServer(config, { logger: pino({ level: 'silent' }), agents: { dispatchTimeoutMs: 200 } });
  await server.start();
  const { ws: client, send, frames, closed } = await protocolAgent(server);
  ws = client;
  /** A heartbeat and its ack: the server read everything sent before it, and the link is still up. */
  const roundTrip = async () => {
    const acks = frames.filter((f) => f.type === 'ack').length;
    send({ type: 'heartbeat', at: Date.now(), activeRuns: [] });
    await until('ack', () => frames.filter((f) => f.type === 'ack').length > acks || undefined, 5_000, 5);
  };
  return { send, closed, roundTrip };
}

const payload: DispatchPayload = {
  runId: 1, attempt: 1, jobName: 'j', planDate: '2026-06-01', nominalAt: null, run: { command: ['/bin/true'] }, env: {}, secrets: [],
  killGraceMs: 10_000, maxOutputBytes: 1024,
};

describe('late answers from a slow agent', () => {
  it('an answer after the request timed out is ignored, not taken for a protocol violation; a second one still is', async () => {
    const { send, closed, roundTrip } = await slowAgent();
    await expect(server!.agents.dispatch('a1', payload)).rejects.toThrow(/did not answer within 200 ms/);
    await expect(server!.agents.kill('a1', 7)).rejects.toThrow(/did not answer within 200 ms/);
    send({ type: 'accepted', runId: 1, attempt: 1 });
    send({ type: 'kill-result', runId: 7, found: false });
    await roundTrip();
    expect(server!.agents.connected().map((a) => a.name)).toEqual(['a1']);

    send({ type: 'accepted', runId: 1, attempt: 1 }); // answered already: this one is a violation
    const c = await closed;
    expect(c.code).toBe(4002);
    expect(c.reason).toMatch(/accepted for run 1 attempt 1, which was not dispatched on this connection/);
  });
});
