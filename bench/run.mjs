#!/usr/bin/env node
// `npm run bench` runs every benchmark; `npm run bench -- NAME [NAME…]` runs some. Each benchmark runs in its own
// Node process (fresh heap, its own event loop), must finish within 60 s, and prints one JSON line per figure.
// This runner collects them, prints a table, and writes bench/results/latest.jsonl (ignored by git).
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const BENCHES = [
  'dispatch-latency', 'e2e-true', 'check-ingest', 'plan-100k', 'resolve', 'agent-memory', 'restart', 'burst', 'api-list', 'output-stream',
];
const LIMIT_MS = 60_000;

const asked = process.argv.slice(2).filter((a) => !a.startsWith('-'));
for (const a of asked) {
  if (!BENCHES.includes(a)) {
    console.error(`unknown benchmark "${a}"; choose from: ${BENCHES.join(', ')}`);
    process.exit(2);
  }
}
const selected = asked.length ? asked : BENCHES;

/**
 * `--expose-gc` lets a benchmark force a full GC before it measures memory; only those that do get it. The flag
 * changes what it measures otherwise: under it V8 marked the server's heap again and again while 256 MB of output
 * buffers passed through (output-stream: 50 mark-compacts a run instead of 2; server CPU 0.69 s a run instead of
 * 0.31 s), which a production server, never started with --expose-gc, does not do.
 */
const NEEDS_GC = new Set(['agent-memory', 'plan-100k']);
function nodeFlags(name) {
  return NEEDS_GC.has(name) ? ['--expose-gc'] : [];
}

function runOne(name) {
  return new Promise((resolve) => {
    const started = Date.now();
    const figures = [];
    // Hard stop a little after the limit so that a stuck bench cannot hang the suite; the limit itself is reported.
    const proc = spawn(process.execPath, [...nodeFlags(name), '--max-old-space-size=4096', join(HERE, `${name}.mjs`)], {
      stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, BENCH_NAME: name },
    });
    const killer = setTimeout(() => proc.kill('SIGKILL'), LIMIT_MS + 30_000);
    let buf = '';
    proc.stdout.on('data', (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.startsWith('{"bench"')) {
          figures.push(JSON.parse(line));
          process.stdout.write(`${line}\n`);
        } else if (line.trim()) process.stderr.write(`  ${line}\n`);
      }
    });
    proc.on('exit', (code, signal) => {
      clearTimeout(killer);
      resolve({ name, code, signal, ms: Date.now() - started, figures });
    });
  });
}

const pad = (s, n) => String(s).padEnd(n);
const fmt = (v) => (v === null || v === undefined ? '-' : typeof v === 'number' ? String(v) : String(v));

console.error(`batchalyzer benchmarks on ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`);
const results = [];
for (const name of selected) {
  const load = loadavg()[0];
  console.error(`\n▶ ${name} (1-min load average before: ${load.toFixed(2)})`);
  const r = await runOne(name);
  results.push(r);
  const over = r.ms > LIMIT_MS ? ` — OVER the ${LIMIT_MS / 1000} s limit` : '';
  console.error(`  ${name} finished in ${(r.ms / 1000).toFixed(1)} s (exit ${r.signal ?? r.code})${over}`);
  results.at(-1).figures.push({ bench: name, metric: 'wall time', value: Math.round(r.ms / 100) / 10, unit: 's', baseline: null, baselineValue: null, ratio: null, target: '< 60 s', met: r.ms < LIMIT_MS && r.code === 0, note: `1-min load average before the bench: ${load.toFixed(2)} (other processes share this machine)` });
}

const rows = results.flatMap((r) => r.figures);
const head = ['bench', 'metric', 'value', 'unit', 'baseline', 'baseline value', 'ratio', 'target', 'met'];
const cells = rows.map((f) => [f.bench, f.metric, fmt(f.value), f.unit, f.baseline ?? '-', fmt(f.baselineValue), fmt(f.ratio), f.target ?? '-', f.met === null ? '-' : f.met ? 'yes' : 'NO']);
const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => String(c[i]).length)));
console.log('');
console.log(head.map((h, i) => pad(h, widths[i])).join('  '));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const c of cells) console.log(c.map((v, i) => pad(v, widths[i])).join('  '));

mkdirSync(join(HERE, 'results'), { recursive: true });
writeFileSync(join(HERE, 'results', 'latest.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
const failed = results.filter((r) => r.code !== 0);
if (failed.length) {
  console.error(`\n${failed.length} benchmark(s) did not complete: ${failed.map((f) => f.name).join(', ')}`);
  process.exitCode = 1;
}
