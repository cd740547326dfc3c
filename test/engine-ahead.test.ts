import { afterEach, describe, expect, it } from 'vitest';
import { planApplyFromYaml } from '@batchalyzer/core';
import { harness, type Harness } from './support/engine.js';

/**
 * Runs created ahead of their due time (docs/scheduling.md, "Runs created ahead"): the engine makes a scheduled
 * run up to five minutes before it comes due; it never runs early, it follows the definitions in force when it
 * comes due, operators can hold or cancel it, and a restart neither repeats nor loses it.
 */
let h: Harness;
afterEach(async () => {
  await h?.close();
});

const T = (hhmm: string) => Date.parse(`2026-06-01T${hhmm}:00Z`);
const runsOf = async (job: string) => (await h.server.store.listRuns({ job }, { limit: 100 })).items.reverse();
const sentFor = (job: string) => h.link.sent.filter((s) => s.payload.jobName === job);
/** An apply that removes the jobs it does not list (`apply --prune`). */
const applyPruning = async (yaml: string) => {
  const store = h.server.store;
  const plan = planApplyFromYaml(await store.loadDefinitions(), yaml, 'test.yaml', { defaultTimezone: 'UTC', prune: true });
  await store.applyDefinitions(plan, 'test', h.clock.now());
  h.server.events.emit('definitions:applied', { changes: plan.changes.length, actor: 'test' });
  await h.server.engine.pass();
};
const at = async (hhmm: string) => {
  h.clock.t = T(hhmm);
  await h.server.engine.pass();
};

describe('runs created ahead of their due time', () => {
  it('wait for their time, saying so, and are dispatched when it comes', async () => {
    h = await harness(T('10:00'));
    h.link.connect('a1');
    await h.apply(`
jobs:
  j: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
`);
    const [run] = await runsOf('j');
    expect(run).toMatchObject({ state: 'waiting', dueAt: T('10:03'), nominalAt: T('10:03'), origin: 'schedule' });
    expect(run!.waitReason).toEqual({ code: 'not-due', until: T('10:03') });
    expect((await h.server.actions.why(run!.id)).reasons).toEqual([{ code: 'not-due', until: T('10:03') }]);
    h.clock.t = T('10:03') - 1;
    await h.server.engine.pass();
    expect(sentFor('j')).toEqual([]);
    await at('10:03');
    expect(sentFor('j').map((s) => s.payload.runId)).toEqual([run!.id]);
    expect(await runsOf('j')).toHaveLength(1);
  });

  it('follow the definitions in force when they come due: changed, rescheduled, disabled and removed jobs', async () => {
    h = await harness(T('10:00'));
    h.link.connect('a1');
    const defs = (jobs: string) => `
jobs:
  same: { run: { shell: "echo same" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
${jobs}`;
    await h.apply(defs(`
  changed: { run: { shell: "echo old" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
  moved: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
  disabled: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
  removed: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
`));
    const before = new Map((await Promise.all(['same', 'changed', 'moved', 'disabled', 'removed'].map(async (j) => [j, (await runsOf(j))[0]!] as const))));
    for (const r of before.values()) expect(r).toMatchObject({ state: 'waiting', dueAt: T('10:03') });
    await at('10:01');
    const withdrawn: string[] = [];
    h.server.events.on('run:withdrawn', (e) => withdrawn.push(e.jobName));
    await applyPruning(defs(`
  changed: { run: { shell: "echo new" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
  moved: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "4 10 * * *" } }
  disabled: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" }, enabled: false }
`));
    // The runs made under the old definitions are gone, not ended: they never were due.
    for (const j of ['changed', 'moved', 'disabled', 'removed']) expect(await h.server.store.getRun(before.get(j)!.id)).toBeUndefined();
    expect(withdrawn.sort()).toEqual(['changed', 'disabled', 'moved', 'removed']);
    expect((await runsOf('same')).map((r) => r.id)).toEqual([before.get('same')!.id]);
    await at('10:03');
    await at('10:04');
    await at('10:10');
    expect(sentFor('same').map((s) => s.payload.runId)).toEqual([before.get('same')!.id]);
    expect(sentFor('changed').map((s) => [s.payload.run, s.payload.nominalAt])).toEqual([[{ shell: 'echo new' }, T('10:03')]]);
    expect(sentFor('moved').map((s) => s.payload.nominalAt)).toEqual([T('10:04')]);
    expect(sentFor('disabled')).toEqual([]);
    expect(sentFor('removed')).toEqual([]);
    for (const j of ['changed', 'moved']) expect(await runsOf(j)).toHaveLength(1);
  });

  it('can be held or cancelled before their time; a held one is kept through a definitions change', async () => {
    h = await harness(T('10:00'));
    h.link.connect('a1');
    const defs = (cmd: string) => `
jobs:
  held: { run: { shell: "${cmd}" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
  gone: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "3,13 10 * * *" } }
`;
    await h.apply(defs('echo one'));
    const [held] = await runsOf('held');
    const [gone] = await runsOf('gone');
    await h.server.actions.hold(held!.id, 'alice');
    await h.server.actions.cancel(gone!.id, 'alice');
    await at('10:01');
    await h.apply(defs('echo two'));
    // An operator's hold is kept (like a held run made when due, it keeps the spec it was made with).
    expect(await h.server.store.getRun(held!.id)).toMatchObject({ state: 'waiting', held: true });
    await at('10:03');
    expect(h.link.sent).toEqual([]);
    expect((await h.server.actions.why(held!.id)).reasons).toEqual([{ code: 'held' }]);
    await h.server.actions.release(held!.id, 'bob');
    await h.server.engine.pass();
    expect(sentFor('held').map((s) => s.payload.runId)).toEqual([held!.id]);
    expect(await runsOf('held')).toHaveLength(1);
    // The cancelled occurrence does not run; the next one does.
    expect((await h.server.store.getRun(gone!.id))!.state).toBe('cancelled');
    await at('10:13');
    expect(sentFor('gone').map((s) => s.payload.nominalAt)).toEqual([T('10:13')]);
  });

  it('survive a restart: the same run is dispatched at its time, none is made twice', async () => {
    h = await harness(T('10:00'));
    h.link.connect('a1');
    await h.apply(`
jobs:
  j: { run: { shell: "true" }, on: { agent: a1 }, schedule: { every: 10m, from: "10:03" } }
`);
    const [run] = await runsOf('j');
    expect(run).toMatchObject({ state: 'waiting', dueAt: T('10:03') });
    await h.restart();
    await at('10:03');
    expect(sentFor('j').map((s) => s.payload.runId)).toEqual([run!.id]);
    expect((await runsOf('j')).map((r) => r.nominalAt)).toEqual([T('10:03')]);
    await at('10:09');
    await h.restart();
    await at('10:13');
    expect((await runsOf('j')).map((r) => r.nominalAt)).toEqual([T('10:03'), T('10:13')]);
  });

  it('whose time passed while the server was down go through the catch-up policy', async () => {
    h = await harness(T('10:00'));
    await h.apply(`
jobs:
  none: { run: { shell: "true" }, on: { agent: a1 }, schedule: { every: 10m, catchUp: none } }
  once: { run: { shell: "true" }, on: { agent: a1 }, schedule: { every: 10m } }
`);
    await at('10:06'); // the 10:10 runs are made ahead
    expect((await runsOf('none')).map((r) => r.nominalAt)).toEqual([T('10:00'), T('10:10')]);
    await h.server.stop();
    h.clock.t = T('10:46');
    await h.restart();
    // none: 10:10 … 10:40 missed, recorded skipped (not run late); once: one catch-up run for them.
    const none = await runsOf('none');
    expect(none.filter((r) => r.nominalAt === T('10:10')).map((r) => r.state)).toEqual(['skipped']);
    expect(none.filter((r) => r.state === 'skipped').map((r) => r.nominalAt)).toEqual([T('10:10'), T('10:20'), T('10:30'), T('10:40')]);
    const once = (await runsOf('once')).filter((r) => r.nominalAt! <= T('10:46'));
    expect(once.map((r) => [r.nominalAt, r.origin])).toEqual([[T('10:00'), 'schedule'], [T('10:40'), 'catch-up']]);
  });

  it('are made at most a budget per pass, in due order, the engine passing again until the window is filled', async () => {
    h = await harness(T('10:00'), undefined, { lookaheadBudget: 2 });
    const created: number[] = [];
    h.server.events.on('run:created', (e) => created.push(e.runId));
    await h.apply(`
jobs:
  a: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "4 10 * * *" } }
  b: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "2 10 * * *" } }
  c: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
  d: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "1 10 * * *" } }
  e: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "6 10 * * *" } }
`);
    // The apply's pass made the two earliest; the engine's next pass (at once, without being asked) the next two.
    const jobsOf = async (ids: number[]) => Promise.all(ids.map(async (id) => (await h.server.store.getRun(id))!.jobName));
    expect(await jobsOf(created.slice(0, 2))).toEqual(['d', 'b']);
    for (let i = 0; i < 100 && created.length < 4; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await jobsOf(created)).toEqual(['d', 'b', 'c', 'a']);
    expect(await runsOf('e')).toEqual([]); // 10:06 is beyond the window
    expect(created).toHaveLength(4);
    await at('10:02');
    expect((await runsOf('e')).map((r) => r.dueAt)).toEqual([T('10:06')]);
  });

  it('are not made when the window is turned off', async () => {
    h = await harness(T('10:00'), undefined, { lookaheadMs: 0 });
    await h.apply(`
jobs:
  j: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
`);
    await at('10:02');
    expect(await runsOf('j')).toEqual([]);
    await at('10:03');
    expect((await runsOf('j')).map((r) => r.createdAt)).toEqual([T('10:03')]);
  });

  it('are not made for overlap: skip (decided when due), after chains nor mode: all', async () => {
    h = await harness(T('10:00'));
    await h.apply(`
groups:
  both: [a1, a2]
jobs:
  skip: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" }, concurrency: { max: 1, overlap: skip } }
  chain: { run: { shell: "true" }, on: { agent: a1 }, schedule: { after: 2m } }
  fan: { run: { shell: "true" }, on: { group: both, mode: all }, schedule: { cron: "3 10 * * *" } }
`);
    for (const j of ['skip', 'fan']) expect(await runsOf(j)).toEqual([]);
    expect(await runsOf('chain')).toHaveLength(1); // its first, due at once; its next follows that run's end
    await at('10:03');
    expect((await runsOf('skip')).map((r) => r.nominalAt)).toEqual([T('10:03')]);
    expect((await runsOf('fan')).map((r) => [r.targetAgent, r.createdAt])).toEqual([['a1', T('10:03')], ['a2', T('10:03')]]);
  });
});

/** Like `batchalyzer apply` from another process: the store changes, no event; the engine sees it in its next pass. */
const cliApply = async (yaml: string) => {
  const store = h.server.store;
  const plan = planApplyFromYaml(await store.loadDefinitions(), yaml, 'cli.yaml', { defaultTimezone: 'UTC' });
  await store.applyDefinitions(plan, 'cli', h.clock.now());
};

describe('runs created ahead: what is never taken back', () => {
  it('a run waiting for its retry keeps its history when the job is edited, and is retried once (review A)', async () => {
    h = await harness(T('09:58'));
    h.link.connect('a1');
    const defs = (cmd: string) => `
jobs:
  j: { run: { shell: "${cmd}" }, on: { agent: a1 }, schedule: { cron: "0 10 * * *" }, retries: { count: 2, delay: 10m } }
`;
    await h.apply(defs('false'));
    await at('10:00');
    const [run] = await runsOf('j');
    await h.finish(run!.id, 1);
    expect(await h.server.store.getRun(run!.id)).toMatchObject({ state: 'waiting', attempt: 2, dueAt: T('10:10') });
    h.clock.t = T('10:02');
    await h.apply(defs('true'));
    await at('10:05');
    // Not withdrawn: same run, its failed attempt still recorded, no new run for 10:00.
    expect((await runsOf('j')).map((r) => [r.id, r.attempt])).toEqual([[run!.id, 2]]);
    expect((await h.server.store.runEvents(run!.id)).map((e) => e.toState)).toEqual(['waiting', 'dispatched', 'running', 'waiting']);
    await at('10:10');
    expect(sentFor('j').map((s) => [s.payload.runId, s.payload.attempt])).toEqual([[run!.id, 1], [run!.id, 2]]);
  });

  it('mode: all: a member run waiting for its retry stays through an unrelated apply; nothing runs twice (review B)', async () => {
    h = await harness(T('09:58'));
    h.link.connect('a1');
    h.link.connect('a2');
    const defs = (extra: string) => `
groups:
  both: [a1, a2]
jobs:
  fan: { run: { shell: "x" }, on: { group: both, mode: all }, schedule: { cron: "0 10 * * *" }, retries: { count: 2, delay: 10m } }
${extra}`;
    await h.apply(defs(''));
    await at('10:00');
    const runs = await runsOf('fan');
    const a1 = runs.find((r) => r.targetAgent === 'a1')!;
    const a2 = runs.find((r) => r.targetAgent === 'a2')!;
    await h.finish(a1.id, 0);
    await h.finish(a2.id, 1);
    h.clock.t = T('10:02');
    await h.apply(defs('  other: { run: { shell: "true" }, on: { agent: a1 } }'));
    await at('10:03');
    expect((await runsOf('fan')).map((r) => [r.id, r.state, r.attempt])).toEqual([[a1.id, 'succeeded', 1], [a2.id, 'waiting', 2]]);
    expect(sentFor('fan').map((s) => [s.agent, s.payload.runId])).toEqual([['a1', a1.id], ['a2', a2.id]]);
  });

  it('a restart while a run waits for its retry neither deletes it nor repeats the occurrences after it (review C)', async () => {
    h = await harness(T('09:58'));
    h.link.connect('a1');
    await h.apply(`
jobs:
  j: { run: { shell: "x" }, on: { agent: a1 }, schedule: { every: 5m, from: "10:00", catchUp: all }, concurrency: { max: 3 }, retries: { count: 1, delay: 12m } }
`);
    await at('10:00');
    const [first] = await runsOf('j');
    await h.finish(first!.id, 1);
    for (const t of ['10:05', '10:10']) {
      await at(t);
      await h.finish(sentFor('j').at(-1)!.payload.runId, 0);
    }
    await at('10:11');
    await h.server.stop();
    h.clock.t = T('10:14');
    await h.restart();
    const nominals = (await runsOf('j')).map((r) => [(r.nominalAt! - T('10:00')) / 60_000, r.origin]);
    expect(nominals).toEqual([[0, 'schedule'], [5, 'schedule'], [10, 'schedule'], [15, 'schedule']]);
    expect((await h.server.store.getRun(first!.id))!.attempt).toBe(2);
    expect((await h.server.store.runEvents(first!.id)).length).toBeGreaterThan(3);
    // The retry is sent (late); 10:00, 10:05 and 10:10 are not sent again.
    expect(sentFor('j').map((s) => [(s.payload.nominalAt! - T('10:00')) / 60_000, s.payload.attempt])).toEqual([[0, 1], [5, 1], [10, 1], [0, 2]]);
  });
});

describe('runs created ahead: when they are taken back', () => {
  it('a CLI apply seen only by the pass at the due time still applies: disabled, and changed (review D)', async () => {
    h = await harness(T('10:00'));
    h.link.connect('a1');
    const defs = (off: string, cmd: string) => `
jobs:
  off: { run: { shell: "echo old" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" }${off} }
  cmd: { run: { shell: "${cmd}" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
`;
    await h.apply(defs('', 'echo old'));
    await at('10:02');
    const [old] = await runsOf('cmd');
    h.clock.t = T('10:03') - 20_000;
    await cliApply(defs(', enabled: false', 'echo new'));
    await at('10:03');
    expect(sentFor('off')).toEqual([]);
    expect(await runsOf('off')).toEqual([]);
    expect(sentFor('cmd').map((s) => [s.payload.run, s.payload.nominalAt])).toEqual([[{ shell: 'echo new' }, T('10:03')]]);
    expect((await runsOf('cmd')).map((r) => [r.origin, r.nominalAt])).toEqual([['schedule', T('10:03')]]);
    expect(await h.server.store.getRun(old!.id)).toBeUndefined();
  });

  it('a run that came due while no pass ran (clock jump, suspended VM) goes through catch-up (review E)', async () => {
    h = await harness(T('09:58'));
    h.link.connect('a1');
    await h.apply(`
jobs:
  j: { run: { shell: "x" }, on: { agent: a1 }, schedule: { cron: "0 * * * *", catchUp: none } }
`);
    expect((await runsOf('j')).map((r) => r.nominalAt)).toEqual([T('10:00')]);
    await at('10:56');
    await at('12:30');
    expect(sentFor('j')).toEqual([]);
    expect((await runsOf('j')).map((r) => [(r.nominalAt! - T('10:00')) / 3_600_000, r.state])).toEqual([[0, 'skipped'], [1, 'skipped'], [2, 'skipped']]);
  });

  it('an occurrence at the very millisecond of the pass that moves the job is made', async () => {
    h = await harness(T('10:00'));
    h.link.connect('a1');
    const defs = (minute: number) => `
jobs:
  j: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "${minute} 10 * * *" } }
`;
    await h.apply(defs(3));
    h.clock.t = T('10:02');
    await h.apply(defs(2));
    expect(sentFor('j').map((s) => s.payload.nominalAt)).toEqual([T('10:02')]);
    await at('10:03');
    expect((await runsOf('j')).map((r) => r.nominalAt)).toEqual([T('10:02')]);
  });

  it('a cancelled run made ahead is not made again when a later one is withdrawn; the next occurrence follows the new definitions', async () => {
    h = await harness(T('10:00'));
    h.link.connect('a1');
    const defs = (cmd: string) => `
jobs:
  j: { run: { shell: "${cmd}" }, on: { agent: a1 }, schedule: { cron: "* 10 * * *" } }
`;
    await h.apply(defs('echo old'));
    const c = (await runsOf('j')).find((r) => r.nominalAt === T('10:01'))!;
    expect(c).toMatchObject({ state: 'waiting', origin: 'schedule' });
    h.clock.t = T('10:00') + 10_000;
    await h.server.actions.cancel(c.id, 'alice');
    await h.server.engine.pass();
    const d = (await runsOf('j')).find((r) => r.nominalAt === T('10:02'))!;
    expect(d).toMatchObject({ state: 'waiting' });
    h.clock.t = T('10:00') + 20_000;
    await h.apply(defs('echo new'));
    expect(await h.server.store.getRun(d.id)).toBeUndefined();
    await h.finish(sentFor('j')[0]!.payload.runId, 0);
    await at('10:01');
    await at('10:02');
    // The cancelled occurrence does not run (docs/scheduling.md); the withdrawn one is made again, from the new definitions.
    expect(sentFor('j').map((s) => [s.payload.run, s.payload.nominalAt])).toEqual([
      [{ shell: 'echo old' }, T('10:00')], [{ shell: 'echo new' }, T('10:02')],
    ]);
    expect((await runsOf('j')).filter((r) => r.nominalAt === T('10:01')).map((r) => r.state)).toEqual(['cancelled']);
  });

  it('an occurrence decided in the same millisecond as the withdrawal of the next one is not made twice', async () => {
    h = await harness(T('10:00'));
    h.link.connect('a1');
    const defs = (cmd: string) => `
jobs:
  j: { run: { shell: "${cmd}" }, on: { agent: a1 }, schedule: { cron: "2,3 10 * * *" } }
`;
    await h.apply(defs('echo old'));
    // The pass at 10:02 dispatches the 10:02 run and makes the 10:03 one ahead; an apply in that millisecond
    // takes the 10:03 one back.
    await at('10:02');
    expect((await runsOf('j')).map((r) => r.nominalAt)).toEqual([T('10:02'), T('10:03')]);
    await h.apply(defs('echo new'));
    await h.finish(sentFor('j')[0]!.payload.runId, 0);
    await at('10:03');
    expect(sentFor('j').map((s) => [s.payload.run, s.payload.nominalAt])).toEqual([
      [{ shell: 'echo old' }, T('10:02')], [{ shell: 'echo new' }, T('10:03')],
    ]);
    expect((await runsOf('j')).map((r) => r.nominalAt)).toEqual([T('10:02'), T('10:03')]);
  });

  it('a run held and released within its creation millisecond is kept through a change; the other stale runs are still withdrawn', async () => {
    h = await harness(T('10:00'));
    h.link.connect('a1');
    const defs = (cmd: string) => `
jobs:
  touched: { run: { shell: "${cmd}" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
  other: { run: { shell: "${cmd}" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
`;
    await h.apply(defs('echo old'));
    const [touched] = await runsOf('touched');
    const [other] = await runsOf('other');
    // Same millisecond as the creation: updatedAt stays createdAt, only the run's events tell.
    await h.server.actions.hold(touched!.id, 'alice');
    await h.server.actions.release(touched!.id, 'alice');
    expect(await h.server.store.getRun(touched!.id)).toMatchObject({ createdAt: T('10:00'), updatedAt: T('10:00'), held: false });
    await h.apply(defs('echo new'));
    expect(await h.server.store.getRun(other!.id)).toBeUndefined();
    expect((await h.server.store.runEvents(touched!.id)).length).toBe(3);
    await at('10:03');
    expect(sentFor('touched').map((s) => [s.payload.runId, s.payload.run])).toEqual([[touched!.id, { shell: 'echo old' }]]);
    expect(sentFor('other').map((s) => s.payload.run)).toEqual([{ shell: 'echo new' }]);
  });

  it('a refused withdrawal re-reads the runs and the pass goes on (held by another process; withdrawn by a commit whose reply was lost)', async () => {
    h = await harness(T('10:00'));
    h.link.connect('a1');
    const defs = (cmd: string) => `
jobs:
  held: { run: { shell: "${cmd}" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
  gone: { run: { shell: "${cmd}" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
  due: { run: { shell: "true" }, on: { agent: a1 }, schedule: { cron: "2 10 * * *" } }
`;
    await h.apply(defs('echo one'));
    const store = h.server.store;
    const [held] = await runsOf('held');
    const [gone] = await runsOf('gone');
    // Behind the engine's back: a hold, and a withdrawal that committed (its entry moved back to 10:03).
    await store.setRunHeld(held!.id, true, 'alice', T('10:01'));
    const entry = (await store.planEntries('2026-06-01')).find((e) => e.jobName === 'gone')!;
    await store.withdrawEarlyRuns([gone!.id], [{ ...entry, nextDueAt: T('10:03'), lastNominalAt: T('10:03') - 1 }]);
    h.clock.t = T('10:02');
    await h.apply(defs('echo two'));
    // The same pass made and dispatched what was due.
    expect(sentFor('due').map((s) => s.payload.nominalAt)).toEqual([T('10:02')]);
    expect(await store.getRun(held!.id)).toMatchObject({ held: true, state: 'waiting' });
    await at('10:03');
    expect(sentFor('gone').map((s) => [s.payload.run, s.payload.nominalAt])).toEqual([[{ shell: 'echo two' }, T('10:03')]]);
    expect(sentFor('held')).toEqual([]);
  });
});

describe('runs created ahead: store errors', () => {
  it('a withdrawal that failed with a store error is tried again by the next pass', async () => {
    h = await harness(T('10:00'));
    h.link.connect('a1');
    const defs = (cmd: string) => `
jobs:
  j: { run: { shell: "${cmd}" }, on: { agent: a1 }, schedule: { cron: "3 10 * * *" } }
`;
    await h.apply(defs('echo old'));
    const [old] = await runsOf('j');
    const store = h.server.store;
    const withdraw = store.withdrawEarlyRuns.bind(store);
    let failures = 0;
    store.withdrawEarlyRuns = async (ids, entries) => {
      if (failures++ === 0) throw new Error('connection terminated unexpectedly');
      return withdraw(ids, entries);
    };
    h.clock.t = T('10:01');
    await cliApply(defs('echo new'));
    await h.server.engine.pass(); // fails: the store's connection dropped
    expect(await store.getRun(old!.id)).toBeDefined();
    await h.server.engine.pass();
    expect(await store.getRun(old!.id)).toBeUndefined();
    await at('10:03');
    expect(sentFor('j').map((s) => s.payload.run)).toEqual([{ shell: 'echo new' }]);
  });
});
