import { isMap, isPair, isScalar, isSeq, parseDocument, stringify, type Node } from 'yaml';
import type { ValidationIssue } from '../errors.js';
import { type Definitions, emptyDefinitions } from './definitions.js';
import type { z } from 'zod';
import { describe } from '../duration.js';
import { check } from './check.js';
import { documentShape } from './document.js';
import { formatPath, suggestKey, zodIssues } from './issues.js';
import { group, job, resource } from './job.js';
import { notifyRule } from './notify.js';

/** Reading and writing the jobs-as-code YAML format (docs/jobs-as-code.md). */

export interface ParsedFile {
  definitions: Definitions;
  issues: ValidationIssue[];
  /** Names whose entries were rejected: other entries may still refer to them without extra errors. */
  invalid: { groups: Set<string>; resources: Set<string> };
  /** Position of each notify rule in the file's list, by rule name. */
  notifyIndex: Map<string, number>;
}

/** Finds keys repeated within one mapping, reporting each repeat by path (`jobs.backup`). */
function duplicateKeys(node: Node | null | undefined, path: (string | number)[], out: ValidationIssue[]): void {
  if (isMap(node)) {
    const seen = new Set<string>();
    for (const pair of node.items) {
      if (!isPair(pair)) continue;
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      if (seen.has(key)) {
        out.push({ path: formatPath([...path, key]), message: `"${key}" is defined more than once; names must be unique, so rename or merge the duplicates` });
      }
      seen.add(key);
      duplicateKeys(pair.value as Node, [...path, key], out);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => duplicateKeys(item as Node, [...path, i], out));
  }
}

export function parseDefinitionsYaml(text: string): ParsedFile {
  const definitions = emptyDefinitions();
  const doc = parseDocument(text, { uniqueKeys: false, prettyErrors: true });
  if (doc.errors.length > 0) {
    return {
      definitions,
      invalid: { groups: new Set(), resources: new Set() },
      notifyIndex: new Map(),
      issues: doc.errors.map((e) => {
        const line = e.linePos ? text.split('\n')[e.linePos[0].line - 1] ?? '' : '';
        // The usual cause: an unquoted `{agent}` name inside a flow mapping, where YAML reserves braces.
        const fix = /[{,]\s*[^"'\s{,][^\s,:]*\{agent\}/.test(line)
          ? 'inside { } quote names that contain {agent}, e.g. { "cpu-{agent}": 2 }'
          : "fix the file's indentation or quoting there";
        return {
          path: e.linePos ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '',
          message: `YAML syntax error: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}; ${fix}`,
        };
      }),
    };
  }
  const issues: ValidationIssue[] = [];
  duplicateKeys(doc.contents as Node, [], issues);
  const raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    return { definitions, invalid: { groups: new Set(), resources: new Set() }, notifyIndex: new Map(), issues: [{ path: '', message: 'the file must be a mapping with keys such as jobs:, groups:, resources:' }] };
  }
  const top = raw as Record<string, unknown>;
  for (const key of Object.keys(top)) {
    if (!(key in documentShape)) {
      const hint = suggestKey(key, Object.keys(documentShape));
      issues.push({ path: key, message: `unknown top-level key "${key}"${hint && hint !== key ? ` (did you mean "${hint}"?)` : ''}; the file may hold ${Object.keys(documentShape).join(', ')}` });
    }
  }
  // Each entry is checked on its own, so one broken job does not hide the errors of the others.
  const one = <T>(schema: z.ZodType<T>, value: unknown, path: (string | number)[]): T | undefined => {
    const r = schema.safeParse(value);
    if (r.success) return r.data;
    issues.push(...zodIssues(r.error, raw, path));
    return undefined;
  };
  const section = (key: 'groups' | 'resources' | 'jobs' | 'checks'): [string, unknown][] => {
    const v = top[key];
    if (v === undefined || v === null) return [];
    if (typeof v !== 'object' || Array.isArray(v)) {
      issues.push({ path: key, message: `expected a mapping of names to definitions, got ${describe(v)}` });
      return [];
    }
    return Object.entries(v);
  };
  const invalid = { groups: new Set<string>(), resources: new Set<string>() };
  const notifyIndex = new Map<string, number>();
  if (top.timezone !== undefined) {
    const tz = one(documentShape.timezone, top.timezone, ['timezone']);
    if (tz !== undefined) definitions.settings.timezone = tz;
  }
  if (top.newDayAt !== undefined) {
    const t = one(documentShape.newDayAt, top.newDayAt, ['newDayAt']);
    if (t !== undefined) definitions.settings.newDayAt = t;
  }
  for (const [n, v] of section('groups')) {
    const g = one(group, v, ['groups', n]);
    if (g) definitions.groups[n] = g;
    else invalid.groups.add(n);
  }
  for (const [n, v] of section('resources')) {
    const r = one(resource, v, ['resources', n]);
    if (r) definitions.resources[n] = r;
    else invalid.resources.add(n);
  }
  for (const [n, v] of section('jobs')) {
    const j = one(job, v, ['jobs', n]);
    if (j) definitions.jobs[n] = j;
  }
  for (const [n, v] of section('checks')) {
    const c = one(check, v, ['checks', n]);
    if (c) definitions.checks[n] = c;
  }
  const rules = top.notify ?? [];
  if (!Array.isArray(rules)) issues.push({ path: 'notify', message: `expected a list of rules (each starting with "- "), got ${describe(rules)}` });
  else {
    rules.forEach((value, i) => {
      const rule = one(notifyRule, value, ['notify', i]);
      if (!rule) return;
      const ruleName = rule.name ?? `rule-${i + 1}`;
      if (definitions.notify[ruleName]) {
        issues.push({ path: formatPath(['notify', i, 'name']), message: `rule name "${ruleName}" is used twice; give each rule its own name` });
      }
      const { name: _omit, ...spec } = rule;
      definitions.notify[ruleName] = spec;
      notifyIndex.set(ruleName, i);
    });
  }
  return { definitions, issues, invalid, notifyIndex };
}

/** Writes definitions as a jobs-as-code file; applying the result to the same store changes nothing. */
export function definitionsToYaml(defs: Definitions): string {
  const sorted = <T>(rec: Record<string, T>) => Object.fromEntries(Object.keys(rec).sort().map((k) => [k, rec[k]!]));
  const out: Record<string, unknown> = {};
  if (defs.settings.timezone !== undefined) out.timezone = defs.settings.timezone;
  if (defs.settings.newDayAt !== undefined) out.newDayAt = defs.settings.newDayAt;
  if (Object.keys(defs.groups).length) out.groups = sorted(defs.groups);
  if (Object.keys(defs.resources).length) out.resources = sorted(defs.resources);
  if (Object.keys(defs.jobs).length) out.jobs = sorted(defs.jobs);
  if (Object.keys(defs.checks).length) out.checks = sorted(defs.checks);
  const rules = Object.keys(defs.notify).sort();
  if (rules.length) out.notify = rules.map((n) => ({ name: n, ...defs.notify[n] }));
  const header = '# batchalyzer definitions (format: docs/jobs-as-code.md)\n';
  return Object.keys(out).length ? header + stringify(out, { lineWidth: 0, aliasDuplicateObjects: false }) : header;
}
