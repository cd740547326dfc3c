import { readFileSync, writeFileSync } from 'node:fs';
import { definitionsToYaml, describeChanges, planApplyFromYaml, type ValidationIssue } from '@batchalyzer/core';
import type { Store } from '@batchalyzer/store';

/** `apply` and `export`: jobs-as-code against a store (brief §3). */

export interface ApplyOutcome {
  lines: string[];
  warnings: ValidationIssue[];
  changed: number;
}

export async function applyFile(store: Store, file: string, opts: { prune: boolean; dryRun: boolean; actor: string; defaultTimezone: string }): Promise<ApplyOutcome> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; check the -f path`);
  }
  const current = await store.loadDefinitions();
  const plan = planApplyFromYaml(current, text, file, { prune: opts.prune, defaultTimezone: opts.defaultTimezone });
  const lines = describeChanges(plan.changes);
  if (!opts.dryRun && plan.changes.length > 0) await store.applyDefinitions(plan, opts.actor, Date.now());
  return { lines, warnings: plan.warnings, changed: plan.changes.length };
}

export async function exportDefinitions(store: Store, out?: string): Promise<string> {
  const text = definitionsToYaml(await store.loadDefinitions());
  if (out) writeFileSync(out, text);
  return text;
}
