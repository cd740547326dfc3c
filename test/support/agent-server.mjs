// Test-only composition of the agent link (brief §8) until the lead wires it into packages/server/src/server.ts:
// a store, the event bus, the agent hub on an HTTP server, a simple RunReports that writes to the store, and a
// few /test/* control routes. Usage: node agent-server.mjs DATA_DIR PORT [HUB_CONFIG_JSON]
// Prints "listening on URL" and then one JSON line per server event on stdout.
import { createServer } from 'node:http';
import { join } from 'node:path';
import { pino } from 'pino';
import { openStore } from '../../packages/store/dist/index.js';
import { EventBus } from '../../packages/server/dist/events.js';
import { createAgentHub } from '../../packages/server/dist/agents/index.js';

const [dataDir, port = '0', configJson = '{}'] = process.argv.slice(2);
const store = await openStore({ kind: 'sqlite', path: join(dataDir, 'batchalyzer.db') });
const events = new EventBus();
const EVENTS = ['agent:connected', 'agent:refused', 'agent:disconnected', 'agent:stale', 'agent:missing', 'agent:draining',
  'run:started', 'run:ended', 'message:raised', 'message:resolved'];
for (const e of EVENTS) events.on(e, (p) => process.stdout.write(`${JSON.stringify({ event: e, ...p })}\n`));

/** The simplest RunReports: exit code 0 succeeds, anything else (or an error) fails; the engine's is richer. */
const reports = {
  async started(agent, runId, attempt, at) {
    if (await store.startRun(runId, at)) events.emit('run:started', { runId, agent });
  },
  async output(_agent, chunks) {
    await store.appendOutput(chunks);
  },
  async truncated(_agent, runId) {
    await store.markOutputTruncated(runId);
  },
  async steps(_agent, steps) {
    await store.appendRunSteps(steps);
  },
  async finished(agent, r) {
    const state = r.error ? 'failed' : r.timedOut ? 'timed-out' : r.exitCode === 0 ? 'succeeded' : 'failed';
    await end(agent, r.runId, { state, at: r.at, exitCode: r.exitCode, signal: r.signal, reason: r.error ?? null, result: r.result });
  },
  async lost(agent, runId, reason) {
    await end(agent, runId, { state: 'lost', at: Date.now(), reason });
  },
};
async function end(agent, runId, f) {
  const res = await store.finishRun({ runId, actor: `agent:${agent}`, ...f });
  if (res.changed) events.emit('run:ended', { runId, jobName: res.run.jobName, planDate: res.run.planDate, state: f.state, agent });
}

const hub = createAgentHub({ store, events, logger: pino({ level: 'warn' }, pino.destination(2)), reports, config: JSON.parse(configJson) });

async function body(req) {
  let text = '';
  for await (const c of req) text += c;
  return text ? JSON.parse(text) : {};
}

const routes = {
  // Creates a run of a one-off job for an agent, claims it and dispatches it.
  async '/test/run'(b) {
    const now = Date.now();
    const spec = { run: b.run, on: { agent: b.agent } };
    const [run] = await store.createRuns([{ jobName: b.job ?? 'test-job', planDate: '2026-01-15', nominalAt: now, dueAt: now, origin: 'manual', priority: 0, targetAgent: b.agent, spec }], 'test', now);
    const d = await store.dispatchRun({ runId: run.id, agent: b.agent, at: now, actor: 'test', pools: [], rates: [] });
    if (!d.ok) throw new Error(`dispatch failed: ${d.reason}`);
    const payload = {
      runId: run.id, attempt: run.attempt, jobName: run.jobName, planDate: run.planDate, nominalAt: now, run: b.run,
      env: b.env ?? {}, secrets: b.secrets ?? [], killGraceMs: b.killGraceMs ?? 2000, maxOutputBytes: b.maxOutputBytes ?? 1024 * 1024,
      ...(b.timeoutMs ? { timeoutMs: b.timeoutMs } : {}), ...(b.cwd ? { cwd: b.cwd } : {}),
    };
    // noSend: the run is dispatched to the agent in the store only (a test that writes the agent's queue itself).
    if (!b.noSend) await hub.dispatch(b.agent, payload);
    return { runId: run.id };
  },
  async '/test/kill'(b) {
    await hub.kill(b.agent, b.runId);
    return {};
  },
  async '/test/drop'(b) {
    return { dropped: hub.drop(b.agent) };
  },
  async '/test/block'(b) {
    blocked = b.on;
    return {};
  },
  async '/test/connected'() {
    return { agents: hub.connected() };
  },
};

const server = createServer((req, res) => {
  const route = routes[req.url ?? ''];
  if (!route) return res.writeHead(404).end();
  body(req).then(route).then(
    (out) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(out)),
    (err) => res.writeHead(409, { 'content-type': 'application/json' }).end(JSON.stringify({ error: err.message })),
  );
});
// Upgrades go through hub.handleUpgrade; /test/block makes the agent link unreachable for a while (a network cut).
let blocked = false;
server.on('upgrade', (req, socket, head) => {
  if (blocked) return socket.destroy();
  if (!hub.handleUpgrade(req, socket, head)) socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
});
await hub.start();
server.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(`listening on http://127.0.0.1:${server.address().port}\n`);
});
process.on('SIGTERM', async () => {
  await hub.stop();
  server.close();
  await store.close();
  process.exit(0);
});
