import { mkdtempSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { compileAgentConfig } from '../src/config.js';
import { ServerLink, zeroMaskAllowed } from '../src/link.js';
import { createLog } from '../src/log.js';
import { DiskQueue } from '../src/queue.js';

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0).reverse()) c();
});

/** The first frame the agent sends to a server listening on `listen`, reached as `host`, and its masking key. */
async function firstFrame(listen: string, host: string): Promise<{ key: number[]; payload: string }> {
  const wss = new WebSocketServer({ port: 0, host: listen });
  cleanup.push(() => wss.close());
  await new Promise((r) => wss.once('listening', r));
  const raw = new Promise<Buffer>((resolve) => {
    // Ahead of the server's `ws`, which unmasks the received bytes in place.
    wss.once('connection', (_ws, req) => req.socket.prependOnceListener('data', (d: Buffer) => resolve(Buffer.from(d))));
  });
  const data = mkdtempSync(join(tmpdir(), 'batchalyzer-link-'));
  const config = compileAgentConfig({
    env: { BATCHALYZER_AGENT_KEY: 'bza1.k' }, cwd: data,
    flags: { name: 'a1', server: [`http://${host}:${(wss.address() as AddressInfo).port}`], data },
  });
  const queue = DiskQueue.open(join(data, 'queue'));
  const link = new ServerLink(config, queue, { hello: () => ({ name: 'a1' }) as never, dispatch: () => null, kill: () => false, activeRuns: () => [] }, createLog('silent'));
  link.start();
  cleanup.push(() => link.stop(), () => queue.close());
  const frame = await raw;
  expect(frame[1]! & 0x80).toBe(0x80); // masked, as RFC 6455 requires of a client
  const len = frame[1]! & 0x7f;
  const keyAt = len === 126 ? 4 : len === 127 ? 10 : 2;
  const key = [...frame.subarray(keyAt, keyAt + 4)];
  const payload = Buffer.from(frame.subarray(keyAt + 4).map((b, i) => b ^ key[i % 4]!));
  return { key, payload: payload.toString() };
}

const outward = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address;

describe('the agent link frames', () => {
  it('to a loopback server go out masked with an all-zero key: the payload is on the wire as it is (no copy, no XOR)', async () => {
    const { key, payload } = await firstFrame('127.0.0.1', '127.0.0.1');
    expect(key).toEqual([0, 0, 0, 0]);
    expect(payload).toMatch(/^\{"type":"hello"/);
  });

  it.skipIf(!outward)('to a server over plain ws:// on another address go out with a random key (RFC 6455 §5.3)', async () => {
    const { key, payload } = await firstFrame(outward!, outward!);
    expect(key).not.toEqual([0, 0, 0, 0]); // a random key is all zeros once in 2^32
    expect(payload).toMatch(/^\{"type":"hello"/);
  });

  it('use the zero key only where no intermediary can read them: wss://, or ws:// to a loopback host', () => {
    for (const url of ['wss://batchalyzer.example/agent', 'ws://127.0.0.1:8080/agent', 'ws://127.3.2.1/agent', 'ws://localhost:8080/agent', 'ws://[::1]:8080/agent', 'ws://LOCALHOST/agent']) {
      expect(zeroMaskAllowed(url), url).toBe(true);
    }
    for (const url of ['ws://batchalyzer.example:8080/agent', 'ws://10.0.0.5/agent', 'ws://127.example.com/agent', 'ws://[::2]/agent', 'ws://localhost.example/agent', 'not a url']) {
      expect(zeroMaskAllowed(url), url).toBe(false);
    }
  });
});
