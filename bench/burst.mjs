// burst: 1,000 jobs due in the same minute (all at the same instant, a `once` schedule), 50 simulated agents:
// time from the due instant until every run is dispatched (and started), and the server's event-loop lag meanwhile.
// Baseline in the same run: the same 1,000 runs offered at the dispatch-latency rate (200/s through "run now"),
// i.e. how long 1,000 runs take when they trickle in instead of arriving at once.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { applyYaml, countEvents, figure, forkSim, log, now, registerAgents, sleep, startServer, tempDir } from './lib.mjs';

const BENCH = 'burst';
const AGENTS = 50;
const JOBS = 1000;

const dir = tempDir();
const server = await startServer(dir);
const keys = await registerAgents(server.store, AGENTS);
const sim = await forkSim();
await sim.connect(server.url(), keys, { runMs: 20 });
log(`${AGENTS} simulated agents connected`);

// ── Baseline: 1,000 runs at 200/s ──
const group = `groups:\n  all: [${Object.keys(keys).join(', ')}]\n`;
await applyYaml(server.store, `timezone: UTC\n${group}jobs:\n  od: { run: { command: [/bin/true] }, on: { group: all }, concurrency: { max: 1000 } }\n`);
server.events.emit('definitions:applied', { changes: 1, actor: 'bench' });
await server.engine.pass();
async function trickle(n) {
  const started = countEvents(server.events, 'run:started', n);
  const t0 = now();
  for (let i = 0; i < n; i++) {
    const wait = t0 + (i * 1000) / 200 - now();
    if (wait > 1) await sleep(wait);
    server.actions.runNow('od', 'bench').catch((err) => log(err.message));
  }
  await started;
  return now() - t0;
}
await trickle(100);
const baseMs = await trickle(JOBS);
await sleep(500);
log(`baseline: ${JOBS} runs at 200/s started in ${baseMs.toFixed(0)} ms`);

// ── The burst: 1,000 once-jobs due at the same instant, a few seconds from now ──
const at = new Date(Math.ceil((Date.now() + 4000) / 1000) * 1000);
const jobs = Array.from({ length: JOBS }, (_, i) => `  b${i}: { run: { command: [/bin/true] }, on: { group: all }, schedule: { at: "${at.toISOString().slice(0, 19)}", timezone: UTC } }`).join('\n');
await applyYaml(server.store, `timezone: UTC\n${group}jobs:\n  od: { run: { command: [/bin/true] }, on: { group: all }, concurrency: { max: 1000 } }\n${jobs}\n`);
server.events.emit('definitions:applied', { changes: JOBS, actor: 'bench' });
await server.engine.pass();
const isBurst = (p) => p.jobName?.startsWith('b');
const dispatched = countEvents(server.events, 'run:dispatched', JOBS, isBurst);
let lastDispatch = 0;
let firstDispatch = 0;
server.events.on('run:dispatched', (p) => {
  if (!isBurst(p)) return;
  lastDispatch = Date.now();
  firstDispatch ||= lastDispatch;
});
const h = monitorEventLoopDelay({ resolution: 5 });
await sleep(Math.max(0, at.getTime() - Date.now() - 1000));
h.enable();
await sleep(Math.max(0, at.getTime() - Date.now()));
const t0 = at.getTime();
await dispatched;
const allDispatched = lastDispatch - t0;
await new Promise((r) => setTimeout(r, 1000)); // the agents' reports right after the burst count for the lag too
const allDone = Date.now() - t0;
h.disable();
const lag = h.max / 1e6;
log(`burst: all ${JOBS} dispatched ${allDispatched} ms after the due instant (first after ${firstDispatch - t0} ms), lag observed until ${allDone} ms; event-loop delay max ${lag.toFixed(1)} ms, p99 ${(h.percentile(99) / 1e6).toFixed(1)} ms`);
figure({ bench: BENCH, metric: `all ${JOBS} dispatched after due`, value: allDispatched / 1000, unit: 's', baseline: '1,000 runs at the dispatch-latency rate (200/s)', baselineValue: baseMs / 1000, target: '≤ 2 s', met: allDispatched <= 2000 });
figure({ bench: BENCH, metric: 'event-loop lag max during burst', value: lag, unit: 'ms', baseline: null, baselineValue: null, target: '≤ 100 ms', met: lag <= 100 });
await sim.close();
await server.stop();
process.exit(0);
