import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { compileConfig } from '@batchalyzer/core';
import { createServer } from '@batchalyzer/server';
import { tempDir } from './support/cli.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});

describe('/api/v1/health uptime', () => {
  it('is measured on the monotonic clock: a step of the wall clock (brief §4) is no uptime', async () => {
    const dir = tempDir();
    const config = compileConfig({ flags: { data: dir, listen: '127.0.0.1:0', timezone: 'UTC' }, env: {}, cwd: dir, hostTimezone: 'UTC' });
    const server = await createServer(config, { logger: pino({ level: 'silent' }) });
    await server.start();
    cleanup.push(() => server.stop());
    const real = Date.now.bind(Date);
    vi.spyOn(Date, 'now').mockImplementation(() => real() + 3_600_000); // NTP or a resumed VM: one hour forward
    const body = (await (await fetch(`${server.url()}/api/v1/health`)).json()) as { uptimeSeconds: number };
    expect(body.uptimeSeconds).toBeGreaterThanOrEqual(0);
    expect(body.uptimeSeconds).toBeLessThan(600);
  });
});
