import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';

// The order of the queue's syncs and unlinks, as the file system sees it: after a power loss, only what was synced
// (and unlinks that reached the disk) is there, so `acked` must be synced before a segment it makes droppable goes.
const log: string[] = [];
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const paths = new Map<number, string>();
  const openSync = ((p: string, ...rest: never[]) => {
    const fd = (fs.openSync as (...a: unknown[]) => number)(p, ...rest);
    paths.set(fd, String(p));
    return fd;
  }) as typeof fs.openSync;
  const fdatasyncSync = (fd: number) => (log.push(`sync ${basename(paths.get(fd) ?? '?')}`), fs.fdatasyncSync(fd));
  const rm = ((p: string, opts: object, cb: (err: Error | null) => void) => (log.push(`rm ${basename(p)}`), fs.rm(p, opts, cb))) as typeof fs.rm;
  const over = { openSync, fdatasyncSync, rm };
  return { ...fs, ...over, default: { ...fs, ...over } };
});
const { DiskQueue } = await import('../src/queue.js');

const output = (chunk: number, data: Buffer) => ({ kind: 'output' as const, runId: 7, attempt: 1, at: chunk, stream: 'stdout' as const, chunk, data });

describe('disk queue: acknowledged segments', () => {
  it('syncs `acked` before it unlinks a segment it made droppable (a power loss must not bring back an older one)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bz-queue-acked-'));
    const q = DiskQueue.open(dir);
    q.append(output(1, Buffer.alloc(2 * 1024 * 1024, 0x61)));
    await vi.waitFor(() => expect(q.durableSeq).toBe(1));
    log.length = 0;
    q.ack(1); // the queue is empty and its segment past 1 MiB: a new segment, the old one goes
    await vi.waitFor(() => expect(log).toContain('rm 00000001.log'));
    expect(log.indexOf('sync acked')).toBeGreaterThanOrEqual(0);
    expect(log.indexOf('sync acked')).toBeLessThan(log.indexOf('rm 00000001.log'));
    expect(Number(readFileSync(join(dir, 'acked'), 'utf8'))).toBe(1);
    q.close();
  });

  it('gives itself a new id when its id file is empty (a power loss right after the first start)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bz-queue-id-'));
    writeFileSync(join(dir, 'id'), '');
    const q = DiskQueue.open(dir);
    expect(q.queueId).toMatch(/^[0-9a-f-]{36}$/);
    expect(readFileSync(join(dir, 'id'), 'utf8')).toBe(q.queueId);
    q.close();
  });
});
