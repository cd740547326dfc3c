import { appendFileSync, writeFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { OutputFileError, openStore, type Store } from '@batchalyzer/store';

// SQLite with a database file keeps job output in files beside it, with only the index in the store
// (packages/store/src/output-files.ts). The conformance suite checks the meaning; this checks the files.
const T0 = Date.UTC(2026, 10, 28, 12, 0, 0);
const open: Store[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

async function fresh() {
  const dir = mkdtempSync(join(tmpdir(), 'batchalyzer-output-'));
  const path = join(dir, 'b.db');
  const store = await openStore({ kind: 'sqlite', path });
  open.push(store);
  const run = async () => (await store.createRuns([{ jobName: 'j', planDate: '2026-11-28', nominalAt: T0, dueAt: T0, origin: 'manual', priority: 0, spec: { run: { shell: 'true' } } as never }], 's', T0))[0]!.id;
  return { path, store, run };
}
const chunk = (runId: number, seq: number, text: string, stream: 'stdout' | 'stderr' = 'stdout') => ({ runId, stream, seq, at: T0, data: Buffer.from(text) });
const fileOf = (path: string, runId: number, stream = 'stdout') => join(`${path}.output`, String(Math.floor(runId / 1000)), `${runId}.${stream}`);

describe('job output in files beside the SQLite database', () => {
  it('appends the bytes to the run file and keeps an empty blob and the range in the index', async () => {
    const { path, store, run } = await fresh();
    const id = await run();
    await store.appendOutput([chunk(id, 0, 'hello '), chunk(id, 1, 'world'), chunk(id, 0, 'err', 'stderr')]);
    expect(readFileSync(fileOf(path, id)).toString()).toBe('hello world');
    expect(readFileSync(fileOf(path, id, 'stderr')).toString()).toBe('err');
    const db = new Database(path, { readonly: true });
    expect(db.prepare('SELECT seq, length(data) AS n, file_offset, file_length FROM run_output WHERE stream = ? ORDER BY seq').all('stdout'))
      .toEqual([{ seq: 0, n: 0, file_offset: 0, file_length: 6 }, { seq: 1, n: 0, file_offset: 6, file_length: 5 }]);
    db.close();
  });

  it('a re-sent chunk that is already indexed writes nothing', async () => {
    const { path, store, run } = await fresh();
    const id = await run();
    await store.appendOutput([chunk(id, 0, 'abc')]);
    expect(await store.appendOutput([chunk(id, 0, 'abc'), chunk(id, 0, 'abc')])).toBe(0);
    expect(statSync(fileOf(path, id)).size).toBe(3);
  });

  it('bytes written before a kill and never indexed are cut off, and the re-sent chunk is stored once', async () => {
    const { path, store, run } = await fresh();
    const id = await run();
    await store.appendOutput([chunk(id, 0, 'abc')]);
    await store.close();
    // What a kill between the file write and the index commit leaves: bytes past the last indexed chunk.
    appendFileSync(fileOf(path, id), 'de');
    const again = await openStore({ kind: 'sqlite', path });
    open.push(again);
    expect(await again.appendOutput([chunk(id, 1, 'def')])).toBe(1);
    expect((await again.readOutput(id, 'stdout')).toString()).toBe('abcdef');
    expect(readFileSync(fileOf(path, id)).toString()).toBe('abcdef');
  });

  it('reads output stored in blobs before the files existed', async () => {
    const { path, store, run } = await fresh();
    const id = await run();
    const db = new Database(path);
    db.prepare('INSERT INTO run_output (run_id, stream, seq, at, data) VALUES (?, ?, ?, ?, ?)').run(id, 'stdout', 0, T0, Buffer.from('old '));
    db.close();
    await store.appendOutput([chunk(id, 1, 'new')]);
    expect((await store.readOutput(id, 'stdout')).toString()).toBe('old new');
  });

  it('pruning deletes the files of the pruned runs and emptied shards', async () => {
    const { path, store, run } = await fresh();
    const ids = [await run(), await run()];
    for (const id of ids) await store.appendOutput([chunk(id, 0, 'x'), chunk(id, 0, 'y', 'stderr')]);
    await store.finishRun({ runId: ids[0]!, state: 'succeeded', at: T0, actor: 's' });
    await store.pruneBefore(T0 + 1, '2000-01-01');
    expect(existsSync(fileOf(path, ids[0]!))).toBe(false);
    expect(existsSync(fileOf(path, ids[0]!, 'stderr'))).toBe(false);
    expect(existsSync(fileOf(path, ids[1]!))).toBe(true);
    await store.finishRun({ runId: ids[1]!, state: 'succeeded', at: T0, actor: 's' });
    // A file no run points at (left by a kill after a prune's commit), in a shard below every remaining run.
    appendFileSync(join(`${path}.output`, '0', 'orphan'), 'z');
    const db = new Database(path);
    db.prepare("UPDATE sqlite_sequence SET seq = 2000 WHERE name = 'runs'").run();
    db.close();
    expect(await run()).toBe(2001);
    await store.pruneBefore(T0 + 1, '2000-01-01');
    expect(readdirSync(`${path}.output`)).toEqual([]);
  });

  it('keeps at most 64 output files open however many runs write', async () => {
    const { path, store, run } = await fresh();
    for (let i = 0; i < 100; i++) await store.appendOutput([chunk(await run(), 0, 'x')]);
    const fds = readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`).startsWith(`${path}.output`);
      } catch {
        return false;
      }
    });
    expect(fds.length).toBeGreaterThan(0);
    expect(fds.length).toBeLessThanOrEqual(64);
  });

  it('a chunk whose file cannot be written is refused with a named error and leaves no index row', async () => {
    const { path, store, run } = await fresh();
    const id = await run();
    writeFileSync(`${path}.output`, 'not a directory');
    const err = await store.appendOutput([chunk(id, 0, 'abc')]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutputFileError);
    expect((err as Error).message).toMatch(/b\.db\.output.*writable/);
    expect((await store.getRun(id))!.outputBytes).toBe(0);
    expect((await store.readOutput(id, 'stdout')).length).toBe(0);
  });
});

