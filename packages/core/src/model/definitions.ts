import type { CheckSpec } from './check.js';
import type { JobSpec, ResourceSpec } from './job.js';
import type { NotifyRuleSpec } from './notify.js';

/**
 * Everything an operator defines, in canonical form: what the store keeps, what `export` writes and what
 * `apply` compares. Runtime state (runs, conditions, messages) is not here.
 */
export interface Definitions {
  settings: Settings;
  groups: Record<string, string[]>;
  resources: Record<string, ResourceSpec>;
  jobs: Record<string, JobSpec>;
  checks: Record<string, CheckSpec>;
  /** Keyed by rule name; rules written without a name are named `rule-N` by position. */
  notify: Record<string, NotifyRuleSpec>;
}

export interface Settings {
  timezone?: string;
  newDayAt?: string;
}

export const DEFINITION_KINDS = ['groups', 'resources', 'jobs', 'checks', 'notify'] as const;
export type DefinitionKind = (typeof DEFINITION_KINDS)[number];
export type SpecOf<K extends DefinitionKind> = Definitions[K][string];

export function emptyDefinitions(): Definitions {
  return { settings: {}, groups: {}, resources: {}, jobs: {}, checks: {}, notify: {} };
}

/** Deterministic JSON: object keys sorted, so equal specs compare equal whatever their key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = sortKeys(v);
    }
    return out;
  }
  return value;
}

export function specEqual(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b);
}
