// A batchalyzer server in its own process for the restart benchmark: node server-proc.mjs DATA_DIR PORT
// Prints one JSON line per event of interest with the wall-clock time it happened: {event, t, ...}.
import { pino } from 'pino';
import { compileConfig } from '@batchalyzer/core';
import { createServer } from '@batchalyzer/server';

const t0 = Date.now();
const [data, port] = process.argv.slice(2);
const out = (event, p = {}) => process.stdout.write(`${JSON.stringify({ event, t: Date.now(), ...p })}\n`);
out('process', { t: t0 });
const config = compileConfig({ flags: { data, listen: `127.0.0.1:${port}`, timezone: 'UTC' }, env: {}, cwd: data, hostTimezone: 'UTC' });
const server = await createServer(config, { logger: pino({ level: 'silent' }) });
for (const e of ['run:dispatched', 'run:ended', 'agent:connected', 'server:ready']) {
  server.events.on(e, (p) => out(e, e === 'run:ended' ? { runId: p.runId } : e === 'agent:connected' ? { name: p.name } : {}));
}
await server.start();
out('listening', { url: server.url() });
process.on('SIGTERM', () => server.stop().then(() => process.exit(0)));
