import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
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

  it('lets a process that embeds it end by itself after stop (the checkpoint thread does not leave it hanging)', () => {
    const data = tempDir();
    const from = createRequire(join(ROOT, 'package.json'));
    const url = (m: string) => JSON.stringify(pathToFileURL(from.resolve(m)).href);
    // A module file: with `node -e`, an unfinished top-level await does not show in the exit code.
    const script = join(data, 'embed.mjs');
    writeFileSync(script, `import { pino } from ${url('pino')};
      import { compileConfig } from ${url('@batchalyzer/core')};
      import { createServer } from ${url('@batchalyzer/server')};
      const dir = ${JSON.stringify(data)};
      const server = await createServer(compileConfig({ flags: { data: dir, listen: '127.0.0.1:0', timezone: 'UTC' }, env: {}, cwd: dir, hostTimezone: 'UTC' }), { logger: pino({ level: 'silent' }) });
      await server.start();
      await new Promise((r) => setTimeout(r, 200));
      await server.stop();
      console.log('stopped');`);
    // Throws unless the exit code is 0 (it was 13: the top-level await never finished, as nothing held the loop).
    expect(execFileSync(process.execPath, [script], { encoding: 'utf8' }).trim()).toBe('stopped');
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
