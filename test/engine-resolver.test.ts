import { afterEach, describe, expect, it } from 'vitest';
import { decide, type WaitReason } from '@batchalyzer/core';
import { harness, type Harness } from './support/engine.js';

/**
 * The engine decides incrementally (core/schedule/resolver.ts), told of every change by its mirror. After each
 * pass, the reference decision over the whole mirror must find nothing more to dispatch and give every waiting
 * run the reason the engine stored — whatever mix of completions, conditions, holds, agents and time came before.
 * A change the mirror forgot to report shows up here as a run left waiting or a stale reason.
 */
let h: Harness;
afterEach(async () => h?.close());

const YAML = `timezone: UTC
groups:
  both: [a1, a2]
resources:
  pool2: { pool: 2 }
  cpu-{agent}: { pool: 1 }
  api: { rate: 3/1m }
jobs:
  up: { run: { shell: "true" }, on: { group: both }, posts: { success: [up-done] }, resources: { pool2: 1 } }
  down: { run: { shell: "true" }, on: { group: both }, requires: [up-done], resources: { pool2: 1, "cpu-{agent}": 1 } }
  calls: { run: { shell: "true" }, on: { agent: a1 }, resources: { api: 1 }, concurrency: { max: 3 } }
  solo: { run: { command: [/bin/true] }, on: { agent: a2 }, concurrency: { max: 1 } }
  urgent: { run: { shell: "true" }, on: { group: both }, priority: 5, resources: { pool2: 2 } }
`;

/** What a reason keeps when its run was not decided again (see docs/scheduling.md). */
function stable(r: unknown): unknown {
  const x = r as WaitReason | null;
  if (x?.code === 'resource') return { ...x, holders: 'any', blockedBy: 'any', holdersTotal: 'any' };
  if (x?.code === 'rate') return { ...x, freeAt: 'any' };
  return x;
}

describe('incremental decision in the engine', () => {
  it('leaves nothing that the full decision would dispatch, and stores the reasons it gives', async () => {
    h = await harness();
    h.link.connect('a1');
    h.link.connect('a2');
    await h.apply(YAML);
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const jobs = ['up', 'down', 'calls', 'solo', 'urgent'];
    let checked = 0;
    for (let step = 0; step < 120; step++) {
      const r = rnd();
      const e = h.server.engine;
      const active = [...e.state.runs.values()].filter((x) => x.state !== 'waiting');
      const waiting = [...e.state.runs.values()].filter((x) => x.state === 'waiting');
      if (r < 0.35) await h.server.actions.runNow(jobs[Math.floor(rnd() * jobs.length)]!, 't');
      else if (r < 0.6 && active.length) await h.finish(active[Math.floor(rnd() * active.length)]!.id, rnd() < 0.8 ? 0 : 1);
      else if (r < 0.7 && waiting.length) {
        const w = waiting[Math.floor(rnd() * waiting.length)]!;
        await (w.held ? h.server.actions.release(w.id, 't') : h.server.actions.hold(w.id, 't'));
      } else if (r < 0.8) h.clock.advance(Math.floor(rnd() * 40_000));
      else if (r < 0.87) {
        if (h.link.agents.has('a2')) h.link.agents.delete('a2');
        else h.link.connect('a2');
        h.server.events.emit('agent:connected', { name: 'a2' });
      }
      await e.pass();
      const snap = e.state.snapshot(h.clock.now(), e.defs, e.connectedAgents(), e.registeredAgents(), e.options.agingMs);
      const full = decide(snap);
      expect(full.dispatch).toEqual([]);
      for (const w of snap.waiting) {
        const stored = (await h.server.store.getRun(w.id))!.waitReason;
        expect([w.id, stable(stored)]).toEqual([w.id, stable(JSON.parse(JSON.stringify(full.waiting.get(w.id))))]);
        checked++;
      }
    }
    expect(h.link.sent.length).toBeGreaterThan(20);
    expect(checked).toBeGreaterThan(100);
  });
});

describe('stored wait reasons', () => {
  it('are not rewritten when only the holders of a pool change, while the mirror keeps the live holders', async () => {
    h = await harness();
    h.link.connect('a1');
    await h.apply(`timezone: UTC
resources:
  one: { pool: 1 }
jobs:
  q: { run: { shell: "true" }, on: { agent: a1 }, concurrency: { max: 100 }, resources: { one: 1 } }
`);
    const e = h.server.engine;
    for (let i = 0; i < 6; i++) await h.server.actions.runNow('q', 't');
    await e.pass();
    const written: number[] = [];
    const store = h.server.store;
    const original = store.setWaitReasons.bind(store);
    store.setWaitReasons = async (items) => {
      written.push(...items.map((i) => i.runId));
      return original(items);
    };
    for (let k = 0; k < 3; k++) {
      const holder = [...e.state.runs.values()].find((r) => r.state !== 'waiting')!;
      await h.finish(holder.id, 0);
      await e.pass();
      const now = [...e.state.runs.values()].find((r) => r.state !== 'waiting')!;
      const waiter = [...e.state.runs.values()].find((r) => r.state === 'waiting')!;
      // The mirror has the new holder; the store keeps the reason as first written (same resource, need, capacity).
      expect((waiter.waitReason as { holders: { runId: number }[] }).holders.map((x) => x.runId)).toEqual([now.id]);
      expect((await store.getRun(waiter.id))!.waitReason).toMatchObject({ code: 'resource', resource: 'one', need: 1, capacity: 1 });
    }
    expect(written).toEqual([]);
  });
});

describe('a store error during dispatch', () => {
  it('puts the runs decided but not dispatched back, and the next pass dispatches them', async () => {
    h = await harness();
    h.link.connect('a1');
    await h.apply(`timezone: UTC
jobs:
  one: { run: { shell: "true" }, on: { agent: a1 } }
  two: { run: { shell: "true" }, on: { agent: a1 } }
`);
    const store = h.server.store as { dispatchRun: (...a: unknown[]) => Promise<unknown> };
    const real = store.dispatchRun;
    store.dispatchRun = async () => {
      throw new Error('SQLITE_BUSY: database is locked (injected)');
    };
    await h.server.actions.runNow('one', 't');
    await h.server.actions.runNow('two', 't');
    await h.server.engine.pass().catch(() => undefined);
    expect(h.link.sent).toEqual([]);
    store.dispatchRun = real;
    await h.server.engine.pass();
    expect(h.link.sent.map((s) => s.payload.jobName).sort()).toEqual(['one', 'two']);
  });
});
