import WebSocket from 'ws';
import { AGENT_PATH, generateAgentKey, PROTOCOL_VERSION, signChallenge } from '@batchalyzer/protocol';
import type { BatchalyzerServer } from '@batchalyzer/server';
import { until } from './agent.js';

export type Frame = Record<string, unknown>;

/**
 * An agent played by a protocol client against an in-process server (brief §8): registered with a fresh key, it
 * answers the challenge, says hello and waits until the server counts it connected. `onFrame` sees every frame the
 * server sends (after the client's own handling), with `send` to answer.
 */
export async function protocolAgent(
  server: BatchalyzerServer,
  opts: { name?: string; activeRuns?: number[]; onFrame?: (m: Frame, send: (m: unknown) => void) => void } = {},
): Promise<{ ws: WebSocket; send: (m: unknown) => void; frames: Frame[]; closed: Promise<{ code: number; reason: string }> }> {
  const name = opts.name ?? 'a1';
  const key = generateAgentKey();
  await server.store.registerAgent(name, key.publicKey, Date.now());
  const frames: Frame[] = [];
  const ws = new WebSocket(server.url().replace(/^http/, 'ws') + AGENT_PATH);
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
  const send = (m: unknown) => ws.send(JSON.stringify(m));
  ws.on('message', (d: Buffer) => {
    const m = JSON.parse(d.toString()) as Frame;
    frames.push(m);
    if (m.type === 'challenge') send({ type: 'auth', signature: signChallenge(key.key, m.nonce as string, name, PROTOCOL_VERSION) });
    opts.onFrame?.(m, send);
  });
  await new Promise((r) => ws.once('open', r));
  send({
    type: 'hello', protocol: PROTOCOL_VERSION, agent: name, version: 'test', clock: Date.now(), facts: {},
    capabilities: { command: true, shell: true, node: true, checks: { builtin: true, plugin: true, node: true } },
    queueId: `${name}-queue-0001`, activeRuns: opts.activeRuns ?? [], draining: false,
  });
  await until(`${name} connected`, async () => server.agents.connected().some((a) => a.name === name) || undefined);
  return { ws, send, frames, closed };
}
