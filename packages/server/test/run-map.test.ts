import { describe, expect, it } from 'vitest';
import type { RunRecord } from '@batchalyzer/store';
import { EngineState } from '../src/engine/state.js';

const run = (id: number, jobName: string, state: RunRecord['state'] = 'waiting'): RunRecord => ({
  id, jobName, planDate: '2026-06-01', nominalAt: 0, dueAt: 0, origin: 'schedule', state, held: false, attempt: 1, priority: 0,
  targetAgent: null, agentName: state === 'waiting' ? null : 'a1', waitReason: null, rerunOf: null, spec: { run: { command: ['x'] }, on: { agent: 'a1' } } as RunRecord['spec'],
  createdAt: 0, updatedAt: 0, dispatchedAt: null, startedAt: null, endedAt: null, exitCode: null, signal: null, endReason: null, result: null, outputBytes: 0, outputTruncated: false,
});

describe('the engine mirror of unfinished runs', () => {
  it('keeps the runs of each job and the waiting count through one run, several, replacements and removals', () => {
    const s = new EngineState();
    const ids = (job: string) => s.unfinishedOf(job).map((r) => r.id).sort();
    s.runs.set(1, run(1, 'a'));
    expect(ids('a')).toEqual([1]);
    s.runs.set(1, run(1, 'a', 'dispatched')); // replaced: still one
    expect([ids('a'), s.runs.waitingCount]).toEqual([[1], 0]);
    s.runs.set(2, run(2, 'a'));
    s.runs.set(3, run(3, 'a'));
    expect([ids('a'), s.runs.waitingCount]).toEqual([[1, 2, 3], 2]);
    s.runs.delete(1);
    s.runs.delete(3);
    expect(ids('a')).toEqual([2]);
    s.runs.set(4, run(4, 'b'));
    s.runs.delete(2);
    expect([ids('a'), ids('b'), s.runs.waitingCount]).toEqual([[], [4], 1]);
    s.runs.delete(4);
    expect([ids('b'), s.runs.waitingCount, s.resolver.size]).toEqual([[], 0, 0]);
    expect(s.runs.delete(4)).toBe(false);
  });
});
