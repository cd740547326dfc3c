import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT } from './support/cli.js';
import { processAlive, registerAgent, serverWithAgent, TestAgent, until } from './support/agent.js';

const NODE_JOB = join(ROOT, 'test', 'fixtures', 'agent', 'node-job.mjs');
const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});

async function setup(args: string[] = []) {
  const s = await serverWithAgent('a1', args);
  cleanup.push(() => s.server.stop(), () => s.agent.kill9(), () => s.store.close());
  const ended = (id: number) => until(`run ${id} ended`, async () => {
    const r = await s.store.getRun(id);
    return r && !['dispatched', 'running'].includes(r.state) ? r : undefined;
  });
  return { ...s, ended };
}

describe('jobs on the agent (brief §3, §8)', () => {
  it('a node-script job receives its configuration, reports two progress steps and a message in order, and a result', async () => {
    const { server, store, ended } = await setup();
    const id = await server.run('a1', { node: NODE_JOB, config: { batch: 500 } }, { env: { TOKEN: 'tok-s3cr3t-42' }, secrets: ['tok-s3cr3t-42'] });
    const run = await ended(id);
    expect(run.state).toBe('succeeded');
    expect(run.result).toEqual({ ok: true, batch: 500 });
    const steps = await store.runSteps(id);
    expect(steps.map((s) => [s.seq, s.kind, s.text])).toEqual([
      [1, 'progress', 'step 1 of 2'],
      [2, 'progress', 'step 2 of 2'],
      [3, 'message', `batch size 500 for test-job run ${id}`],
    ]);
    expect(steps[1]!.data).toEqual({ done: 2 });
    // The secret value is masked before it is queued or stored.
    expect((await store.readOutput(id, 'stdout')).toString()).toBe(`config {"batch":500} run ${id} token ***\n`);
  });

  it('passes the documented environment, masks secrets split across writes, and uses the working directory', async () => {
    const { server, store, ended, agent } = await setup();
    const script = 'printf "%s|%s|%s|%s|%s|%s|%s|" "$BATCHALYZER_RUN_ID" "$BATCHALYZER_ATTEMPT" "$BATCHALYZER_JOB" "$BATCHALYZER_PLAN_DATE" "$BATCHALYZER_RUN_TAG" "$GREETING" "$(pwd)"; '
      + 'printf "pass=hun"; sleep 0.3; printf "ter2!\\n"; test -n "$PATH" && test -n "$HOME" && echo "$BATCHALYZER_NOMINAL_TIME" >&2';
    const id = await server.run('a1', { shell: script }, { env: { GREETING: 'hello' }, secrets: ['hunter2!'], cwd: '/tmp' });
    const run = await ended(id);
    expect(run.state).toBe('succeeded');
    const queueId = readFileSync(join(agent.data, 'queue', 'id'), 'utf8').trim();
    expect((await store.readOutput(id, 'stdout')).toString()).toBe(`${id}|1|test-job|2026-01-15|${queueId}/${id}/1|hello|/tmp|pass=***\n`);
    expect((await store.readOutput(id, 'stderr')).toString()).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\n$/);
  });

  it('starts jobs with the native spawner by default and with child_process under --spawner node, alike (docs/agent.md "Spawning")', async () => {
    for (const [args, says, how] of [[[], /jobs are spawned with posix_spawn/, 'posix_spawn'], [['--spawner', 'node'], /jobs are spawned with child_process \(--spawner node\)/, 'child_process']] as const) {
      const { server, agent, store, ended } = await setup([...args, '--log-level', 'debug']);
      await agent.waitOutput(says);
      const id = await server.run('a1', { shell: 'echo "$GREETING $(pwd)"; echo err >&2; exit 3' }, { env: { GREETING: 'hi' }, cwd: '/tmp' });
      const run = await ended(id);
      expect([run.state, run.exitCode]).toEqual(['failed', 3]);
      expect((await store.readOutput(id, 'stdout')).toString()).toBe('hi /tmp\n');
      expect((await store.readOutput(id, 'stderr')).toString()).toBe('err\n');
      await agent.waitOutput(new RegExp(`run ${id}: pid \\d+ \\(${how}\\)`));
      const missing = await ended(await server.run('a1', { command: ['/no/such/program'] }));
      expect(missing.endReason).toBe('cannot start: spawn /no/such/program ENOENT');
      await agent.kill9();
      await server.stop();
    }
  });

  it('keeps the head and the tail of output beyond the cap and records the truncation', async () => {
    const { server, store, ended } = await setup();
    const id = await server.run('a1', { command: [process.execPath, '-e', 'for (let i = 0; i < 5000; i++) console.log(String(i).padStart(9, "0"))'] }, { maxOutputBytes: 8000 });
    const run = await ended(id);
    expect(run.outputTruncated).toBe(true);
    const out = (await store.readOutput(id, 'stdout')).toString();
    expect(out.startsWith('000000000\n000000001\n')).toBe(true);
    expect(out.endsWith('000004998\n000004999\n')).toBe(true);
    expect(out).toMatch(/\[batchalyzer: \d+ bytes of stdout not kept \(output cap\); the last 2000 bytes follow\]/);
    expect(out.length).toBeLessThan(8000 + 200);
  });

  it('1 GB of output keeps the agent memory bounded (tail ring beyond the cap, paused pipes when the queue is behind)', async () => {
    const { server, agent, store, ended } = await setup();
    const id = await server.run('a1', { shell: 'head -c 1073741824 /dev/zero | tr "\\0" "y"; echo end' }, { maxOutputBytes: 4 * 1024 * 1024 });
    const run = await ended(id);
    expect(run.state).toBe('succeeded');
    expect(run.outputTruncated).toBe(true);
    const out = await store.readOutput(id, 'stdout');
    expect(out.length).toBeLessThan(4 * 1024 * 1024 + 200);
    expect(out.subarray(-5).toString()).toBe('yyend\n'.slice(-5));
    const peakKb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${agent.proc.pid}/status`, 'utf8'))![1]);
    expect(peakKb).toBeLessThan(200 * 1024);
  });

  it('a timeout ends the whole process group, children included (SIGTERM, then SIGKILL after the grace period)', async () => {
    const { server, store, ended } = await setup();
    // Children that ignore SIGTERM need the SIGKILL after the grace period.
    const script = 'trap "" TERM; sleep 300 & echo $!; (sleep 300; true) & echo $!; echo $$; wait';
    const id = await server.run('a1', { shell: script }, { timeoutMs: 1000, killGraceMs: 500 });
    const run = await ended(id);
    expect(run.state).toBe('timed-out');
    expect(run.signal).toBe('SIGKILL');
    const pids = (await store.readOutput(id, 'stdout')).toString().trim().split('\n').map(Number);
    expect(pids).toHaveLength(3);
    for (const pid of pids) await until(`process ${pid} gone`, () => !processAlive(pid), 10_000);
  });

  it('a kill from the server ends the whole process group', async () => {
    const { server, store, ended } = await setup();
    const id = await server.run('a1', { shell: 'sleep 300 & echo $!; sh -c "sleep 300 & echo \\$!; wait" & wait' });
    const pids = await until('child pids', async () => {
      const p = (await store.readOutput(id, 'stdout')).toString().trim().split('\n').filter(Boolean);
      return p.length === 2 ? p.map(Number) : undefined;
    });
    for (const pid of pids) expect(processAlive(pid)).toBe(true);
    await server.post('/test/kill', { agent: 'a1', runId: id });
    const run = await ended(id);
    expect(run.state).toBe('failed');
    expect(run.signal).toBe('SIGTERM');
    for (const pid of pids) await until(`process ${pid} gone`, () => !processAlive(pid), 10_000);
  });

  it('SIGTERM drains: no new work, running jobs finish, the queue is flushed, exit 0', async () => {
    const { server, agent, store, ended } = await setup();
    const id = await server.run('a1', { shell: 'sleep 1; echo done' });
    await until('running', async () => (await store.getRun(id))!.state === 'running');
    agent.proc.kill('SIGTERM');
    await server.event('agent:draining', (e) => e.name === 'a1');
    await expect(server.run('a1', { shell: 'echo never' })).rejects.toThrow(/draining/);
    expect(await agent.exited()).toEqual({ code: 0, signal: null });
    const run = await ended(id);
    expect(run.state).toBe('succeeded');
    expect((await store.readOutput(id, 'stdout')).toString()).toBe('done\n');
  });

  it('the standalone agent is light: idle RSS under 60 MB and no server dependency loaded', async () => {
    const { server } = await setup();
    const key = await registerAgent(server.data, 'light');
    const light = new TestAgent({ name: 'light', url: server.url, keyFile: key, bin: 'agent' }).start();
    cleanup.push(() => light.kill9());
    await server.event('agent:connected', (e) => e.name === 'light');
    const status = readFileSync(`/proc/${light.proc.pid}/status`, 'utf8');
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
    expect(rssKb).toBeLessThan(60 * 1024);
    const maps = readFileSync(`/proc/${light.proc.pid}/maps`, 'utf8');
    expect(maps).not.toMatch(/better_sqlite3|fastify|pino/);
  });
});
