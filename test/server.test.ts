import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, spawnCli, tempDir, waitForOutput } from './support/cli.js';

describe('batchalyzer server', () => {
  it('applies the demo, answers /api/v1/health as soon as it listens, and stops cleanly on SIGTERM', async () => {
    const data = tempDir();
    const child = spawnCli(['server', '--data', data, '--listen', '127.0.0.1:0', '--apply', join(ROOT, 'examples', 'demo.yaml'), '--log-level', 'warn']);
    try {
      const [, url] = await waitForOutput(child, /listening on (http:\/\/\S+)/);
      const res = await fetch(`${url}/api/v1/health`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { version: string };
      expect(body).toMatchObject({ status: 'ok', ready: true, store: { kind: 'sqlite', ok: true } });
      expect(body.version).toMatch(/^\d+\.\d+\.\d+/);
      const missing = await fetch(`${url}/api/v2/nothing`);
      expect(missing.status).toBe(404);
      expect(((await missing.json()) as { error: { message: string } }).error.message).toMatch(/\/api\/v1/);
    } finally {
      child.kill('SIGTERM');
    }
    const code = await new Promise((r) => child.on('exit', (c) => r(c)));
    expect(code).toBe(0);
  });

  it('refuses a bad configuration with a precise message', async () => {
    const child = spawnCli(['server', '--data', tempDir(), '--listen', 'nowhere', '--log-level', 'warn']);
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    const code = await new Promise((r) => child.on('exit', (c) => r(c)));
    expect(code).toBe(1);
    expect(err).toMatch(/--listen: "nowhere" is not a listen address; write HOST:PORT/);
  });
});
