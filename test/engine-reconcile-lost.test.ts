import { openSync, writeSync, closeSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { compileConfig, planApplyFromYaml } from '@batchalyzer/core';
import { MAX_ACTIVE_RUNS } from '@batchalyzer/protocol';
import { type BatchalyzerServer, createServer, type DispatchPayload } from '@batchalyzer/server';
import { harness, type Harness } from './support/engine.js';
import { FAST_HUB, processAlive, registerAgent, TestAgent, until } from './support/agent.js';
import { tempDir } from './support/cli.js';

/**
 * Runs the store shows on a connected agent that no longer has them (brief §8; docs/scheduling.md "Delivery"):
 * a dispatch the agent never confirmed waits again; a run it accepted or started is lost (it may have run), which
 * is what ends such a run after a power loss of the agent's host, whose journal is not synced per run.
 */
let h: Harness | undefined;
const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  await h?.close();
  h = undefined;
  for (const c of cleanup.splice(0).reverse()) await Promise.resolve().then(c).catch(() => undefined);
});

const PERIOD = 150;
const JOBS = `jobs:
  once: { run: { shell: "sleep 100" }, on: { agent: a1 } }
  twice: { run: { shell: "sleep 100" }, on: { agent: a1 }, retries: { count: 1, delay: 1s } }
`;

async function setup() {
  h = await harness(undefined, undefined, { reconcileAfterMs: PERIOD });
  h.link.connect('a1');
  await h.apply(JOBS);
  return h;
}

async function start(h: Harness, job: string, opts: { started?: boolean } = {}) {
  const [run] = await h.server.actions.runNow(job, 'test');
  await h.server.engine.pass();
  await until('dispatch sent', () => h.link.sent.some((s) => s.payload.runId === run!.id));
  await new Promise((r) => setImmediate(r)); // the link's dispatch promise settled: the run counts as accepted
  lists(h, [...h.link.agents.get('a1')!.activeRuns, run!.id]); // as the agent's next heartbeat would
  if (opts.started !== false) await h.server.reports.started('a1', run!.id, 1, h.clock.now());
  return run!.id;
}

/** What the agent lists (hello after a reconnect, or a heartbeat). The engine compares every period. */
function lists(h: Harness, activeRuns: number[]) {
  h.link.connect('a1', { activeRuns });
}

const state = async (h: Harness, id: number) => (await h.server.store.getRun(id))!.state;

describe('runs unknown to their connected agent', () => {
  it('a running run the agent no longer lists is lost after two checks, with the reason, and a message is raised', async () => {
    const h = await setup();
    const id = await start(h, 'once');
    lists(h, []);
    await until('run lost', async () => ((await state(h, id)) === 'lost' ? true : undefined), 10_000, 20);
    const run = (await h.server.store.getRun(id))!;
    expect(run.endReason).toMatch(/agent a1 no longer has run \d+: neither the job nor a report of it/);
    const messages = (await h.server.store.listMessages({}, { limit: 10 })).items;
    expect(messages.some((m) => /job once lost/.test(m.text))).toBe(true);
    expect(h.link.sent.filter((s) => s.payload.runId === id)).toHaveLength(1); // never sent again
  });

  it('a lost run is retried when its job allows', async () => {
    const h = await setup();
    const id = await start(h, 'twice');
    const retrying = h.next('run:retrying', (e) => e.runId === id);
    lists(h, []);
    expect((await retrying).attempt).toBe(2);
    const events = await h.server.store.runEvents(id);
    expect(events.some((e) => /no longer has run/.test(JSON.stringify(e)))).toBe(true);
  });

  it('an accepted dispatch the agent no longer lists is lost, not put back: it may have started', async () => {
    const h = await setup();
    const id = await start(h, 'once', { started: false });
    expect(await state(h, id)).toBe('dispatched');
    h.clock.advance(PERIOD * 2); // old enough to judge
    lists(h, []);
    await until('run lost', async () => ((await state(h, id)) === 'lost' ? true : undefined), 10_000, 20);
    expect(h.link.sent.filter((s) => s.payload.runId === id)).toHaveLength(1);
  });

  it('a dispatch the agent never confirmed waits again and is sent anew', async () => {
    const h = await setup();
    const send = h.link.dispatch.bind(h.link);
    let unanswered = 1;
    h.link.dispatch = async (agent: string, payload: DispatchPayload) => {
      if (unanswered-- > 0) {
        h!.link.sent.push({ agent, payload });
        throw new Error(`agent ${agent} did not answer within 15000 ms`);
      }
      return send(agent, payload);
    };
    const [run] = await h.server.actions.runNow('once', 'test');
    await h.server.engine.pass();
    h.clock.advance(PERIOD * 2);
    lists(h, []);
    await until('sent again', () => h.link.sent.filter((s) => s.payload.runId === run!.id).length === 2, 10_000, 20);
    expect(await state(h, run!.id)).toBe('dispatched');
  });

  it('a dispatch the agent lists without having confirmed it (a late or lost accepted) counts as confirmed: lost, not put back', async () => {
    const h = await setup();
    h.link.dispatch = async (agent: string, payload: DispatchPayload) => {
      h!.link.sent.push({ agent, payload });
      throw new Error(`agent ${agent} did not answer within 15000 ms`);
    };
    const [run] = await h.server.actions.runNow('once', 'test');
    await h.server.engine.pass();
    h.clock.advance(PERIOD * 2);
    lists(h, [run!.id]); // its heartbeat: the agent has it after all
    await new Promise((r) => setTimeout(r, PERIOD * 3));
    lists(h, []); // and then no longer (its host lost power before the start reached the server)
    await until('run lost', async () => ((await state(h, run!.id)) === 'lost' ? true : undefined), 10_000, 20);
    expect(h.link.sent.filter((s) => s.payload.runId === run!.id)).toHaveLength(1);
  });

  it('runs the agent lists stay, and a list cut at its limit proves nothing', async () => {
    const h = await setup();
    const listed = await start(h, 'once');
    const [other] = await h.server.actions.runNow('twice', 'test');
    await h.server.engine.pass();
    await h.server.reports.started('a1', other!.id, 1, h.clock.now());
    // A full list that names only the first run: the second may be among the runs the agent left out.
    const full = [listed, ...Array.from({ length: MAX_ACTIVE_RUNS - 1 }, (_, i) => 1_000_000 + i)];
    lists(h, full);
    await new Promise((r) => setTimeout(r, PERIOD * 5));
    expect(await state(h, listed)).toBe('running');
    expect(await state(h, other!.id)).toBe('running');
  });

  it('a run listed only while its old reports are re-sent is lost once they are acknowledged, a period later', async () => {
    const h = await setup();
    const id = await start(h, 'once');
    // Back after a power loss with older reports of the run still queued: the agent lists it until they are acked.
    lists(h, [id]);
    await new Promise((r) => setTimeout(r, PERIOD * 4));
    expect(await state(h, id)).toBe('running');
    const t0 = performance.now();
    lists(h, []); // its heartbeat after the acknowledgement
    await until('run lost', async () => ((await state(h, id)) === 'lost' ? true : undefined), 10_000, 5);
    // Seen missing on two checks a period apart: never sooner than a period after the list dropped it.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(PERIOD);
  });
});

describe('a real agent whose host lost power while a job ran', () => {
  it('the run it no longer knows (journal entry and job gone) is lost once it reconnects', async () => {
    const data = tempDir();
    const keyFile = await registerAgent(data, 'a1');
    const config = compileConfig({ flags: { data, listen: '127.0.0.1:0', timezone: 'UTC' }, env: {}, cwd: data, hostTimezone: 'UTC' });
    const server: BatchalyzerServer = await createServer(config, { logger: pino({ level: 'silent' }), engine: { reconcileAfterMs: 300 }, agents: { ...FAST_HUB, missingAfterMs: 60_000 } });
    await server.start();
    cleanup.push(() => server.stop());
    const plan = planApplyFromYaml(await server.store.loadDefinitions(), 'jobs:\n  long: { run: { shell: "echo $$; exec sleep 300" }, on: { agent: a1 } }\n', 'test.yaml', { defaultTimezone: 'UTC' });
    await server.store.applyDefinitions(plan, 'test', Date.now());
    server.events.emit('definitions:applied', { changes: 1, actor: 'test' });

    const agent = new TestAgent({ name: 'a1', url: server.url(), keyFile }).start();
    cleanup.push(() => agent.kill9());
    await until('agent connected', () => server.agents.connected().some((a) => a.name === 'a1'));
    const [run] = await server.actions.runNow('long', 'test');
    const pid = Number(await until('job pid', async () => (await server.store.readOutput(run!.id, 'stdout')).toString().trim() || undefined));
    expect((await server.store.getRun(run!.id))!.state).toBe('running');

    // The power loss: agent and job die, and the journal's unsynced page is gone (its slots read as zeros).
    await agent.kill9();
    process.kill(-pid, 'SIGKILL');
    await until('job gone', () => !processAlive(pid));
    const slots = join(agent.data, 'running', 'slots');
    const fd = openSync(slots, 'r+');
    writeSync(fd, Buffer.alloc(statSync(slots).size), 0, statSync(slots).size, 0);
    closeSync(fd);

    const again = new TestAgent({ name: 'a1', url: server.url(), keyFile, data: agent.data }).start();
    cleanup.push(() => again.kill9());
    await until('run lost', async () => {
      const r = (await server.store.getRun(run!.id))!;
      return r.state === 'lost' ? r : undefined;
    }, 20_000);
    expect((await server.store.getRun(run!.id))!.endReason).toMatch(/agent a1 no longer has run/);
  });
});
