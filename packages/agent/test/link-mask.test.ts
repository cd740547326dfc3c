import { mkdtempSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { compileAgentConfig } from '../src/config.js';
import { ServerLink } from '../src/link.js';
import { createLog } from '../src/log.js';
import { DiskQueue } from '../src/queue.js';

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0).reverse()) c();
});

describe('the agent link frames', () => {
  it('go out masked with an all-zero key: the payload is on the wire as it is (no copy, no XOR)', async () => {
    const wss = new WebSocketServer({ port: 0 });
    cleanup.push(() => wss.close());
    await new Promise((r) => wss.once('listening', r));
    const raw = new Promise<Buffer>((resolve) => {
      wss.once('connection', (_ws, req) => req.socket.once('data', (d: Buffer) => resolve(d)));
    });
    const data = mkdtempSync(join(tmpdir(), 'batchalyzer-link-'));
    const config = compileAgentConfig({
      env: { BATCHALYZER_AGENT_KEY: 'bza1.k' }, cwd: data,
      flags: { name: 'a1', server: [`http://127.0.0.1:${(wss.address() as AddressInfo).port}`], data },
    });
    const queue = DiskQueue.open(join(data, 'queue'));
    const link = new ServerLink(config, queue, { hello: () => ({ name: 'a1' }) as never, dispatch: () => null, kill: () => false, activeRuns: () => [] }, createLog('silent'));
    link.start();
    cleanup.push(() => link.stop(), () => queue.close());
    const frame = await raw;
    expect(frame[1]! & 0x80).toBe(0x80); // masked, as RFC 6455 requires of a client
    const len = frame[1]! & 0x7f;
    const keyAt = len === 126 ? 4 : len === 127 ? 10 : 2;
    expect([...frame.subarray(keyAt, keyAt + 4)]).toEqual([0, 0, 0, 0]);
    expect(frame.subarray(keyAt + 4).toString()).toMatch(/^\{"type":"hello"/);
  });
});
