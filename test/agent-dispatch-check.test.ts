import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { pino } from 'pino';
import { compileConfig } from '@batchalyzer/core';
import { type BatchalyzerServer, createServer, type DispatchPayload } from '@batchalyzer/server';
import { tempDir } from './support/cli.js';
import { protocolAgent } from './support/protocol-agent.js';

let server: BatchalyzerServer | undefined;
let ws: WebSocket | undefined;
afterEach(async () => {
  ws?.terminate();
  await server?.stop();
  server = ws = undefined;
});

/** An in-process server and one protocol-speaking client that records what it is sent (and accepts dispatches). */
async function connectedAgent(): Promise<{ frames: Record<string, unknown>[] }> {
  const dir = tempDir();
  server = await createServer(compileConfig({ flags: { data: dir, listen: '127.0.0.1:0', timezone: 'UTC' }, env: {}, cwd: dir, hostTimezone: 'UTC' }), { logger: pino({ level: 'silent' }) });
  await server.start();
  const agent = await protocolAgent(server, {
    onFrame: (m, send) => {
      if (m.type !== 'dispatch') return;
      const p = m.payload as { runId: number; attempt: number };
      send({ type: 'accepted', runId: p.runId, attempt: p.attempt });
    },
  });
  ws = agent.ws;
  return { frames: agent.frames };
}

const payload = (over: Partial<DispatchPayload> = {}): DispatchPayload => ({
  runId: 1, attempt: 1, jobName: 'j', planDate: '2026-06-01', nominalAt: null, run: { command: ['/bin/true'] }, env: { A: 'b' }, secrets: [],
  killGraceMs: 10_000, maxOutputBytes: 1024, ...over,
});

/** The server checks every dispatch against the protocol before sending it (hub.ts, checkPayload). */
describe('dispatch payload check', () => {
  it('refuses a payload that breaks the protocol, in the run\'s own fields even after a run of the same job was sent', async () => {
    const { frames } = await connectedAgent();
    await server!.agents.dispatch('a1', payload({ runId: 1 }));
    await server!.agents.dispatch('a1', payload({ runId: 2 }));
    // Same job-derived part as the runs sent above: the run's own fields are still checked.
    await expect(server!.agents.dispatch('a1', payload({ runId: 3, planDate: 'June 1st' }))).rejects.toThrow(/run 3 cannot be sent/);
    await expect(server!.agents.dispatch('a1', payload({ runId: 4, attempt: 0 }))).rejects.toThrow(/run 4 cannot be sent/);
    // A job-derived part never seen, or one that differs from a checked one in any field.
    await expect(server!.agents.dispatch('a1', payload({ runId: 5, killGraceMs: -1 }))).rejects.toThrow(/run 5 cannot be sent/);
    await expect(server!.agents.dispatch('a1', payload({ runId: 6, env: { A: 1 as unknown as string } }))).rejects.toThrow(/run 6 cannot be sent/);
    await expect(server!.agents.dispatch('a1', { ...payload({ runId: 7 }), extra: true } as DispatchPayload)).rejects.toThrow(/run 7 cannot be sent/);
    expect(frames.filter((f) => f.type === 'dispatch').map((f) => (f.payload as { runId: number }).runId)).toEqual([1, 2]);
  });
});
