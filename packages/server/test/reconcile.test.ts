import { describe, expect, it } from 'vitest';
import { judge, sighting, type Sighting } from '../src/engine/reconcile.js';

/** The reconcile decision for one run, from plain data (docs/scheduling.md, "Delivery"). */
const P = 10_000;
const NOW = 1_000_000;
const MONO = 500_000;
const run = (state: 'dispatched' | 'running', over: { attempt?: number; dispatchedAt?: number | null } = {}) =>
  ({ id: 7, state, attempt: over.attempt ?? 1, dispatchedAt: over.dispatchedAt === undefined ? NOW - 5 * P : over.dispatchedAt });
/** The agent's list: by default a newer one (version 2) than the sighting's (version 1). */
const listed = (ids: number[] = [], cut = false, listVersion = 2) => ({ activeRuns: new Set(ids), activeRunsCut: cut, listVersion });
const facts = (over: { accepted?: boolean; dispatching?: boolean; seen?: Sighting } = {}) =>
  ({ accepted: false, dispatching: false, seen: undefined, now: NOW, mono: MONO, periodMs: P, ...over });
const seenAgo = (ms: number, attempt = 1): Sighting => ({ at: MONO - ms, attempt, listVersion: 1 });

describe('judge', () => {
  it('keeps what the agent lists, a dispatch in flight, and a dispatch younger than a period', () => {
    expect(judge(run('running'), listed([7]), facts({ seen: seenAgo(P) }))).toBe('keep');
    expect(judge(run('dispatched'), listed(), facts({ dispatching: true, seen: seenAgo(P) }))).toBe('keep');
    expect(judge(run('dispatched', { dispatchedAt: NOW - P / 2 }), listed(), facts({ seen: seenAgo(P) }))).toBe('keep');
    expect(judge(run('dispatched', { dispatchedAt: null }), listed(), facts({ seen: seenAgo(P) }))).toBe('keep');
  });

  it('watches a run missing for the first time, or seen missing less than a period ago', () => {
    expect(judge(run('running'), listed(), facts())).toBe('watch');
    expect(judge(run('running'), listed(), facts({ seen: seenAgo(P - 1) }))).toBe('watch');
  });

  it('acts on the second sighting a period later: lost when it may have started, put back when never accepted', () => {
    expect(judge(run('running'), listed(), facts({ seen: seenAgo(P) }))).toBe('lose');
    expect(judge(run('dispatched'), listed(), facts({ accepted: true, seen: seenAgo(P) }))).toBe('lose');
    expect(judge(run('dispatched'), listed(), facts({ seen: seenAgo(P) }))).toBe('requeue');
  });

  it('the second sighting counts only against a newer list from the agent (the same list twice says nothing new)', () => {
    expect(judge(run('running'), listed([], false, 1), facts({ seen: seenAgo(2 * P) }))).toBe('watch');
    expect(judge(run('running'), listed([], false, 2), facts({ seen: seenAgo(2 * P) }))).toBe('lose');
  });

  it('a sighting of another attempt counts as a first one; an old one still counts (checks that found the run listed clear it)', () => {
    expect(judge(run('running', { attempt: 2 }), listed(), facts({ seen: seenAgo(P, 1) }))).toBe('watch');
    expect(judge(run('running'), listed(), facts({ seen: seenAgo(30 * P) }))).toBe('lose');
  });

  it('a list cut at the protocol limit proves nothing (an accept whose answer was lost could be among the runs left out)', () => {
    expect(judge(run('running'), listed([], true), facts({ seen: seenAgo(P) }))).toBe('keep');
    expect(judge(run('dispatched'), listed([], true), facts({ accepted: true, seen: seenAgo(P) }))).toBe('keep');
    expect(judge(run('dispatched'), listed([], true), facts({ seen: seenAgo(P) }))).toBe('keep');
  });

  it('a sighting is kept, also when old, and replaced only for another attempt', () => {
    const first = seenAgo(P);
    expect(sighting(first, { attempt: 1 }, 5, MONO)).toBe(first);
    expect(sighting(seenAgo(30 * P), { attempt: 1 }, 5, MONO)).toEqual(seenAgo(30 * P));
    expect(sighting(first, { attempt: 2 }, 5, MONO)).toEqual({ at: MONO, attempt: 2, listVersion: 5 });
    expect(sighting(undefined, { attempt: 1 }, 5, MONO)).toEqual({ at: MONO, attempt: 1, listVersion: 5 });
  });
});
