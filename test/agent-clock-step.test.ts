import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openStore, type Store } from '@batchalyzer/store';
import { createAgentHub, type AgentHub } from '../packages/server/src/agents/index.js';
import { EventBus } from '../packages/server/src/events.js';
import type { RunReports } from '../packages/server/src/link.js';
import { tempDir } from './support/cli.js';
import { FAST_HUB, registerAgent, TestAgent, until } from './support/agent.js';

/**
 * The server's clock may jump (brief §4: NTP, a resumed VM). The agent hub runs in this process so that Date.now
 * can be stepped under it while a real agent process keeps its own clock and keeps heart-beating (brief §8).
 */

const MINUTES_10 = 10 * 60_000;
/** FAST_HUB with more room before stale, so that a healthy agent's short pause below is far from it. */
const HUB = { ...FAST_HUB, staleAfterMs: 3000, missingAfterMs: 5000, lostRunLeaseMs: 1000 };
const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanup.splice(0).reverse()) await Promise.resolve().then(c).catch(() => undefined);
});

/** Steps the wall clock of this process (the hub's) by `ms`; the monotonic clock is untouched. */
function stepWallClock(ms: number): void {
  const real = Date.now.bind(Date);
  vi.spyOn(Date, 'now').mockImplementation(() => real() + ms);
}

async function hubWithAgent() {
  const data = tempDir();
  const keyFile = await registerAgent(data, 'a1');
  const store: Store = await openStore({ kind: 'sqlite', path: join(data, 'batchalyzer.db') });
  cleanup.push(() => store.close());
  const events = new EventBus();
  const seen: string[] = [];
  for (const e of ['agent:connected', 'agent:disconnected', 'agent:stale', 'agent:missing'] as const) events.on(e, () => seen.push(e));
  const end = async (agent: string, runId: number, f: { state: 'succeeded' | 'failed' | 'lost'; at: number; exitCode?: number | null; reason?: string | null }) => {
    await store.finishRun({ runId, actor: `agent:${agent}`, ...f });
  };
  const reports: RunReports = {
    async started(_agent, runId, _attempt, at) {
      await store.startRun(runId, at);
    },
    async output(_agent, chunks) {
      await store.appendOutput(chunks);
    },
    async truncated() {},
    async steps() {},
    async finished(agent, r) {
      await end(agent, r.runId, { state: r.exitCode === 0 ? 'succeeded' : 'failed', at: r.at, exitCode: r.exitCode });
    },
    async lost(agent, runId, reason) {
      await end(agent, runId, { state: 'lost', at: Date.now(), reason });
    },
  };
  const hub: AgentHub = createAgentHub({ store, events, logger: pino({ level: 'silent' }), reports, config: HUB });
  const http: Server = createServer((_req, res) => res.writeHead(404).end());
  hub.attach(http);
  await hub.start();
  cleanup.push(() => hub.stop());
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => http.close(r)));
  const port = (http.address() as { port: number }).port;
  const agent = new TestAgent({ name: 'a1', url: `http://127.0.0.1:${port}`, keyFile }).start();
  cleanup.push(() => agent.kill9());
  cleanup.push(() => agent.proc.kill('SIGCONT'));
  await until('agent connected', () => hub.connected().some((a) => a.name === 'a1'));

  // A long job on the agent, running.
  const now = Date.now();
  const run = { shell: 'echo $$; exec sleep 120' };
  const [created] = await store.createRuns([{ jobName: 'test-job', planDate: '2026-01-15', nominalAt: now, dueAt: now, origin: 'manual', priority: 0, targetAgent: 'a1', spec: { run, on: { agent: 'a1' } } as never }], 'test', now);
  const runId = created!.id;
  const d = await store.dispatchRun({ runId, agent: 'a1', at: now, actor: 'test', pools: [], rates: [] });
  expect(d.ok).toBe(true);
  await hub.dispatch('a1', { runId, attempt: 1, jobName: 'test-job', planDate: '2026-01-15', nominalAt: now, run, env: {}, secrets: [], killGraceMs: 1000, maxOutputBytes: 1 << 20 });
  const pid = Number(await until('job pid', async () => (await store.readOutput(runId, 'stdout')).toString().trim() || undefined));
  cleanup.push(() => process.kill(pid, 'SIGKILL'));
  await until('run running', async () => (await store.getRun(runId))!.state === 'running');
  return { hub, store, agent, runId, seen };
}

describe('agent liveness and a stepped server clock (brief §4, §8)', () => {
  it('a forward step of 10 minutes while the agent keeps heart-beating: no disconnect, not stale or missing, its run not lost', async () => {
    const { hub, store, agent, runId, seen } = await hubWithAgent();
    const connectedAt = hub.connected()[0]!.connectedAt;
    seen.length = 0;
    // The step falls in a pause of the agent of half a second (a sixth of the stale time, a GC pause or a busy
    // host), so that the hub checks liveness before the agent's next frame: a frame between the step and the
    // check would have hidden the wall-clock arithmetic. Then the agent heart-beats on as usual.
    agent.proc.kill('SIGSTOP');
    await sleep(150);
    stepWallClock(MINUTES_10);
    await sleep(350);
    agent.proc.kill('SIGCONT');
    // Not an outcome to await but its absence: the hub checks every 100 ms; the missing time and the lease pass
    // (in real time) while the agent heart-beats every 300 ms.
    await sleep(HUB.missingAfterMs + HUB.lostRunLeaseMs + 1000);
    expect(seen).toEqual([]);
    expect(hub.connected().map((a) => [a.name, a.connectedAt])).toEqual([['a1', connectedAt]]);
    expect((await store.getAgent('a1'))!.status).toBe('connected');
    expect((await store.getRun(runId))!.state).toBe('running');
  });

  it('a backward step of 10 minutes does not hide an agent that really went silent: stale, then missing, then its run lost', async () => {
    const { store, agent, runId, seen } = await hubWithAgent();
    seen.length = 0;
    agent.proc.kill('SIGSTOP'); // the last frame was seen on the wall clock before the step
    stepWallClock(-MINUTES_10);
    await until('agent missing', () => seen.includes('agent:missing'), 30_000);
    expect(seen.slice(0, 3)).toEqual(['agent:stale', 'agent:disconnected', 'agent:missing']);
    const run = await until('run lost', async () => {
      const r = await store.getRun(runId);
      return r?.state === 'lost' ? r : undefined;
    }, 20_000);
    expect(run.endReason).toMatch(/agent a1 missing since .*\(lease of \d+ ms expired\)/);
    expect((await store.getAgent('a1'))!.status).toBe('missing');
  });
});
