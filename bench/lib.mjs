// Shared helpers for the benchmarks (bench/run.mjs runs each bench file in its own Node process).
// Every figure is printed as one JSON line on stdout: {bench, metric, value, unit, baseline, baselineValue, ratio, target, met}.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { compileConfig, planApplyFromYaml } from '@batchalyzer/core';
import { createServer } from '@batchalyzer/server';
import { openStore } from '@batchalyzer/store';
import { generateAgentKey } from '@batchalyzer/protocol';

export const now = () => performance.now();

/** Figures already printed, so that a bench can summarise. */
const printed = [];

/**
 * Prints one figure. `ratio` is value / baselineValue unless given; `target` is the text of the target and
 * `met` whether this run met it (null when the figure has no target of its own).
 */
export function figure(f) {
  const ratio = f.ratio ?? (f.baselineValue ? f.value / f.baselineValue : null);
  const line = {
    bench: f.bench, metric: f.metric, value: round(f.value), unit: f.unit,
    baseline: f.baseline, baselineValue: f.baselineValue === null || f.baselineValue === undefined ? null : round(f.baselineValue),
    ratio: ratio === null ? null : round(ratio),
    target: f.target ?? null, met: f.met ?? null,
    ...(f.note ? { note: f.note } : {}),
  };
  printed.push(line);
  process.stdout.write(`${JSON.stringify(line)}\n`);
  return line;
}

export function round(v) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return v;
  const a = Math.abs(v);
  return a >= 100 ? Math.round(v * 10) / 10 : a >= 1 ? Math.round(v * 1000) / 1000 : Math.round(v * 1e5) / 1e5;
}

/** Progress goes to stderr so that stdout holds only figures. */
export function log(...args) {
  process.stderr.write(`  ${args.join(' ')}\n`);
}

export function percentile(values, p) {
  if (values.length === 0) return NaN;
  const s = Float64Array.from(values).sort();
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i];
}

export function median(values) {
  return percentile(values, 50);
}

export function tempDir(prefix = 'batchalyzer-bench-') {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  process.on('exit', () => {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  });
  return dir;
}

export function gc() {
  if (globalThis.gc) {
    globalThis.gc();
    globalThis.gc();
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The PostgreSQL URL to use in addition to SQLite, or null. A fresh schema per call. */
export function pgUrl() {
  const base = process.env.BATCHALYZER_BENCH_PG_URL ?? process.env.BATCHALYZER_TEST_PG_URL;
  if (!base) return null;
  const u = new URL(base);
  u.searchParams.set('schema', `bench_${Math.random().toString(36).slice(2, 10)}`);
  return u.toString();
}

/** Drops the schema a pgUrl() created (best effort). */
export async function dropPgSchema(url) {
  const schema = new URL(url).searchParams.get('schema');
  const u = new URL(url);
  u.searchParams.delete('schema');
  const pg = (await import('pg')).default;
  const c = new pg.Client({ connectionString: u.toString() });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await c.end();
}

export const quiet = pino({ level: 'silent' });

export function serverConfig(dir, extra = {}) {
  return compileConfig({ flags: { data: dir, listen: '127.0.0.1:0', timezone: 'UTC', ...extra }, env: {}, cwd: dir, hostTimezone: 'UTC' });
}

/** An in-process server (store, engine, agent hub on a real HTTP port) on a fresh data directory. */
export async function startServer(dir, parts = {}) {
  const server = await createServer(serverConfig(dir, parts.flags), { logger: quiet, ...parts, flags: undefined });
  await server.start();
  return server;
}

export async function applyYaml(store, yaml, at = Date.now()) {
  const plan = planApplyFromYaml(await store.loadDefinitions(), yaml, 'bench.yaml', { defaultTimezone: 'UTC' });
  await store.applyDefinitions(plan, 'bench', at);
}

/** Registers agents `prefix0..prefixN-1` in the store; returns their keys by name. */
export async function registerAgents(store, n, prefix = 'a') {
  const keys = {};
  for (let i = 0; i < n; i++) {
    const k = generateAgentKey();
    await store.registerAgent(`${prefix}${i}`, k.publicKey, Date.now());
    keys[`${prefix}${i}`] = k.key;
  }
  return keys;
}

export function writeKeys(dir, keys) {
  const file = join(dir, 'sim-keys.json');
  writeFileSync(file, JSON.stringify(keys));
  return file;
}

export async function openSqlite(dir, opts) {
  return openStore({ kind: 'sqlite', path: join(dir, 'batchalyzer.db') }, opts);
}

/** Runs `fn` `warmup` times unmeasured, then `repeats` times measured; returns the durations in ms. */
export async function timed(fn, { warmup = 1, repeats = 5 } = {}) {
  for (let i = 0; i < warmup; i++) await fn(-1 - i);
  const out = [];
  for (let i = 0; i < repeats; i++) {
    const t = now();
    await fn(i);
    out.push(now() - t);
  }
  return out;
}

/** Forks bench/sim-agents.mjs; `wait(ev)` resolves on the next message of that kind. */
export async function forkSim() {
  const { fork } = await import('node:child_process');
  const proc = fork(new URL('./sim-agents.mjs', import.meta.url).pathname, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiters = [];
  proc.on('message', (m) => {
    if (m.ev === 'refused') process.stderr.write(`  sim agent refused: ${m.name} ${m.reason} ${m.message}\n`);
    for (const w of waiters.splice(0)) {
      if (w.ev === m.ev) w.resolve(m);
      else waiters.push(w);
    }
  });
  const wait = (ev, timeoutMs = 60_000) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`sim agents: no ${ev} within ${timeoutMs} ms`)), timeoutMs);
    waiters.push({ ev, resolve: (m) => { clearTimeout(t); resolve(m); } });
  });
  await wait('ready');
  process.on('exit', () => proc.kill('SIGKILL'));
  return {
    proc,
    wait,
    send: (m) => proc.send(m),
    async connect(url, keys, opts = {}, held) {
      const all = wait('all-connected');
      proc.send({ cmd: 'connect', url, keys, opts, held });
      return all;
    },
    async close() {
      const done = wait('closed', 5000).catch(() => undefined);
      proc.send({ cmd: 'close' });
      await done;
      proc.kill('SIGKILL');
    },
  };
}

/** Resolves when `n` events of `name` matching `match` have been seen on the server's bus. */
export function countEvents(events, name, n, match = () => true, timeoutMs = 55_000) {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const t = setTimeout(() => {
      off();
      reject(new Error(`only ${seen} of ${n} ${name} events within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = events.on(name, (p) => {
      if (match(p) && ++seen >= n) {
        clearTimeout(t);
        off();
        resolve();
      }
    });
  });
}

let clockTicks;
/** CPU seconds of a process from /proc/PID/stat: its own (user, system) and its reaped children's. */
export function processCpu(pid) {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ').map(Number);
  return { user: f[11] / clockTicks, system: f[12] / clockTicks, children: (f[13] + f[14]) / clockTicks };
}
