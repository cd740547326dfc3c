import type { Definitions } from '../model/definitions.js';
import { requirementNames } from '../model/validate.js';

/**
 * The dependency graph of jobs (brief §6): who posts what, who requires what. Edges run from the posting job
 * to the requiring job through a condition; requirements that no job posts are listed as `unposted`.
 */
export interface DependencyGraph {
  jobs: string[];
  edges: { from: string; to: string; condition: string; on: 'success' | 'failure' | 'warning'; date: 'same' | 'previous' | 'any' }[];
  unposted: { job: string; condition: string }[];
}

export function dependencyGraph(defs: Definitions): DependencyGraph {
  const posters = new Map<string, { job: string; on: 'success' | 'failure' | 'warning' }[]>();
  for (const [job, spec] of Object.entries(defs.jobs)) {
    for (const on of ['success', 'failure', 'warning'] as const) {
      for (const c of spec.posts?.[on] ?? []) posters.set(c, [...(posters.get(c) ?? []), { job, on }]);
    }
  }
  const edges: DependencyGraph['edges'] = [];
  const unposted: DependencyGraph['unposted'] = [];
  for (const [job, spec] of Object.entries(defs.jobs)) {
    for (const req of spec.requires ?? []) {
      const refs = typeof req === 'object' && 'anyOf' in req ? req.anyOf : [req];
      for (const ref of refs) {
        const condition = requirementNames(ref)[0]!;
        const date = typeof ref === 'string' ? 'same' : ref.date ?? 'same';
        const from = posters.get(condition) ?? [];
        if (from.length === 0) unposted.push({ job, condition });
        for (const p of from) edges.push({ from: p.job, to: job, condition, on: p.on, date });
      }
    }
  }
  return { jobs: Object.keys(defs.jobs).sort(), edges, unposted };
}
