import { ValidationError, type ValidationIssue } from '../errors.js';
import { canonicalJson, DEFINITION_KINDS, type DefinitionKind, type Definitions, emptyDefinitions, specEqual } from './definitions.js';
import { validateDefinitions, type ValidateOptions } from './validate.js';
import { parseDefinitionsYaml } from './yaml.js';

/** What `apply` would change: computed purely from the stored and the desired definitions. */
export interface DefinitionChange {
  kind: DefinitionKind | 'settings';
  name: string;
  action: 'create' | 'update' | 'delete';
  /** Top-level fields that differ (updates only). */
  fields?: string[];
}

export interface ApplyPlan {
  changes: DefinitionChange[];
  /** The complete definitions after the change. */
  result: Definitions;
  warnings: ValidationIssue[];
}

export interface ApplyOptions extends ValidateOptions {
  prune?: boolean;
}

/** Computes the change and validates the resulting state; `extraIssues` (e.g. from parsing) are reported with its own. */
export function planApply(current: Definitions, desired: Definitions, opts: ApplyOptions, extraIssues: ValidationIssue[] = [], subject = 'the definitions'): ApplyPlan {
  const result = emptyDefinitions();
  const changes: DefinitionChange[] = [];
  result.settings = { ...current.settings, ...desired.settings };
  for (const key of ['timezone', 'newDayAt'] as const) {
    if (desired.settings[key] !== undefined && desired.settings[key] !== current.settings[key]) {
      changes.push({ kind: 'settings', name: key, action: current.settings[key] === undefined ? 'create' : 'update' });
    }
  }
  for (const kind of DEFINITION_KINDS) {
    const cur = current[kind] as Record<string, unknown>;
    const want = desired[kind] as Record<string, unknown>;
    const out = result[kind] as Record<string, unknown>;
    for (const [n, spec] of Object.entries(cur)) {
      if (!(n in want) && !opts.prune) out[n] = spec;
      else if (!(n in want)) changes.push({ kind, name: n, action: 'delete' });
    }
    for (const [n, spec] of Object.entries(want)) {
      out[n] = spec;
      if (!(n in cur)) changes.push({ kind, name: n, action: 'create' });
      else if (!specEqual(cur[n], spec)) changes.push({ kind, name: n, action: 'update', fields: changedFields(cur[n], spec) });
    }
  }
  const { issues, warnings } = validateDefinitions(result, opts);
  if (issues.length || extraIssues.length) throw new ValidationError(subject, [...extraIssues, ...issues]);
  return { changes, result, warnings };
}

function changedFields(a: unknown, b: unknown): string[] {
  if (Array.isArray(a) || Array.isArray(b) || typeof a !== 'object' || typeof b !== 'object' || !a || !b) return [];
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  return [...new Set([...Object.keys(ra), ...Object.keys(rb)])]
    .filter((k) => canonicalJson(ra[k]) !== canonicalJson(rb[k]))
    .sort();
}

/** Parses and validates a jobs-as-code file against the stored definitions; throws ValidationError listing every problem. */
export function planApplyFromYaml(current: Definitions, text: string, subject: string, opts: ApplyOptions): ApplyPlan {
  const parsed = parseDefinitionsYaml(text);
  if (parsed.issues.length && parsed.issues.every((i) => i.path.startsWith('line '))) throw new ValidationError(subject, parsed.issues);
  return planApply(current, parsed.definitions, { ...opts, invalid: parsed.invalid, notifyIndex: parsed.notifyIndex }, parsed.issues, subject);
}

const SINGULAR: Record<DefinitionChange['kind'], string> = {
  settings: 'setting', groups: 'group', resources: 'resource', jobs: 'job', checks: 'check', notify: 'notify rule',
};

/** One line per change: `+ job nightly-backup`, `~ job x (schedule, timeout)`, `- check load`. */
export function describeChanges(changes: DefinitionChange[]): string[] {
  const sign = { create: '+', update: '~', delete: '-' } as const;
  return changes.map((c) => `${sign[c.action]} ${SINGULAR[c.kind]} ${c.name}${c.fields?.length ? ` (${c.fields.join(', ')})` : ''}`);
}
