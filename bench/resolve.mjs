// resolve: 10,000 waiting runs in a condition graph (a tree: each run requires the condition its parent posts),
// using 20 pools (capacity 8 each) and, every 10th run, one of 5 rates (100 a minute), on 50 agents; runs are
// completed one by one (the oldest active run ends, releases its pool, posts its condition) and after each
// completion the engine's decision is made again through the engine's own path (the incremental resolver kept by
// EngineState, told of each change by the mirror: `state.resolver.decide(state.live(...))`), the dispatches applied
// to the mirror. Measured: completions per second of that loop.
// Baseline in the same run: full recomputation from scratch for each completion (a fresh EngineState loaded
// from the same data, then snapshot + the reference decide over every waiting run), on the same runs.
import { decide, planCalendar } from '@batchalyzer/core';
import { EngineState } from '../packages/server/dist/engine/state.js';
import { figure, log, now } from './lib.mjs';

const BENCH = 'resolve';
const N = 10_000;
const AGENTS = 50;
const DATE = '2026-06-01';
const T0 = Date.parse('2026-06-01T08:00:00Z');
void planCalendar;

const resources = {};
for (let p = 0; p < 20; p++) resources[`pool${p}`] = { pool: 8 };
for (let r = 0; r < 5; r++) resources[`rate${r}`] = { rate: '100/1m' };
const agents = Array.from({ length: AGENTS }, (_, i) => ({
  name: `a${i}`, connectedAt: 0, draining: false, version: 'sim', activeRuns: new Set(), activeRunsCut: false, listVersion: 0,
  capabilities: { command: true, shell: true, node: true, checks: { builtin: true, plugin: true, node: true } },
}));
const groups = { all: agents.map((a) => a.name) };
const jobs = {};
const runs = [];
for (let i = 0; i < N; i++) {
  const spec = {
    run: { command: ['/bin/true'] }, on: { group: 'all' }, posts: { success: [`c${i}`] },
    ...(i > 0 ? { requires: [`c${Math.floor((i - 1) / 4)}`] } : {}),
    resources: { [`pool${i % 20}`]: 1, ...(i % 10 === 0 ? { [`rate${i % 5}`]: 1 } : {}) },
  };
  jobs[`j${i}`] = spec;
  runs.push({
    id: i + 1, jobName: `j${i}`, planDate: DATE, nominalAt: T0, dueAt: T0, origin: 'schedule', state: 'waiting', held: false, attempt: 1,
    priority: 0, targetAgent: null, agentName: null, waitReason: null, rerunOf: null, spec, createdAt: T0, dispatchedAt: null, startedAt: null,
    endedAt: null, exitCode: null, signal: null, endReason: null, result: null, outputBytes: 0, outputTruncated: false,
  });
}
const defs = { settings: {}, groups, resources, jobs, checks: {}, notify: {} };

/** A store stand-in holding the same rows the engine would load at start. */
function fakeStore(world) {
  return {
    activeRuns: async () => [...world.runs.values()],
    allResourceHolds: async () => world.holds.map((h) => ({ ...h })),
    rateTakesAfter: async (since) => world.takes.filter((t) => t.at > since),
    listConditions: async () => [...world.conditions].map((k) => ({ name: k.split('@')[0], planDate: DATE })),
  };
}

/**
 * Completes runs one by one for `budgetMs` (or until all are done). `fresh` chooses how each decision is made:
 * false: the engine's path (the mirror and its resolver kept up to date); true: rebuilt from scratch, full decide.
 */
async function loop(fresh, budgetMs) {
  const world = { runs: new Map(runs.map((r) => [r.id, { ...r }])), holds: [], takes: [], conditions: new Set() };
  let state = new EngineState();
  await state.load(fakeStore(world), 60_000, T0);
  let t = T0;
  let completions = 0;
  const active = [];
  const started = now();
  let decisions = 0;
  while (now() - started < budgetMs) {
    t += 10;
    if (fresh) {
      state = new EngineState();
      await state.load(fakeStore(world), 60_000, t);
    }
    state.pruneRateTakes(t - 60_000);
    const d = fresh
      ? decide(state.snapshot(t, defs, agents, groups.all, 60_000))
      : state.resolver.decide(state.live(t, defs, agents, groups.all, 60_000));
    decisions++;
    for (const x of d.dispatch) {
      const r = { ...world.runs.get(x.runId), state: 'dispatched', agentName: x.agent, dispatchedAt: t };
      world.runs.set(r.id, r);
      state.runs.set(r.id, r);
      for (const p of x.pools) {
        world.holds.push({ runId: r.id, resource: p.resource, units: p.units });
        state.addHold(p.resource, r.id, p.units);
      }
      for (const q of x.rates) {
        world.takes.push({ resource: q.resource, at: t });
        state.addRateTake(q.resource, t);
      }
      active.push(r.id);
    }
    if (active.length === 0) break;
    // One completion: the oldest active run ends, releases its pool units and posts its condition.
    const id = active.shift();
    const r = world.runs.get(id);
    world.runs.delete(id);
    world.holds = world.holds.filter((h) => h.runId !== id);
    world.conditions.add(`c${id - 1}@${DATE}`);
    state.runs.delete(id);
    state.releaseHolds(id);
    state.addCondition(`c${id - 1}`, r.planDate);
    completions++;
  }
  const ms = now() - started;
  return { rate: completions / (ms / 1000), completions, ms, decisions };
}

await loop(false, 1000); // warm-up
const measured = await loop(false, 15_000);
log(`engine path: ${measured.completions} completions in ${measured.ms.toFixed(0)} ms`);
const full = await loop(true, 8_000);
log(`full recomputation: ${full.completions} completions in ${full.ms.toFixed(0)} ms`);
figure({ bench: BENCH, metric: 'completions/s (10,000 waiting, engine path)', value: measured.rate, unit: 'completions/s', baseline: 'full recomputation from scratch', baselineValue: full.rate, target: '≥ 5,000/s', met: measured.rate >= 5000 });
figure({ bench: BENCH, metric: 'speed-up over full recomputation', value: measured.rate / full.rate, unit: '×', baseline: 'full recomputation from scratch', baselineValue: 1, ratio: measured.rate / full.rate, target: '≥ 20×', met: measured.rate / full.rate >= 20 });
process.exit(0);
