import { afterEach, describe, expect, it } from 'vitest';
import type { DispatchPayload } from '@batchalyzer/server';
import { harness, type Harness } from './support/engine.js';
import { until } from './support/agent.js';

/** Reconciliation of dispatched runs with the agent's list when the server's wall clock steps back (brief §4, §8). */
let h: Harness;
afterEach(async () => {
  await h?.close();
});

describe('reconciliation and a stepped server clock', () => {
  it('an unconfirmed dispatch that looks recent after the clock stepped back is checked again, and put back once it is old enough', async () => {
    h = await harness(undefined, undefined, { reconcileAfterMs: 100 });
    h.link.connect('a1');
    // The first dispatch goes unanswered (the agent may or may not have it): the engine asks the agent later.
    let unanswered = 1;
    const send = h.link.dispatch.bind(h.link);
    h.link.dispatch = async (agent: string, payload: DispatchPayload) => {
      if (unanswered-- > 0) throw new Error(`agent ${agent} did not answer within 15000 ms`);
      return send(agent, payload);
    };
    await h.apply('jobs:\n  A: { run: { shell: "true" }, on: { agent: a1 } }\n');
    const [a] = await h.server.actions.runNow('A', 'test');
    await h.server.engine.pass();
    expect((await h.server.store.getRun(a!.id))!.state).toBe('dispatched');
    h.clock.advance(-10 * 60_000); // the step back: the dispatch now looks 10 minutes in the future

    await new Promise((r) => setTimeout(r, 500)); // five reconcile periods: too recent to judge, nothing happens
    expect((await h.server.store.getRun(a!.id))!.state).toBe('dispatched');
    expect(h.link.sent).toEqual([]);

    h.clock.advance(10 * 60_000 + 1000); // the wall clock passes the dispatch time again
    // The agent (activeRuns: []) does not have the run: two checks later it waits again and is dispatched anew.
    await until('run dispatched again', () => h.link.sent.some((s) => s.payload.runId === a!.id), 5_000);
    const events = await h.server.store.runEvents(a!.id);
    expect(events.some((e) => e.toState === 'waiting' && /agent a1 does not have run/.test(JSON.stringify(e)))).toBe(true);
  });
});
