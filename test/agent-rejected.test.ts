import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from './support/cli.js';
import { FAST_HUB, openTestStore, registerAgent, TestAgent, TestServer, until } from './support/agent.js';

/**
 * A queued report the server cannot accept (brief §8: one bad item must not block the queue forever, and must not
 * take good ones with it). The agent's queue is written here before the agent starts, so the server sees exactly
 * these reports, all sent at once after the welcome: the server closes with 4002 on the invalid one before it has
 * committed (and acknowledged) the good ones before it, which the agent then still holds unacknowledged.
 */

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});

/** The server must not give the runs up while the agent is not connected yet (no lost runs in these tests). */
const HUB = { ...FAST_HUB, staleAfterMs: 60_000, missingAfterMs: 120_000 };

type Item = Record<string, unknown>;

async function setup(items: (runIds: number[]) => Item[], args: string[] = []) {
  const data = tempDir();
  const keyFile = await registerAgent(data, 'a1');
  const server = await new TestServer(data, HUB).start();
  const store = await openTestStore(data);
  cleanup.push(() => server.stop(), () => store.close());
  // Two runs dispatched to a1 in the store only: the agent reports them from its queue as if it had run them.
  const runIds: number[] = [];
  for (let i = 0; i < 2; i++) runIds.push((await server.post<{ runId: number }>('/test/run', { agent: 'a1', run: { command: ['true'] }, noSend: true })).runId);
  const agentData = tempDir('batchalyzer-agent-');
  const queue = join(agentData, 'queue');
  mkdirSync(queue, { recursive: true });
  writeFileSync(join(queue, 'id'), randomUUID());
  writeFileSync(join(queue, '00000001.log'), items(runIds).map((item, i) => `${JSON.stringify({ seq: i + 1, item })}\n`).join(''));
  const agent = new TestAgent({ name: 'a1', url: server.url, keyFile, data: agentData, args }).start();
  cleanup.push(() => agent.kill9());
  return { server, store, agent, runIds, rejectedLog: join(queue, 'rejected.log') };
}

const at = 1_760_000_000_000;
const started = (runId: number): Item => ({ kind: 'started', runId, attempt: 1, at, pid: 4242 });
const step = (runId: number, n: number): Item => ({ kind: 'step', runId, attempt: 1, at, step: n, stepKind: 'message', text: `step ${n}` });
const finished = (runId: number): Item => ({ kind: 'finished', runId, attempt: 1, at, exitCode: 0, signal: null, timedOut: false });
/** Fails the server's validation (stepKind is progress or message): the server closes with 4002 when it reads it. */
const invalid = (runId: number): Item => ({ kind: 'step', runId, attempt: 1, at, step: 99, stepKind: 'bogus', text: 'bad' });

function rejected(path: string): { seq: number; reason: string; item: Item }[] {
  return existsSync(path) ? readFileSync(path, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
}

async function succeeded(store: Awaited<ReturnType<typeof openTestStore>>, runId: number) {
  return until(`run ${runId} succeeded`, async () => ((await store.getRun(runId))?.state === 'succeeded' ? true : undefined), 30_000);
}

describe('a report the server rejects is charged to the item that was bad (brief §8)', () => {
  it('a bad item after good unacknowledged ones: only it goes to rejected.log; the good ones before and after it are committed', async () => {
    const { store, agent, runIds: [r1, r2], rejectedLog } = await setup(([r1, r2]) => [
      started(r1!), step(r1!, 1), finished(r1!), // 1–3: good, sent with the bad one and not acknowledged when it is read
      invalid(r1!), // 4
      started(r2!), finished(r2!), // 5–6: good, after it
    ]);
    await succeeded(store, r2!);
    await succeeded(store, r1!);
    await agent.waitOutput(/rejected queued report 4 three times/);
    const lines = rejected(rejectedLog);
    expect(lines.map((l) => l.seq)).toEqual([4]);
    expect(lines[0]!.item).toEqual(invalid(r1!));
    expect(lines[0]!.reason).toMatch(/^invalid item/); // the server's reason, without the [seq N] prefix
    expect((await store.runSteps(r1!)).map((s) => s.text)).toEqual(['step 1']);
    expect(agent.output()).not.toMatch(/rejected queued report [1-35-6] /);
  });

  it('a bad item at the head of the queue is skipped after three rejections and the items after it are committed', async () => {
    const { store, agent, runIds: [r1], rejectedLog } = await setup(([r1]) => [invalid(r1!), started(r1!), finished(r1!)]);
    await succeeded(store, r1!);
    await agent.waitOutput(/rejected queued report 1 three times/);
    const lines = rejected(rejectedLog);
    expect(lines.map((l) => l.seq)).toEqual([1]);
    expect(lines[0]!.item).toEqual(invalid(r1!));
  });
});

describe('closes that must not cost the agent time or reports (brief §8)', () => {
  it('reports for a run that no longer exists, then good ones: each rejection is retried at once, not after a growing back-off', async () => {
    // Four reports for a run retention deleted (the server names each: "[seq N] run … does not exist"), then a run's
    // reports. With a back-off grown by each rejection, the 12 closes waited 0.2+0.4+0.8+1.6+3.2+5×7 s ≈ 41 s.
    const { store, agent, runIds: [r1], rejectedLog } = await setup(([r1]) => [
      step(987654, 1), step(987654, 2), step(987654, 3), step(987654, 4), started(r1!), finished(r1!),
    ], ['--reconnect-max', '5s']);
    const t0 = performance.now();
    await succeeded(store, r1!);
    expect(performance.now() - t0).toBeLessThan(12_000);
    expect(rejected(rejectedLog).map((l) => l.seq)).toEqual([1, 2, 3, 4]);
    expect(agent.output()).toMatch(/rejected queued report 4 three times \(run 987654 does not exist\)/);
  }, 60_000);

  it('two concurrent kills of one run both get the answer; the agent link is not closed', async () => {
    const data = tempDir();
    const keyFile = await registerAgent(data, 'a1');
    const server = await new TestServer(data, HUB).start();
    const store = await openTestStore(data);
    cleanup.push(() => server.stop(), () => store.close());
    const agent = new TestAgent({ name: 'a1', url: server.url, keyFile, data: tempDir('batchalyzer-agent-') }).start();
    cleanup.push(() => agent.kill9());
    await agent.waitOutput(/connected to/);
    const { runId } = await server.post<{ runId: number }>('/test/run', { agent: 'a1', run: { command: ['sleep', '30'] } });
    await until('running', async () => ((await store.getRun(runId))?.state === 'running' ? true : undefined), 10_000);
    const kills = await Promise.allSettled([server.post('/test/kill', { agent: 'a1', runId }), server.post('/test/kill', { agent: 'a1', runId })]);
    expect(kills.map((k) => k.status)).toEqual(['fulfilled', 'fulfilled']);
    await until('run failed', async () => ((await store.getRun(runId))?.state === 'failed' ? true : undefined), 10_000);
    await new Promise((r) => setTimeout(r, 300)); // a second kill-result would arrive by now
    expect(agent.output()).not.toMatch(/disconnected from|4002/);
  });
});
