import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { pino } from 'pino';
import { compileConfig, planApplyFromYaml } from '@batchalyzer/core';
import { type BatchalyzerServer, createServer } from '@batchalyzer/server';
import { tempDir } from './support/cli.js';
import { until } from './support/agent.js';
import { protocolAgent } from './support/protocol-agent.js';

/**
 * Reconciliation reads the agent's own list of active runs through the real link (engine/reconcile.ts): only the
 * agent's lists say what it holds, whatever reports the server commits meanwhile. A protocol client plays the agent.
 */
let server: BatchalyzerServer | undefined;
let ws: WebSocket | undefined;
afterEach(async () => {
  ws?.terminate();
  await server?.stop();
  server = ws = undefined;
});

const JOBS = `jobs:
  twice: { run: { shell: "sleep 100" }, on: { agent: a1 }, retries: { count: 2, delay: 1s } }
  other: { run: { shell: "sleep 100" }, on: { agent: a1 }, retries: { count: 2, delay: 1s } }
`;

/** A server checking every 300 ms, and an agent that accepts and starts whatever it is sent. */
async function setup() {
  const dir = tempDir();
  const config = compileConfig({ flags: { data: dir, listen: '127.0.0.1:0', timezone: 'UTC' }, env: {}, cwd: dir, hostTimezone: 'UTC' });
  const s = await createServer(config, { logger: pino({ level: 'silent' }), engine: { reconcileAfterMs: 300 } });
  server = s;
  await s.start();
  await s.store.applyDefinitions(planApplyFromYaml(await s.store.loadDefinitions(), JOBS, 't.yaml', { defaultTimezone: 'UTC' }), 'test', Date.now());
  s.events.emit('definitions:applied', { changes: 1, actor: 'test' });
  let seq = 0;
  let send!: (m: unknown) => void;
  const report = (item: Record<string, unknown>) => {
    send({ type: 'report', seq: ++seq, item });
    send({ type: 'durable', seq });
  };
  const agent = await protocolAgent(s, {
    onFrame: (m) => {
      if (m.type !== 'dispatch') return;
      const p = m.payload as { runId: number; attempt: number };
      send({ type: 'accepted', runId: p.runId, attempt: p.attempt });
      report({ kind: 'started', runId: p.runId, attempt: p.attempt, at: Date.now(), pid: 1000 + p.attempt });
    },
  });
  ws = agent.ws;
  send = agent.send;
  const heartbeat = (activeRuns: number[]) => send({ type: 'heartbeat', at: Date.now(), activeRuns });
  const running = (id: number, attempt = 1) =>
    until(`run ${id} attempt ${attempt} running`, async () => {
      const r = (await s.store.getRun(id))!;
      return (r.attempt === attempt && r.state === 'running') || undefined;
    });
  return { s, report, heartbeat, running };
}

describe('reconciliation against the agent\'s lists', () => {
  // The server's copy of the list once dropped a run when any end of it was committed, even a stale one of an
  // earlier attempt: the running attempt then looked unknown until the agent's next heartbeat. Only the agent's lists
  // change it now, and a decision needs a newer list anyway: each of the two fixes alone keeps this run.
  it('a stale end of an earlier attempt does not make the running attempt look unknown to its agent', async () => {
    const { s, report, heartbeat, running } = await setup();
    const [run] = await s.actions.runNow('twice', 'test');
    const id = run!.id;
    await running(id);
    heartbeat([id]);
    // Attempt 1 is lost on the server (say its lease expired while the agent was away) and retried on the same agent.
    await s.reports.lost('a1', id, 'test: lease expired');
    await running(id, 2);
    heartbeat([id]);
    // The agent's queued end of attempt 1 arrives now, and no heartbeat follows for a while (a backlog).
    report({ kind: 'finished', runId: id, attempt: 1, at: Date.now(), exitCode: 0, signal: null, timedOut: false });
    await new Promise((r) => setTimeout(r, 2000)); // six checks
    const r = (await s.store.getRun(id))!;
    expect([r.attempt, r.state]).toEqual([2, 'running']);
  });

  it('a list the agent cut at 10,000 proves nothing, also after one of its runs ended', async () => {
    const { s, report, heartbeat, running } = await setup();
    const [a] = await s.actions.runNow('twice', 'test');
    await running(a!.id);
    const [b] = await s.actions.runNow('other', 'test');
    await running(b!.id);
    // The agent holds more than 10,000 runs: its list is cut and happens to leave B out.
    heartbeat([a!.id, ...Array.from({ length: 9_999 }, (_, i) => 1_000_000 + i)]);
    report({ kind: 'finished', runId: a!.id, attempt: 1, at: Date.now(), exitCode: 0, signal: null, timedOut: false });
    await until('A ended', async () => (await s.store.getRun(a!.id))!.state === 'succeeded' || undefined);
    await new Promise((r) => setTimeout(r, 1500)); // five checks, no new list: A's end must not have shortened it
    expect((await s.store.getRun(b!.id))!.attempt).toBe(1);
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 300));
      heartbeat([...Array.from({ length: 10_000 }, (_, j) => 1_000_000 + j)]); // still cut, still without B
    }
    const r = (await s.store.getRun(b!.id))!;
    expect([r.attempt, r.state]).toEqual([1, 'running']);
  });

  it('a run is decided only on a list the agent sent after the one that first left it out', async () => {
    const { s, heartbeat, running } = await setup();
    const [run] = await s.actions.runNow('twice', 'test');
    await running(run!.id);
    heartbeat([]); // the agent no longer has it, and then says nothing more (a paused connection)
    await new Promise((r) => setTimeout(r, 1500)); // five checks on the same list
    const r = (await s.store.getRun(run!.id))!;
    expect([r.attempt, r.state]).toEqual([1, 'running']);
    const beats = setInterval(() => heartbeat([]), 300); // newer lists, still without it
    try {
      await until('lost and retried', async () => (await s.store.getRun(run!.id))!.attempt === 2 || undefined, 10_000);
    } finally {
      clearInterval(beats);
    }
    const events = await s.store.runEvents(run!.id);
    expect(events.some((e) => /no longer has run/.test(JSON.stringify(e)))).toBe(true);
  });
});
