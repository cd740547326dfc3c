import { describe, expect, it } from 'vitest';
import { Pacer } from '../src/agents/pacer.js';

/** Synchronous work of about `ms`, like a commit on SQLite (no I/O returns to the event loop). */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

/** One producer: commits `n` units in order through the pacer, like a session draining its inbox. */
async function drain(pacer: Pacer, n: number, unit: (i: number) => Promise<void> | void): Promise<void> {
  for (let i = 0; i < n; i++) {
    const turn = pacer.enter();
    if (turn) await turn;
    try {
      await unit(i);
    } finally {
      pacer.leave();
    }
  }
}

describe('Pacer (agent report commits sharing the event loop)', () => {
  it('lets the event loop turn while a long run of synchronous commits goes on', async () => {
    const pacer = new Pacer(5, 1);
    let turns = 0;
    let done = false;
    const tick = () => {
      turns++;
      if (!done) setImmediate(tick);
    };
    setImmediate(tick);
    const order: number[] = [];
    await drain(pacer, 100, (i) => {
      busy(1);
      order.push(i);
    });
    done = true;
    // 100 ms of work in slices of 5 ms: the loop turned between slices (without the pacer: not once).
    expect(turns).toBeGreaterThanOrEqual(10);
    expect(order).toEqual([...Array(100).keys()]);
  });

  it('gives turns in arrival order: a short queue arriving behind a long one is not starved', async () => {
    const pacer = new Pacer(5, 1);
    const log: string[] = [];
    const long = drain(pacer, 200, (i) => {
      busy(1);
      log.push(`long:${i}`);
    });
    // The second producer arrives once the first has started.
    await new Promise((r) => setImmediate(r));
    const short = drain(pacer, 3, (i) => {
      busy(1);
      log.push(`short:${i}`);
    });
    await Promise.all([long, short]);
    expect(log.indexOf('short:2')).toBeLessThan(log.indexOf('long:199'));
    expect(log.filter((l) => l.startsWith('long:'))).toEqual([...Array(200).keys()].map((i) => `long:${i}`));
  });

  it('gives commits as much of a loop turn as the other work took, so that neither starves the other', async () => {
    const pacer = new Pacer(2, 1, 40);
    let other = 0;
    let done = false;
    // Other work (an engine pass, say) takes 10 ms of every loop turn.
    const engine = () => {
      busy(10);
      other++;
      if (!done) setImmediate(engine);
    };
    setImmediate(engine);
    await drain(pacer, 300, () => busy(0.5));
    done = true;
    // With a fixed 2 ms share, 300 commits of 0.5 ms would take ~75 turns; sharing the turn evenly, ~15.
    expect(other).toBeLessThan(40);
  });

  it('runs at most `concurrency` units at a time', async () => {
    const pacer = new Pacer(5, 3);
    let active = 0;
    let most = 0;
    const unit = async () => {
      active++;
      most = Math.max(most, active);
      await new Promise((r) => setTimeout(r, 1));
      active--;
    };
    await Promise.all(Array.from({ length: 8 }, () => drain(pacer, 5, unit)));
    expect(most).toBe(3);
    expect(active).toBe(0);
  });
});
