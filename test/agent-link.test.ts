import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, tempDir } from './support/cli.js';
import { pattern, registerAgent, serverWithAgent, TestAgent, TestServer, until } from './support/agent.js';

const HALVES = join(ROOT, 'test', 'fixtures', 'agent', 'halves.mjs');
const expected = (n: number) => Buffer.from(pattern(n));
const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});
function track(server: TestServer, agent: TestAgent) {
  cleanup.push(() => server.stop(), () => agent.kill9());
}

describe('agent link survives a dropped connection (brief §8)', () => {
  it('a job that finishes while disconnected is stored byte for byte, succeeded exactly once, and the disconnect is raised and cleared', async () => {
    const { server, agent, store } = await serverWithAgent('a1');
    track(server, agent);
    cleanup.push(() => store.close());
    const go = join(tempDir(), 'go');
    const runId = await server.run('a1', { command: [process.execPath, HALVES, go, '20000'] });
    // The first half arrives live (flushed on the interval).
    await until('first half stored', async () => (await store.readOutput(runId, 'stdout')).length >= 10_000);

    await server.post('/test/block', { on: true });
    const from = server.events.length;
    expect((await server.post<{ dropped: boolean }>('/test/drop', { agent: 'a1' })).dropped).toBe(true);
    await server.event('agent:disconnected', (e) => e.name === 'a1', 10_000, from);
    await server.event('message:raised', (e) => e.key === 'agent-link:a1', 10_000, from);
    expect((await store.getAgent('a1'))!.status).toBe('disconnected');

    writeFileSync(go, '');
    await agent.waitOutput(new RegExp(`run ${runId} \\(test-job\\) ended`));
    expect((await store.getRun(runId))!.state).toBe('running'); // the server has not heard of the end yet

    await server.post('/test/block', { on: false });
    await server.event('agent:connected', (e) => e.name === 'a1', 20_000, from);
    await server.event('message:resolved', (e) => e.key === 'agent-link:a1', 10_000, from);
    const run = await until('run ended', async () => {
      const r = await store.getRun(runId);
      return r && r.state !== 'running' ? r : undefined;
    });
    expect(run.state).toBe('succeeded');
    expect(run.exitCode).toBe(0);
    expect((await store.readOutput(runId, 'stdout')).equals(expected(20_000))).toBe(true);
    expect((await store.readOutput(runId, 'stderr')).toString()).toBe('ERR-0123\n\n');
    expect((await store.runEvents(runId)).filter((e) => e.toState === 'succeeded')).toHaveLength(1);
    expect(server.events.filter((e) => e.event === 'run:ended' && e.runId === runId)).toHaveLength(1);
    expect((await store.getAgent('a1'))!.status).toBe('connected');
  });

  it('a connection that drops and comes back within the stale time raises no message', async () => {
    const { server, agent, store } = await serverWithAgent('a1');
    track(server, agent);
    cleanup.push(() => store.close());
    const from = server.events.length;
    expect((await server.post<{ dropped: boolean }>('/test/drop', { agent: 'a1' })).dropped).toBe(true);
    await server.event('agent:disconnected', (e) => e.name === 'a1', 10_000, from);
    await server.event('agent:connected', (e) => e.name === 'a1', 10_000, from);
    await new Promise((r) => setTimeout(r, 2_000)); // past FAST_HUB's stale time (1.5 s) since the drop
    expect(server.events.slice(from).filter((e) => e.event === 'message:raised')).toEqual([]);
    expect((await store.listMessages({}, { limit: 10 })).items).toEqual([]);
  });

  it('kill -9 of the server while jobs run: the agent buffers, and the restarted server records each result exactly once', async () => {
    const { server, agent, store } = await serverWithAgent('a1');
    track(server, agent);
    cleanup.push(() => store.close());
    const go = join(tempDir(), 'go');
    const jobs = [{ n: 20_000, code: 0 }, { n: 7_000, code: 0 }, { n: 3_000, code: 3 }];
    const ids: number[] = [];
    for (const j of jobs) ids.push(await server.run('a1', { command: [process.execPath, HALVES, go, String(j.n), String(j.code)] }));
    for (const id of ids) await until(`run ${id} started`, async () => (await store.getRun(id))!.state === 'running');

    await server.kill9();
    writeFileSync(go, '');
    for (const id of ids) await agent.waitOutput(new RegExp(`run ${id} \\(test-job\\) ended`));
    expect(agent.alive).toBe(true);

    await server.start(server.port);
    await server.event('agent:connected', (e) => e.name === 'a1');
    for (const [i, id] of ids.entries()) {
      const run = await until(`run ${id} ended`, async () => {
        const r = await store.getRun(id);
        return r && r.state !== 'running' ? r : undefined;
      });
      expect(run.state).toBe(jobs[i]!.code === 0 ? 'succeeded' : 'failed');
      expect(run.exitCode).toBe(jobs[i]!.code);
      expect((await store.readOutput(id, 'stdout')).equals(expected(jobs[i]!.n))).toBe(true);
      expect((await store.readOutput(id, 'stderr')).toString()).toBe('ERR-0123\n\n');
      const ends = (await store.runEvents(id)).filter((e) => ['succeeded', 'failed'].includes(e.toState));
      expect(ends).toHaveLength(1);
    }
  });

  it('heartbeats: a frozen agent goes stale, then missing (its connection dropped), and comes back when it resumes', async () => {
    const { server, agent, store } = await serverWithAgent('a1');
    track(server, agent);
    cleanup.push(() => store.close());
    const from = server.events.length;
    agent.proc.kill('SIGSTOP');
    cleanup.push(async () => agent.proc.kill('SIGCONT'));
    await server.event('agent:stale', (e) => e.name === 'a1', 20_000, from);
    await server.event('agent:missing', (e) => e.name === 'a1', 20_000, from);
    expect((await store.getAgent('a1'))!.status).toBe('missing');
    agent.proc.kill('SIGCONT');
    await server.event('agent:connected', (e) => e.name === 'a1', 20_000, from);
    expect((await store.getAgent('a1'))!.status).toBe('connected');
  });

  it('tries several server URLs in turn', async () => {
    const data = tempDir();
    const keyFile = await registerAgent(data, 'a1');
    const server = await new TestServer(data).start();
    // The first URL has nothing listening: the agent backs off and tries the next one.
    const agent = new TestAgent({ name: 'a1', url: 'http://127.0.0.1:9', keyFile, args: ['--server', server.url] }).start();
    track(server, agent);
    await server.event('agent:connected', (e) => e.name === 'a1');
    await agent.waitOutput(new RegExp(`connected to ws://127\\.0\\.0\\.1:${server.port}/api/v1/agent as a1`));
  });
});
