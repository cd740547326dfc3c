import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DiskQueue } from '../src/queue.js';

const step = (n: number) => ({ kind: 'step' as const, runId: 5, attempt: 1, at: n, step: n, stepKind: 'message' as const, text: `step ${n}` });
const durableAt = (q: DiskQueue, seq: number) => new Promise<void>((r) => q.onDurable(seq, r));

describe('disk queue: spaced sync rounds (protocol 3, DiskQueue.open syncGapMs)', () => {
  it('items that land while the next round waits for the gap are made durable together, by one round', async () => {
    const q = DiskQueue.open(mkdtempSync(join(tmpdir(), 'bz-queue-gap-')), undefined, { syncGapMs: 300 });
    q.append(step(1));
    await durableAt(q, 1); // the first round starts at once
    const rounds: number[] = [];
    q.on('durable', (upTo: number) => rounds.push(upTo));
    for (let n = 2; n <= 4; n++) {
      q.append(step(n));
      await new Promise((r) => setImmediate(r)); // each lands on its own, well within the gap
    }
    await durableAt(q, 4);
    expect(rounds).toEqual([4]); // without the gap, a round started as soon as item 2 landed
    q.close();
  });

  it('flush() makes everything durable at once, and close() with a round waiting leaves nothing behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bz-queue-gap-'));
    const q = DiskQueue.open(dir, undefined, { syncGapMs: 60_000 });
    q.append(step(1));
    await durableAt(q, 1);
    q.append(step(2));
    await new Promise((r) => q.once('written', r)); // landed; its round waits a minute
    expect(q.durableSeq).toBe(1);
    q.flush();
    expect(q.durableSeq).toBe(2);
    q.append(step(3));
    await new Promise((r) => q.once('written', r));
    q.close(); // flushes, and the waiting round's timer does not outlive the queue (vitest would hang on it)
    const again = DiskQueue.open(dir);
    expect([...again.unackedItems()].map((i) => (i as { step: number }).step)).toEqual([1, 2, 3]);
    again.close();
  });
});
