import { mkdtempSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { allocOutputBuffer, generateAgentKey } from '@batchalyzer/protocol';
import { type WebSocket, WebSocketServer } from 'ws';
import { compileAgentConfig } from '../src/config.js';
import { ServerLink } from '../src/link.js';
import { createLog } from '../src/log.js';
import { DiskQueue } from '../src/queue.js';
import { cleanup, until } from './support/link.js';

// The agent reuses a chunk's buffer only when nothing can read it any more (agent.ts recycle): one condition is
// that no frame over it is still in ws, which ServerLink.sending() answers.
describe('the link knows which output buffers ws still holds', () => {
  it('sending() is true while a frame over the bytes waits in ws (the server does not read), false once written', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    cleanup.push(() => wss.close());
    await new Promise((r) => wss.once('listening', r));
    let server: WebSocket | undefined;
    let outputs = 0;
    wss.on('connection', (ws) => {
      server = ws;
      ws.on('message', (d: Buffer, binary: boolean) => {
        if (binary) return void outputs++;
        const m = JSON.parse(d.toString()) as { type: string };
        if (m.type === 'hello') ws.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(16), serverTime: Date.now() }));
        if (m.type === 'auth') {
          ws.send(JSON.stringify({ type: 'welcome', serverTime: Date.now(), heartbeatMs: 60_000 }));
          (ws as unknown as { _socket: { pause(): void } })._socket.pause(); // reads nothing more: the agent's writes back up
        }
      });
    });
    const data = mkdtempSync(join(tmpdir(), 'bz-link-held-'));
    const config = compileAgentConfig({
      env: { BATCHALYZER_AGENT_KEY: generateAgentKey().key }, cwd: data,
      flags: { name: 'a1', server: [`http://127.0.0.1:${(wss.address() as AddressInfo).port}`], data },
    });
    const queue = DiskQueue.open(join(data, 'queue'));
    const link = new ServerLink(config, queue, { hello: () => ({ name: 'a1' }) as never, dispatch: () => null, kill: () => false, activeRuns: () => [] }, createLog('silent'));
    cleanup.push(() => link.stop(), () => queue.close());
    const chunks = Array.from({ length: 64 }, (_, i) => allocOutputBuffer(256 * 1024).fill(i));
    chunks.forEach((d, i) => queue.append({ kind: 'output', runId: 1, attempt: 1, at: 1, stream: 'stdout', chunk: i + 1, data: d }));
    queue.flush();
    link.start();
    // Some frames were handed to ws but cannot be written while the server does not read.
    await until('a frame held by ws', () => chunks.some((d) => link.sending(d)));
    await new Promise((r) => setTimeout(r, 50));
    expect(chunks.some((d) => link.sending(d))).toBe(true);
    (server as unknown as { _socket: { resume(): void } })._socket.resume();
    await until('every frame received', () => outputs === chunks.length);
    await until('no frame held', () => chunks.every((d) => !link.sending(d)));
  });
});
