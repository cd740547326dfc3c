import { afterEach, describe, expect, it } from 'vitest';
import { harness, type Harness } from './support/engine.js';

/** Scheduling scenarios of issue 2/9 at the server's dispatch boundary: real store and engine, injected clock. */
const BASE = `
groups:
  inner: [a1]
  outer: [inner, a3]
  both: [a1, a2]
resources:
  pool2: { pool: 2 }
  api: { rate: 2/1m }
  cpu-{agent}: { pool: 2 }
`;

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const waitingReason = async (id: number) => (await h.server.store.getRun(id))!.waitReason as { code: string; [k: string]: unknown };
const states = async (ids: number[]) => Promise.all(ids.map(async (id) => (await h.server.store.getRun(id))!.state));

describe('conditions', () => {
  const JOBS = `${BASE}
jobs:
  A: { run: { shell: "true" }, on: { agent: a1 }, posts: [a-done] }
  B: { run: { shell: "true" }, on: { agent: a1 }, requires: [a-done] }
`;

  it('(1) B waits while A runs, runs after A succeeds, and the condition survives a restart', async () => {
    h = await harness();
    h.link.connect('a1');
    await h.apply(JOBS);
    const [b] = await h.server.actions.runNow('B', 'test');
    const [a] = await h.server.actions.runNow('A', 'test');
    await h.server.engine.pass();
    expect(h.link.sent.map((s) => s.payload.runId)).toEqual([a!.id]);
    expect(await waitingReason(b!.id)).toMatchObject({ code: 'conditions', missing: [{ name: 'a-done', planDate: '2026-06-01', postedBy: ['A'] }] });
    const dispatched = h.next('run:dispatched', (e) => e.runId === b!.id);
    await h.finish(a!.id, 0);
    await dispatched;
    expect((await h.server.store.listConditions({ planDate: '2026-06-01' })).map((c) => c.name)).toEqual(['a-done']);
    await h.finish(b!.id, 0);
    expect(await states([a!.id, b!.id])).toEqual(['succeeded', 'succeeded']);

    await h.restart();
    const [b2] = await h.server.actions.runNow('B', 'test');
    await h.server.engine.pass();
    expect((await h.server.store.getRun(b2!.id))!.state).toBe('dispatched');
  });

  it('(2) when A fails, B never runs that day and its explanation names the missing condition', async () => {
    h = await harness();
    h.link.connect('a1');
    await h.apply(JOBS);
    const [a] = await h.server.actions.runNow('A', 'test');
    const [b] = await h.server.actions.runNow('B', 'test');
    await h.server.engine.pass();
    await h.finish(a!.id, 1);
    expect((await h.server.store.getRun(a!.id))!.state).toBe('failed');
    h.clock.advance(13 * 3_600_000); // to 23:00, still the same plan day
    await h.server.engine.pass();
    expect((await h.server.store.getRun(b!.id))!.state).toBe('waiting');
    const why = await h.server.actions.why(b!.id);
    expect(why.reasons).toEqual([{ code: 'conditions', missing: [{ name: 'a-done', planDate: '2026-06-01', postedBy: ['A'] }] }]);
    const messages = await h.server.store.listMessages({ status: ['open'] }, { limit: 10 });
    expect(messages.items[0]).toMatchObject({ key: 'job:A:failed', severity: 'critical' });
  });
});

describe('resources', () => {
  it('(3) a pool of 2 admits two of three runs; the third names the pool and holders, then runs; right after a restart', async () => {
    h = await harness();
    h.link.connect('a1');
    h.link.connect('a2');
    await h.apply(`${BASE}
jobs:
  p1: { run: { shell: "true" }, on: { group: both }, resources: { pool2: 1 } }
  p2: { run: { shell: "true" }, on: { group: both }, resources: { pool2: 1 } }
  p3: { run: { shell: "true" }, on: { group: both }, resources: { pool2: 1 } }
`);
    const runs = [...(await h.server.actions.runNow('p1', 't')), ...(await h.server.actions.runNow('p2', 't')), ...(await h.server.actions.runNow('p3', 't'))];
    await h.server.engine.pass();
    expect(h.link.sent).toHaveLength(2);
    const third = runs.find((r) => !h.link.sent.some((s) => s.payload.runId === r.id))!;
    const reason = await waitingReason(third.id);
    expect(reason).toMatchObject({ code: 'resource', resource: 'pool2', capacity: 2 });
    expect((reason.holders as { runId: number }[]).map((x) => x.runId).sort()).toEqual(h.link.sent.map((s) => s.payload.runId).sort());
    expect((await h.server.store.resourceUsage()).pool2).toBe(2);

    await h.restart(); // mid-way: usage is recomputed from the holders
    expect((await h.server.store.resourceUsage()).pool2).toBe(2);
    expect(h.server.engine.state.holds.get('pool2')).toHaveLength(2);
    await h.server.engine.pass();
    expect(h.link.sent).toHaveLength(2);
    await h.finish(h.link.sent[0]!.payload.runId, 0);
    expect(h.link.sent.at(-1)!.payload.runId).toBe(third.id);
    expect((await h.server.store.resourceUsage()).pool2).toBe(2);
  });

  it('(4) a rate of 2 per minute admits exactly 2 starts in any 60 s window', async () => {
    h = await harness();
    h.link.connect('a1');
    await h.apply(`${BASE}
jobs:
  call: { run: { shell: "true" }, on: { agent: a1 }, resources: { api: 1 }, concurrency: { max: 100 } }
`);
    const starts: number[] = [];
    h.server.events.on('run:dispatched', () => starts.push(h.clock.now()));
    for (let i = 0; i < 7; i++) await h.server.actions.runNow('call', 't');
    for (let step = 0; step < 40; step++) {
      await h.server.engine.pass();
      h.clock.advance(7_000);
    }
    expect(starts.length).toBeGreaterThanOrEqual(5);
    for (const t of starts) expect(starts.filter((u) => u >= t && u < t + 60_000).length).toBeLessThanOrEqual(2);
  });

  it('(5) a per-agent pool sends two jobs to two agents and holds the third', async () => {
    h = await harness();
    h.link.connect('a1');
    h.link.connect('a2');
    await h.apply(`${BASE}
jobs:
  c1: { run: { shell: "true" }, on: { group: both }, resources: { "cpu-{agent}": 2 } }
  c2: { run: { shell: "true" }, on: { group: both }, resources: { "cpu-{agent}": 2 } }
  c3: { run: { shell: "true" }, on: { group: both }, resources: { "cpu-{agent}": 2 } }
`);
    for (const j of ['c1', 'c2', 'c3']) await h.server.actions.runNow(j, 't');
    await h.server.engine.pass();
    expect(h.link.sent.map((s) => s.agent).sort()).toEqual(['a1', 'a2']);
    expect(await h.server.store.resourceUsage()).toMatchObject({ 'cpu-a1': 2, 'cpu-a2': 2 });
  });
});

describe('targeting', () => {
  it('(6) a job for a1 never runs on a2 and runs once a1 connects; groups of groups; mode all fans out', async () => {
    h = await harness();
    h.link.connect('a2');
    h.link.connect('a3');
    await h.apply(`${BASE}
jobs:
  only-a1: { run: { shell: "true" }, on: { agent: a1 } }
  nested: { run: { shell: "true" }, on: { group: outer } }
  everywhere: { run: { shell: "true" }, on: { group: outer, mode: all } }
`);
    const [r1] = await h.server.actions.runNow('only-a1', 't');
    await h.server.engine.pass();
    expect(h.link.sent).toEqual([]);
    expect(await waitingReason(r1!.id)).toMatchObject({ code: 'no-agent' });
    for (let i = 0; i < 3; i++) {
      const [n] = await h.server.actions.runNow('nested', 't');
      await h.server.engine.pass();
      expect(h.link.sent.find((s) => s.payload.runId === n!.id)!.agent).toBe('a3'); // a1 is offline; a2 is not a member
      await h.finish(n!.id, 0);
    }
    const fan = await h.server.actions.runNow('everywhere', 't');
    expect(fan.map((r) => r.targetAgent).sort()).toEqual(['a1', 'a3']);
    h.link.connect('a1');
    h.server.events.emit('agent:connected', { name: 'a1' });
    await h.server.engine.pass();
    expect(h.link.sent.find((s) => s.payload.runId === r1!.id)!.agent).toBe('a1');
    expect(fan.map((r) => h.link.sent.find((s) => s.payload.runId === r.id)?.agent).sort()).toEqual(['a1', 'a3']);
    expect(h.link.sent.some((s) => s.agent === 'a2')).toBe(false);
  });
});

describe('operator actions', () => {
  it('(7) hold, release, run now, re-run, cancel and kill do what the brief says', async () => {
    h = await harness();
    h.link.connect('a1');
    await h.apply(`${BASE}
jobs:
  j: { run: { shell: "true" }, on: { agent: a1 }, requires: [go] }
  k: { run: { shell: "sleep 100" }, on: { agent: a1 } }
`);
    const [held] = await h.server.actions.runNow('j', 'alice');
    await h.server.actions.hold(held!.id, 'alice');
    await h.server.actions.postCondition('go', '2026-06-01', 'alice');
    await h.server.engine.pass();
    expect(h.link.sent).toEqual([]);
    expect(await waitingReason(held!.id)).toEqual({ code: 'held' });
    await h.server.actions.release(held!.id, 'bob');
    await h.server.engine.pass();
    expect(h.link.sent.map((s) => s.payload.runId)).toEqual([held!.id]);
    await h.finish(held!.id, 0);
    const [again] = await h.server.actions.rerun(held!.id, 'carol');
    expect(again).toMatchObject({ rerunOf: held!.id, origin: 'rerun', planDate: '2026-06-01' });
    await h.server.engine.pass();
    expect(h.link.sent.at(-1)!.payload.runId).toBe(again!.id);

    await h.server.actions.removeCondition('go', '2026-06-01', 'alice');
    const [toCancel] = await h.server.actions.runNow('j', 'alice');
    await h.server.actions.cancel(toCancel!.id, 'alice');
    expect((await h.server.store.getRun(toCancel!.id))!.state).toBe('cancelled');
    await expect(h.server.actions.cancel(toCancel!.id, 'alice')).rejects.toThrow(/already ended/);

    const [k] = await h.server.actions.runNow('k', 'alice');
    await h.server.engine.pass();
    await expect(h.server.actions.cancel(k!.id, 'alice')).rejects.toThrow(/kill it instead/);
    await h.server.actions.kill(k!.id, 'alice');
    expect(h.link.kills).toEqual([{ agent: 'a1', runId: k!.id }]);
    await h.finish(k!.id, -1 as never, { signal: 'SIGTERM' });
    const killed = await h.server.store.getRun(k!.id);
    expect(killed).toMatchObject({ state: 'failed', signal: 'SIGTERM' });
    const events = (await h.server.store.runEvents(held!.id)).map((e) => e.actor);
    expect(events).toContain('alice');
    expect(events).toContain('bob');
  });

  it('(8) a one-off job runs exactly once, never on another day', async () => {
    h = await harness();
    h.link.connect('a1');
    // Counted from the apply on: the run is made ahead of its time, in the pass that follows it.
    const created: number[] = [];
    h.server.events.on('run:created', (e) => created.push(e.runId));
    await h.apply(`${BASE}
jobs:
  once: { run: { shell: "true" }, on: { agent: a1 }, schedule: { at: "2026-06-01T10:05" } }
`);
    for (let i = 0; i < 3 * 24 * 6; i++) {
      h.clock.advance(10 * 60_000);
      await h.server.engine.pass();
      const last = h.link.sent.at(-1);
      if (last && (await h.server.store.getRun(last.payload.runId))!.state === 'dispatched') await h.finish(last.payload.runId, 0);
      if (i === 100) await h.restart();
    }
    // Passes 10 minutes apart are a clock jumping past 10:05: the run made ahead at 10:00 was never decided when
    // due, so it is withdrawn and the missed occurrence goes through catch-up (docs/scheduling.md, "Late passes").
    const runs = (await h.server.store.listRuns({ job: 'once' }, { limit: 10 })).items;
    expect(runs).toHaveLength(1);
    expect(created.at(-1)).toBe(runs[0]!.id);
    expect(h.link.sent).toHaveLength(1);
    expect(runs[0]!.nominalAt).toBe(Date.parse('2026-06-01T10:05:00Z'));
  });

  it('retries a failed attempt after its delay and only the last failure ends the run', async () => {
    h = await harness();
    h.link.connect('a1');
    await h.apply(`${BASE}
jobs:
  flaky: { run: { shell: "false" }, on: { agent: a1 }, retries: { count: 2, delay: 1m, backoff: 2 } }
`);
    const [r] = await h.server.actions.runNow('flaky', 't');
    await h.server.engine.pass();
    await h.finish(r!.id, 1);
    expect(await h.server.store.getRun(r!.id)).toMatchObject({ state: 'waiting', attempt: 2, dueAt: h.clock.now() + 60_000 });
    h.clock.advance(60_000);
    await h.server.engine.pass();
    await h.finish(r!.id, 1);
    expect(await h.server.store.getRun(r!.id)).toMatchObject({ state: 'waiting', attempt: 3, dueAt: h.clock.now() + 120_000 });
    expect((await h.server.store.listMessages({ status: ['open'] }, { limit: 5 })).items).toEqual([]);
    h.clock.advance(120_000);
    await h.server.engine.pass();
    await h.finish(r!.id, 1);
    expect(await h.server.store.getRun(r!.id)).toMatchObject({ state: 'failed', attempt: 3 });
    expect((await h.server.store.listMessages({ status: ['open'] }, { limit: 5 })).items).toHaveLength(1);
  });
});

describe('plan days and schedules', () => {
  it('materializes a repeating job as it comes due, carries nominal time and plan date to the agent, and rolls over days', async () => {
    h = await harness(Date.parse('2026-06-01T23:41:00Z'));
    h.link.connect('a1');
    await h.apply(`${BASE}
jobs:
  tick: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "*/10 * * * *" } }
`);
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      h.clock.advance(5 * 60_000);
      await h.server.engine.pass();
      const last = h.link.sent.at(-1);
      if (last && !seen.includes(String(last.payload.runId))) {
        seen.push(String(last.payload.runId));
        await h.finish(last.payload.runId, 0);
      }
    }
    const nominal = h.link.sent.map((s) => [s.payload.planDate, new Date(s.payload.nominalAt!).toISOString()]);
    expect(nominal).toEqual([
      ['2026-06-01', '2026-06-01T23:50:00.000Z'],
      ['2026-06-02', '2026-06-02T00:00:00.000Z'],
      ['2026-06-02', '2026-06-02T00:10:00.000Z'],
    ]);
    expect((await h.server.store.planDays()).map((d) => d.planDate)).toEqual(['2026-06-01', '2026-06-02']);
    // One plan entry per job per day, never a row per future occurrence.
    expect(await h.server.store.planEntries('2026-06-02')).toHaveLength(1);
  });

  it('after a restart following downtime, the catch-up policy applies once and nothing is duplicated', async () => {
    const dir = (await import('./support/cli.js')).tempDir();
    h = await harness(Date.parse('2026-06-01T10:00:00Z'), dir);
    h.link.connect('a1');
    await h.apply(`${BASE}
jobs:
  every5: { run: { shell: "true" }, on: { agent: a1 }, schedule: { every: 5m }, concurrency: { max: 50 } }
  all5: { run: { shell: "true" }, on: { agent: a1 }, schedule: { every: 5m, catchUp: all }, concurrency: { max: 50 } }
  none5: { run: { shell: "true" }, on: { agent: a1 }, schedule: { every: 5m, catchUp: none }, concurrency: { max: 50 } }
`);
    h.clock.advance(5 * 60_000);
    await h.server.engine.pass();
    await h.server.stop();
    h.clock.advance(60 * 60_000); // down for an hour: 12 occurrences missed
    await h.restart();
    const count = async (job: string) => (await h.server.store.listRuns({ job }, { limit: 100 })).items;
    // 10:00 and 10:05 ran; the twelve missed (10:10 … 11:05) collapse into one run.
    expect((await count('every5')).length).toBe(3);
    expect((await count('all5')).filter((r) => r.state !== 'skipped').length).toBe(14);
    const none = await count('none5');
    expect(none.filter((r) => r.state === 'skipped').length).toBe(11);
    expect(none.filter((r) => r.state !== 'skipped').length).toBe(3); // 10:00, 10:05 and the on-time 11:05
    await h.server.engine.pass();
    // Nothing made twice; the 11:10 run may already exist, made ahead of its time.
    expect((await count('all5')).filter((r) => r.nominalAt! <= h.clock.now())).toHaveLength(14);
  });
});

describe('review findings', () => {
  it('a definitions change landing at a due time does not drop the due occurrence', async () => {
    h = await harness(Date.parse('2026-06-01T10:29:50Z'));
    h.link.connect('a1');
    await h.apply(`${BASE}
jobs:
  backup: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "30 10 * * *" } }
  other: { run: { shell: "true" }, on: { agent: a1 } }
`);
    h.clock.advance(10_200); // 10:30:00.2, no pass yet
    await h.apply(`${BASE}
jobs:
  backup: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "30 10 * * *" } }
  other: { run: { shell: "true" }, on: { agent: a1 }, tags: [changed] }
`);
    const runs = (await h.server.store.listRuns({ job: 'backup' }, { limit: 5 })).items;
    expect(runs.map((r) => new Date(r.nominalAt!).toISOString())).toEqual(['2026-06-01T10:30:00.000Z']);
  });

  it('cancel never ends a run that a dispatch has claimed', async () => {
    h = await harness();
    h.link.connect('a1');
    await h.apply(`${BASE}
jobs:
  j: { run: { shell: "true" }, on: { agent: a1 }, resources: { pool2: 1 } }
`);
    const [r] = await h.server.actions.runNow('j', 't');
    // The store claims the run while the engine's mirror still says waiting.
    await h.server.store.dispatchRun({ runId: r!.id, agent: 'a1', at: h.clock.now(), actor: 'test', pools: [{ resource: 'pool2', units: 1, capacity: 2 }], rates: [] });
    await expect(h.server.actions.cancel(r!.id, 'alice')).rejects.toThrow(/dispatched now; kill it instead/);
    expect((await h.server.store.getRun(r!.id))!.state).toBe('dispatched');
    expect((await h.server.store.resourceUsage()).pool2).toBe(1);
  });

  it('mode all with overlap: skip runs on every agent', async () => {
    h = await harness();
    for (const a of ['a1', 'a2']) h.link.connect(a);
    await h.apply(`${BASE}
jobs:
  fan: { run: { shell: "true" }, on: { group: both, mode: all }, schedule: { every: 10m }, concurrency: { overlap: skip } }
`);
    h.clock.advance(10 * 60_000);
    await h.server.engine.pass();
    const runs = (await h.server.store.listRuns({ job: 'fan' }, { limit: 10 })).items;
    expect(runs.filter((r) => r.state !== 'skipped').map((r) => r.targetAgent).sort()).toEqual(['a1', 'a2']);
  });

  it('a killed run ends failed, naming who killed it, and is not retried', async () => {
    h = await harness();
    h.link.connect('a1');
    await h.apply(`${BASE}
jobs:
  long: { run: { shell: "sleep 100" }, on: { agent: a1 }, retries: { count: 3, delay: 1s } }
`);
    const [r] = await h.server.actions.runNow('long', 't');
    await h.server.engine.pass();
    await h.server.actions.kill(r!.id, 'alice');
    await h.finish(r!.id, null as never, { signal: 'SIGTERM' });
    expect(await h.server.store.getRun(r!.id)).toMatchObject({ state: 'failed', attempt: 1, endReason: 'killed by alice (killed by SIGTERM)' });
  });

  it('refuses to order a job into a date that does not exist', async () => {
    h = await harness();
    await h.apply(`${BASE}
jobs:
  j: { run: { shell: "true" }, on: { agent: a1 } }
`);
    await expect(h.server.actions.order('j', '2026-02-31', 't')).rejects.toThrow(/not a date/);
    const [r] = await h.server.actions.order('j', '2026-05-31', 't');
    expect(r).toMatchObject({ planDate: '2026-05-31', origin: 'order' });
  });

  it('a job whose env needs a secret fails with the reason instead of running without it', async () => {
    h = await harness();
    h.link.connect('a1');
    await h.apply(`${BASE}
jobs:
  j: { run: { shell: "true" }, on: { agent: a1 }, env: { TOKEN: { secret: api-token } } }
`);
    const [r] = await h.server.actions.runNow('j', 't');
    await h.server.engine.pass();
    await new Promise((res) => setImmediate(res));
    const ended = await h.server.store.getRun(r!.id);
    expect(ended!.state).toBe('failed');
    expect(ended!.endReason).toMatch(/secret "api-token"/);
    expect(h.link.sent).toEqual([]);
  });

  it('whole plan days missed while down go through the catch-up policy', async () => {
    const dir = (await import('./support/cli.js')).tempDir();
    h = await harness(Date.parse('2026-06-01T13:00:00Z'), dir);
    await h.apply(`${BASE}
jobs:
  noon-all: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "0 12 * * *", catchUp: all }, concurrency: { max: 9 } }
  noon-none: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "0 12 * * *", catchUp: none } }
`);
    await h.server.stop();
    h.clock.advance(2 * 86_400_000); // down until 2026-06-03 13:00
    await h.restart();
    const all = (await h.server.store.listRuns({ job: 'noon-all' }, { limit: 10 })).items.map((r) => r.planDate).sort();
    expect(all).toEqual(['2026-06-02', '2026-06-03']);
    const none = (await h.server.store.listRuns({ job: 'noon-none' }, { limit: 10 })).items;
    expect(none.find((r) => r.planDate === '2026-06-02')?.state).toBe('skipped');
  });
});

describe('after schedules', () => {
  it('follow the end of each run, and continue past a cancel and after a restart that lost the next time', async () => {
    h = await harness(Date.parse('2026-06-01T10:00:00Z'));
    h.link.connect('a1');
    await h.apply(`${BASE}
jobs:
  chain: { run: { shell: "true" }, on: { agent: a1 }, schedule: { after: 5m } }
`);
    const first = h.link.sent.at(-1)!.payload.runId;
    h.clock.advance(60_000);
    await h.finish(first, 0); // ends 10:01 → next at 10:06
    const entry = async () => (await h.server.store.planEntries('2026-06-01'))[0]!;
    expect((await entry()).nextDueAt).toBe(Date.parse('2026-06-01T10:06:00Z'));
    h.link.agents.clear(); // nobody to run the next one: it waits, and is cancelled
    h.clock.advance(5 * 60_000);
    await h.server.engine.pass();
    const second = (await h.server.store.listRuns({ job: 'chain' }, { limit: 1 })).items[0]!;
    expect(second.state).toBe('waiting');
    await h.server.actions.cancel(second.id, 'alice');
    expect((await entry()).nextDueAt).toBe(h.clock.now() + 5 * 60_000);
    // Simulate a crash between the end and the entry update: the restart repairs the chain.
    await h.server.store.upsertPlanEntries([{ ...(await entry()), nextDueAt: null }]);
    await h.restart();
    expect((await entry()).nextDueAt).toBe(h.clock.now() + 5 * 60_000);
  });
});

describe('pass schedule', () => {
  /** Counts engine passes: each one starts by asking the store for the definitions version. */
  const countPasses = () => {
    const store = h.server.store;
    const version = store.definitionsVersion.bind(store);
    const counter = { n: 0 };
    store.definitionsVersion = () => {
      counter.n++;
      return version();
    };
    return counter;
  };

  it('a run made eligible is dispatched in the same event-loop turn, with at most one pass started a turn', async () => {
    h = await harness();
    h.link.connect('a1');
    await h.apply(`${BASE}
jobs:
  A: { run: { shell: "true" }, on: { agent: a1 } }
`);
    const passes = countPasses();
    await new Promise((r) => setImmediate(r)); // a turn of its own (apply ended with a pass)
    // Queued before the run is made: a pass that waited for the loop's check phase would come after it.
    const seen = new Promise<{ passes: number; sent: number }>((r) => setImmediate(() => r({ passes: passes.n, sent: h.link.sent.length })));
    const [a] = await h.server.actions.runNow('A', 'test');
    await h.server.engine.pass(); // already over, or it would not resolve before the check phase
    h.server.engine.poke(); // a second pass in the same turn waits for the next one
    expect(await seen).toEqual({ passes: 1, sent: 1 });
    expect(h.link.sent[0]!.payload.runId).toBe(a!.id);
    await h.server.engine.pass();
    expect(passes.n).toBeGreaterThanOrEqual(2);
  });
});
