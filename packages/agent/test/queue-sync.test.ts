import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';

// Every fdatasync of the queue is held until the test lets it go: what goes on meanwhile shows what the fsync
// still holds back (no timing involved).
const held: (() => void)[] = [];
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const fdatasync = (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => held.push(() => fs.fdatasync(fd, cb));
  return { ...fs, fdatasync, default: { ...fs, fdatasync } };
});
const { DiskQueue } = await import('../src/queue.js');

const output = (chunk: number, data: Buffer) => ({ kind: 'output' as const, runId: 7, attempt: 1, at: chunk, stream: 'stdout' as const, chunk, data });
const written = (q: ReturnType<typeof DiskQueue.open>, seq: number) => new Promise<void>((r) => {
  const on = (s: number) => s >= seq && (q.off('written', on), r());
  q.on('written', on);
});

describe('disk queue: writes go on while an fsync runs', () => {
  it('a batch appended during an fdatasync is written at once (the backlog drains), and is durable only after a sync of its own', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bz-queue-sync-'));
    const q = DiskQueue.open(dir);
    const data = Buffer.alloc(3 * 1024 * 1024, 0x62);
    q.append(output(1, data));
    await written(q, 1);
    await vi.waitFor(() => expect(held).toHaveLength(1)); // the first sync round waits in fdatasync
    q.append(output(2, data));
    q.append(output(3, data));
    expect(q.pendingBytes).toBeGreaterThan(6 * 1024 * 1024);
    await written(q, 3); // not held back by the running fsync
    expect(q.pendingBytes).toBe(0);
    expect(q.durableSeq).toBe(0);
    held.shift()!(); // the first round returns: it covers only what had landed when it began
    await new Promise<number>((r) => q.once('durable', r));
    expect(q.durableSeq).toBe(1);
    await vi.waitFor(() => expect(held).toHaveLength(1)); // the second round, for 2 and 3
    held.shift()!();
    await new Promise<number>((r) => q.once('durable', r));
    expect(q.durableSeq).toBe(3);
    q.close();
    const again = DiskQueue.open(dir);
    expect([...again.unackedItems()].map((i) => (i as { chunk: number }).chunk)).toEqual([1, 2, 3]);
    again.close();
  });
});
