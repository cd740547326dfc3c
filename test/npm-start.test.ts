import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStore } from '@batchalyzer/store';
import { ROOT, tempDir, waitForOutput } from './support/cli.js';
import { until } from './support/agent.js';

/** What `npm start` runs: the server with the demo applied and a local agent that runs the demo jobs. */
describe('npm start', () => {
  it('starts the server and a local agent, answers health, runs demo jobs, and stops cleanly', { timeout: 90_000 }, async () => {
    const data = tempDir();
    const child = spawn(process.execPath, [join(ROOT, 'scripts', 'start.mjs'), '--data', data, '--listen', '127.0.0.1:0', '--log-level', 'warn'], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const [, url] = await waitForOutput(child, /server: +(http:\/\/\S+)/);
      const health = (await (await fetch(`${url}/api/v1/health`)).json()) as { status: string };
      expect(health.status).toBe('ok');
      const store = await openStore({ kind: 'sqlite', path: join(data, 'batchalyzer.db') }, { migrate: false });
      try {
        await until('the local agent to connect', async () => (await store.getAgent('local'))?.status === 'connected', 30_000, 200);
        const done = await until('a demo run to succeed', async () => (await store.listRuns({ state: ['succeeded'] }, { limit: 1 })).items[0], 60_000, 200);
        expect(done.agentName).toBe('local');
      } finally {
        await store.close();
      }
    } finally {
      child.kill('SIGTERM');
    }
    const code = await new Promise((r) => child.on('exit', (c) => r(c)));
    expect(code).toBe(0);
  });
});
