#!/usr/bin/env node
// Prints bench/results/latest.jsonl (written by `npm run bench`), or the file given, as the Markdown table of docs/performance.md.
import { readFileSync } from 'node:fs';

const rows = readFileSync(process.argv[2] ?? new URL('./results/latest.jsonl', import.meta.url), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const fmt = (v) => (v === null || v === undefined ? '–' : typeof v === 'number' ? (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toPrecision(3)) : String(v));
console.log('| bench | metric | value | baseline (same run) | baseline value | ratio | target | met |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  const met = r.met === null ? '–' : r.met ? '**yes**' : '**no**';
  console.log(`| ${r.bench} | ${r.metric} | ${fmt(r.value)} ${r.unit} | ${r.baseline ?? '–'} | ${r.baselineValue === null ? '–' : `${fmt(r.baselineValue)} ${r.unit === '×' ? '' : r.unit}`.trim()} | ${fmt(r.ratio)} | ${r.target ?? '–'} | ${met} |`);
}
