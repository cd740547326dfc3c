// dispatch-latency: eligible → started (server decision + store commit + link + agent ack + `started` committed),
// 50 simulated agents in a separate process, 5,000 runs made eligible at 200/s ("run now" of 50 on-demand jobs).
// Baseline in the same run: one link round trip (kill request → kill-result over the same hub) plus one store commit
// that writes a row, paced like the runs (and back to back, reported beside it).
import { performance } from 'node:perf_hooks';
import { countEvents, figure, forkSim, log, median, now, percentile, registerAgents, sleep, startServer, tempDir, applyYaml } from './lib.mjs';

const BENCH = 'dispatch-latency';
const AGENTS = 50;
const RUNS = 5000;
const RATE = 200;
const WARMUP = 300;

const dir = tempDir();
const server = await startServer(dir);
const keys = await registerAgents(server.store, AGENTS);
const jobs = Array.from({ length: 50 }, (_, i) => `  j${i}: { run: { command: [/bin/true] }, on: { group: all }, concurrency: { max: 1000 } }`).join('\n');
await applyYaml(server.store, `timezone: UTC\ngroups:\n  all: [${Object.keys(keys).join(', ')}]\njobs:\n${jobs}\n  held: { run: { command: [/bin/true] }, on: { group: all }, requires: [never-posted] }\n`);
server.events.emit('definitions:applied', { changes: 1, actor: 'bench' });
await server.engine.pass();

const sim = await forkSim();
await sim.connect(server.url(), keys, { runMs: 20 });
log(`${AGENTS} simulated agents connected`);

const eligibleAt = new Map();
const dispatchLat = [];
const startLat = [];
let measuring = false;
server.events.on('run:created', ({ runId }) => eligibleAt.set(runId, performance.now()));
server.events.on('run:dispatched', ({ runId }) => {
  if (measuring && eligibleAt.has(runId)) dispatchLat.push(performance.now() - eligibleAt.get(runId));
});
server.events.on('run:started', ({ runId }) => {
  const t = eligibleAt.get(runId);
  if (t !== undefined) {
    if (measuring) startLat.push(performance.now() - t);
    eligibleAt.delete(runId);
  }
});

async function drive(n) {
  const done = countEvents(server.events, 'run:ended', n);
  const t0 = now();
  for (let i = 0; i < n; i++) {
    const due = t0 + (i * 1000) / RATE;
    const wait = due - now();
    if (wait > 1) await sleep(wait);
    server.actions.runNow(`j${i % 50}`, 'bench').catch((err) => log('runNow failed', err.message));
  }
  await done;
  return now() - t0;
}

log(`warm-up: ${WARMUP} runs`);
await drive(WARMUP);
measuring = true;
log(`measuring: ${RUNS} runs at ${RATE}/s`);
const ms = await drive(RUNS);
measuring = false;

// Baseline: one link round trip and one store commit, same server, same agents, same disk, measured two ways.
// Paced: one of each every 1/RATE s, like the runs above, so that the agent process and the caches are as idle
// between two samples as they are between two runs (on a VM an idle vCPU halts, and waking it costs more than a
// back-to-back round trip). The commit writes a row: it changes the wait reason of a run that stays waiting (a
// `requires` that nothing posts), so that it lands in the WAL like the run's own commits. Back to back: the same,
// without pauses, reported beside it.
const held = (await server.actions.runNow('held', 'bench'))[0];
async function baselineSamples(pauseMs) {
  const rtt = [];
  const commit = [];
  for (let i = 0; i < 550; i++) {
    if (pauseMs) await sleep(pauseMs);
    const t = now();
    await server.agents.kill(`a${i % AGENTS}`, 999_999_999);
    if (i >= 50) rtt.push(now() - t);
  }
  for (let i = 0; i < 550; i++) {
    if (pauseMs) await sleep(pauseMs);
    const t = now();
    await server.store.setWaitReasons([{ runId: held.id, reason: { code: 'held', i } }]);
    if (i >= 50) commit.push(now() - t);
  }
  return { rtt: median(rtt), commit: median(commit) };
}
const paced = await baselineSamples(1000 / RATE);
if ((await server.store.getRun(held.id))?.state !== 'waiting') throw new Error('dispatch-latency: the baseline run did not stay waiting; its commit would write nothing');
const tight = await baselineSamples(0);
const base = paced.rtt + paced.commit;
const baseline = `paced at ${RATE}/s: link RTT p50 ${paced.rtt.toFixed(3)} ms + commit p50 ${paced.commit.toFixed(3)} ms`;
const tightBase = tight.rtt + tight.commit;
const tightBaseline = `back to back: link RTT p50 ${tight.rtt.toFixed(3)} ms + commit p50 ${tight.commit.toFixed(3)} ms`;

for (let i = 0; i < startLat.length; i += 500) log(`runs ${i}..: p50 ${median(startLat.slice(i, i + 500)).toFixed(1)} ms, dispatched p50 ${median(dispatchLat.slice(i, i + 500)).toFixed(1)}`);
const p50 = median(startLat);
const p99 = percentile(startLat, 99);
figure({ bench: BENCH, metric: 'eligible→started p50', value: p50, unit: 'ms', baseline, baselineValue: base, target: 'p50 ≤ 3× baseline', met: p50 <= 3 * base });
figure({ bench: BENCH, metric: 'eligible→started p99', value: p99, unit: 'ms', baseline, baselineValue: base, target: 'p99 ≤ 25 ms', met: p99 <= 25 });
figure({ bench: BENCH, metric: 'eligible→started p50 (against back-to-back baseline)', value: p50, unit: 'ms', baseline: tightBaseline, baselineValue: tightBase });
figure({ bench: BENCH, metric: 'eligible→dispatched p50', value: median(dispatchLat), unit: 'ms', baseline, baselineValue: base });
figure({ bench: BENCH, metric: 'eligible→started max', value: Math.max(...startLat), unit: 'ms', baseline, baselineValue: base });
figure({ bench: BENCH, metric: 'throughput', value: (RUNS / ms) * 1000, unit: 'runs/s', baseline: 'offered rate', baselineValue: RATE, target: null });

await sim.close();
await server.stop();
process.exit(0);
