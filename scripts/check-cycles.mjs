#!/usr/bin/env node
// Fails when the TypeScript sources contain an import cycle, between packages or between files.
// Relative imports and @batchalyzer/* package imports are followed; everything else is external.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const pkgDir = join(root, 'packages');
const files = [];
const walk = (d) => {
  for (const e of readdirSync(d)) {
    const p = join(d, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (/\.tsx?$/.test(e) && !/\.test\.tsx?$/.test(e) && !e.endsWith('.d.ts')) files.push(p);
  }
};
const packages = readdirSync(pkgDir).filter((p) => statSync(join(pkgDir, p, 'src'), { throwIfNoEntry: false })?.isDirectory());
for (const p of packages) walk(join(pkgDir, p, 'src'));

const IMPORT = /(?:import|export)\s+(?:type\s+)?(?:[^'"]*?\sfrom\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
const graph = new Map();
const pkgGraph = new Map(packages.map((p) => [p, new Set()]));
for (const f of files) {
  const deps = new Set();
  const text = readFileSync(f, 'utf8');
  const own = relative(pkgDir, f).split('/')[0];
  for (const m of text.matchAll(IMPORT)) {
    if (/^\s*import\s+type\b/.test(m[0])) continue; // type-only imports vanish at run time
    const spec = m[1] ?? m[2];
    if (spec.startsWith('.')) {
      const target = resolve(dirname(f), spec).replace(/\.js$/, '');
      const hit = [`${target}.ts`, `${target}.tsx`, join(target, 'index.ts')].find((c) => files.includes(c));
      if (hit) deps.add(hit);
    } else if (spec.startsWith('@batchalyzer/')) {
      const name = spec.split('/')[1];
      if (name !== own) pkgGraph.get(own)?.add(name);
    }
  }
  graph.set(f, deps);
}

function cycles(g) {
  const found = [];
  const state = new Map();
  const stack = [];
  const visit = (n) => {
    state.set(n, 1);
    stack.push(n);
    for (const m of g.get(n) ?? []) {
      if (state.get(m) === 1) found.push([...stack.slice(stack.indexOf(m)), m]);
      else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, 2);
  };
  for (const n of g.keys()) if (!state.has(n)) visit(n);
  return found;
}

const fileCycles = cycles(graph);
const packageCycles = cycles(pkgGraph);
for (const c of packageCycles) console.error(`package cycle: ${c.join(' → ')}`);
for (const c of fileCycles) console.error(`import cycle: ${c.map((f) => relative(root, f)).join(' → ')}`);
if (fileCycles.length || packageCycles.length) process.exit(1);
console.log(`no import cycles (${files.length} files, ${packages.length} packages)`);
