// output-stream: 256 MB of job stdout stored end to end: one real agent process runs `cat FILE` (a 256 MB file),
// streams the output in chunks through its disk-backed queue and the WebSocket link; the server commits every
// chunk to the store (SQLite). Measured: MB/s from dispatch to the run's end with every byte stored (checked),
// the median of three runs after a warm-up, and the growth of the server process's RSS meanwhile (sampled every
// 50 ms). Baseline in the same run: a Node spawn of `cat FILE` piped to a file on the same disk (median of three).
// Each measurement starts after a `sync`, so none pays for the previous one's writeback, and with the previous one's
// output deleted (the baseline's copy; our run pruned from the store), so all write into the same page cache.
import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream, existsSync, openSync, closeSync, readFileSync, writeSync, statSync, unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { applyYaml, figure, log, median, now, processCpu, registerAgents, startServer, tempDir } from './lib.mjs';
import { writeFileSync } from 'node:fs';

const BENCH = 'output-stream';
const MB = 1024 * 1024;
const SIZE = Number(process.env.BENCH_OUTPUT_MB ?? 256) * MB;
const ROOT = new URL('..', import.meta.url).pathname;
const AGENT_BIN = join(ROOT, 'packages', 'agent', 'dist', 'main.js');

const dir = tempDir();
const file = join(dir, 'out.bin');
{
  const block = Buffer.from(randomBytes((MB * 3) / 4).toString('base64').slice(0, MB));
  const fd = openSync(file, 'w');
  for (let i = 0; i < SIZE / MB; i++) writeSync(fd, block);
  closeSync(fd);
}

// Every measurement, baseline or ours, starts with no dirty pages: the previous one's writeback would otherwise
// compete with it for the disk (1 GB of baseline copies slowed the agent's queue fsyncs that followed them).
function settle() {
  execFileSync('sync');
}

// ── Baseline: spawn cat, pipe to a file ──
async function rawCopy(i) {
  const dest = join(dir, `copy-${i}.bin`);
  settle();
  const t = now();
  await new Promise((resolve, reject) => {
    const p = spawn('cat', [file], { stdio: ['ignore', 'pipe', 'ignore'] });
    const w = createWriteStream(dest);
    p.stdout.pipe(w);
    w.on('finish', resolve);
    w.on('error', reject);
  });
  const ms = now() - t;
  if (statSync(dest).size !== SIZE) throw new Error('raw copy incomplete');
  unlinkSync(dest);
  return (SIZE / MB) / (ms / 1000);
}
await rawCopy(-1);
const raw = [await rawCopy(0), await rawCopy(1), await rawCopy(2)];
log(`raw cat → file: ${raw.map((r) => r.toFixed(0)).join(', ')} MB/s`);

// ── End to end ──
const server = await startServer(dir);
const keys = await registerAgents(server.store, 1, 'o');
const keyFile = join(dir, 'o0.key');
writeFileSync(keyFile, keys.o0);
await applyYaml(server.store, `timezone: UTC
jobs:
  cat: { run: { command: [cat, "${file}"] }, on: { agent: o0 }, maxOutput: ${2 * SIZE / MB}MB, concurrency: { max: 10 } }
`);
server.events.emit('definitions:applied', { changes: 1, actor: 'bench' });
// BENCH_AGENT_NODE_ARGS='--cpu-prof --cpu-prof-dir=DIR' profiles the agent (NODE_OPTIONS does not take --cpu-prof).
const agentNodeArgs = (process.env.BENCH_AGENT_NODE_ARGS ?? '').split(' ').filter(Boolean);
const agent = spawn(process.execPath, [...agentNodeArgs, AGENT_BIN, '--server', server.url(), '--name', 'o0', '--key-file', keyFile, '--data', join(dir, 'agent'), '--log-level', 'warn'], {
  cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'],
});
process.on('exit', () => agent.kill('SIGKILL'));
await server.events.once('agent:connected');
/**
 * After each measurement its output goes, as the baseline deletes its copy: through the store's retention prune (the
 * run's row, index and file), waiting until the file is gone. Kept, every run's 256 MB needed page-cache pages the
 * previous ones did not free, while the baseline wrote into the pages its deleted copy had freed; on a fresh VM
 * (pages never touched since boot cost ~3 s of system time a GB here) that alone made each run slower than the one
 * before it (523 → 777 ms over eight) while the baseline did not move.
 */
async function prune(runId) {
  await server.store.pruneBefore(Date.now() + 1, '0000-01-01'); // ended runs only; no plan data (the date is before any)
  const path = join(dir, 'batchalyzer.db.output', String(Math.floor(runId / 1000)), `${runId}.stdout`);
  for (const t = now(); existsSync(path) && now() - t < 5000; ) await new Promise((r) => setTimeout(r, 10));
  if (existsSync(path)) throw new Error(`output-stream: ${path} still exists 5 s after the prune`);
}
// Warm-up: one whole run, as the baseline copies the whole file once before it measures. A warm-up capped at 1 MB
// left the first measured run to find its memory: after a benchmark that used much (api-list), pages the kernel had
// handed back took it 0.7–1.0 s against ~0.5 s for the next two.
{
  const ended = server.events.once('run:ended', (p) => p.jobName === 'cat');
  const [run] = await server.actions.runNow('cat', 'bench');
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('output-stream: the warm-up run did not end within 20 s')), 20_000).unref());
  await Promise.race([ended, timeout]);
  await prune(run.id);
}
// No forced GC first: this benchmark runs without --expose-gc (bench/run.mjs), so the growth is from the RSS after
// the warm-up as it is.
const rss0 = process.memoryUsage().rss;
let peak = rss0;
const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
// The bench must end within 60 s: when the whole output is not stored after DEADLINE_MS, the rate is the bytes
// committed so far over the time spent (an honest lower bound of the steady state), and the run is killed.
const DEADLINE_MS = Number(process.env.BENCH_OUTPUT_DEADLINE_MS ?? 30_000);
const deadline = now() + DEADLINE_MS;
let committed = 0;
server.events.on('run:output', (p) => (committed += p.bytes));

/** One measured run of `cat`: MB/s from "run now" to its end with every byte stored. */
async function endToEnd(i) {
  settle();
  committed = 0;
  const t = now();
  const ended = server.events.once('run:ended', (p) => p.jobName === 'cat');
  const [run] = await server.actions.runNow('cat', 'bench');
  const end = await Promise.race([ended, new Promise((r) => setTimeout(() => r(null), Math.max(1000, deadline - now())))]);
  const ms = now() - t;
  const bytes = end ? (await server.store.getRun(run.id)).outputBytes : committed;
  if (!end) {
    log(`deadline: ${(bytes / MB).toFixed(0)} of ${SIZE / MB} MB stored after ${ms.toFixed(0)} ms; killing the run`);
    await server.actions.kill(run.id, 'bench').catch(() => undefined);
  }
  const stored = await server.store.getRun(run.id);
  log(`end to end #${i}: ${end ? end.state : 'stopped at the deadline'}, ${bytes} bytes stored in ${ms.toFixed(0)} ms`);
  const complete = Boolean(end) && stored.outputBytes === SIZE && !stored.outputTruncated;
  if (end && !complete) log(`WARNING: stored ${stored.outputBytes} of ${SIZE} bytes (truncated: ${stored.outputTruncated})`);
  return { rate: (bytes / MB) / (ms / 1000), complete, ms, bytes, runId: end ? run.id : undefined };
}
// CPU of the measured runs (not of the prunes between them), from /proc: the agent, the jobs it reaped (cat), and
// this process (the server); seconds.
const runs = [];
const cpu = { server: 0, serverUser: 0, agent: 0, agentUser: 0, cat: 0 };
for (let i = 0; i < 3 && (i === 0 || now() < deadline); i++) {
  const a0 = processCpu(agent.pid);
  const s0 = process.cpuUsage();
  const r = await endToEnd(i);
  const s1 = process.cpuUsage(s0);
  const a1 = processCpu(agent.pid);
  cpu.server += (s1.user + s1.system) / 1e6;
  cpu.serverUser += s1.user / 1e6;
  cpu.agent += a1.user + a1.system - a0.user - a0.system;
  cpu.agentUser += a1.user - a0.user;
  cpu.cat += a1.children - a0.children;
  runs.push(r);
  if (r.runId !== undefined) await prune(r.runId);
}
const agentPeakRss = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${agent.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
clearInterval(sampler);
const perRun = (s) => (s / runs.length).toFixed(2);
log(`CPU a run (s): server ${perRun(cpu.server)} (user ${perRun(cpu.serverUser)}), agent ${perRun(cpu.agent)} (user ${perRun(cpu.agentUser)}), cat ${perRun(cpu.cat)}`);
log(`end to end: ${runs.map((r) => r.rate.toFixed(0)).join(', ')} MB/s; server RSS ${(rss0 / MB).toFixed(0)} → peak ${(peak / MB).toFixed(0)} MB; agent peak RSS ${agentPeakRss.toFixed(0)} MB`);
const rate = median(runs.map((r) => r.rate));
const b = median(raw);
const allComplete = runs.every((r) => r.complete);
figure({
  bench: BENCH, metric: `${SIZE / MB} MB stdout stored end to end`, value: rate, unit: 'MB/s', baseline: 'Node spawn of cat piped to a file', baselineValue: b,
  target: '≥ 0.5× baseline', met: allComplete && rate >= 0.5 * b,
  ...(allComplete ? {} : { note: `not every run stored all ${SIZE / MB} MB within the 60 s limit; rate = stored / elapsed` }),
});
figure({ bench: BENCH, metric: 'server RSS growth', value: (peak - rss0) / MB, unit: 'MB', baseline: null, baselineValue: null, target: '≤ 64 MB', met: (peak - rss0) / MB <= 64 });
// Let the agent drain and exit by itself (a --cpu-prof profile is written only then), at most 5 s.
await new Promise((resolve) => {
  agent.once('exit', resolve);
  agent.kill('SIGTERM');
  setTimeout(resolve, 5000).unref();
});
await server.stop();
process.exit(0);
