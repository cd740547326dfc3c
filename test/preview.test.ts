import { describe, expect, it } from 'vitest';
import { cli, tempDir } from './support/cli.js';

/** `batchalyzer preview` prints exactly the documented format: instants in UTC on stdout, notes on stderr. */
describe('batchalyzer preview', () => {
  it('prints one ISO 8601 UTC instant per line and nothing else; DST notes go to stderr', async () => {
    const r = await cli(['preview', '--cron', '30 2 * * *', '--tz', 'America/New_York', '--from', '2026-03-07T00:00:00Z', '--count', '3']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('2026-03-07T07:30:00Z\n2026-03-08T07:00:00Z\n2026-03-09T06:30:00Z\n');
    expect(r.stderr).toMatch(/^note: 2026-03-08T07:00:00Z: UTC offset of America\/New_York changes from -05:00 to -04:00/);
  });

  it('previews every, window and once forms', async () => {
    const every = await cli(['preview', '--every', '15m', '--offset', '00:05', '--tz', 'UTC', '--from', '2026-01-01T00:00:00Z', '--count', '2']);
    expect(every.stdout).toBe('2026-01-01T00:05:00Z\n2026-01-01T00:20:00Z\n');
    const window = await cli(['preview', '--cron', '* 8-17 * * mon-fri', '--every', '10m', '--tz', 'UTC', '--from', '2026-06-05T17:45:00Z', '--count', '3']);
    expect(window.stdout).toBe('2026-06-05T17:50:00Z\n2026-06-08T08:00:00Z\n2026-06-08T08:10:00Z\n');
    const once = await cli(['preview', '--at', '2026-12-01T14:30', '--tz', 'Europe/Berlin', '--from', '2026-01-01T00:00:00Z', '--count', '5']);
    expect(once.stdout).toBe('2026-12-01T13:30:00Z\n');
    expect(once.stderr).toMatch(/only 1 of 5/);
  });

  it('previews a stored job in the stored zone', async () => {
    const data = tempDir();
    const file = `${data}/jobs.yaml`;
    (await import('node:fs')).writeFileSync(file, 'timezone: Europe/London\njobs:\n  j: { run: { shell: "true" }, on: { agent: a }, schedule: { cron: "30 1 * * *" } }\n');
    expect((await cli(['apply', '-f', file, '--data', data])).code).toBe(0);
    const r = await cli(['preview', '--job', 'j', '--data', data, '--from', '2026-10-24T12:00:00Z', '--count', '2']);
    expect(r.stdout).toBe('2026-10-25T00:30:00Z\n2026-10-26T01:30:00Z\n');
  });

  it('rejects never-firing and malformed input with a precise message', async () => {
    const never = await cli(['preview', '--cron', '0 0 30 2 *']);
    expect(never.code).toBe(1);
    expect(never.stdout).toBe('');
    expect(never.stderr).toMatch(/--cron: "0 0 30 2 \*" can never fire/);
    const bad = await cli(['preview', '--every', '15x']);
    expect(bad.stderr).toMatch(/--every: "15x" is not a valid duration/);
    const zone = await cli(['preview', '--cron', '@daily', '--tz', 'Mars/Base']);
    expect(zone.stderr).toMatch(/--tz: unknown time zone "Mars\/Base"/);
  });
});
