import { appendFileSync, writeFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { openStore, type OutputWarning, type Store } from '@batchalyzer/store';
import { OutputFiles } from '../src/output-files.js';

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
  const warnings: OutputWarning[] = [];
  const store = await openStore({ kind: 'sqlite', path }, { onWarning: (w) => warnings.push(w) });
  open.push(store);
  const run = async () => (await store.createRuns([{ jobName: 'j', planDate: '2026-11-28', nominalAt: T0, dueAt: T0, origin: 'manual', priority: 0, spec: { run: { shell: 'true' } } as never }], 's', T0))[0]!.id;
  return { path, store, run, warnings };
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
    await store.close(); // deletions run in the background; closing waits for them
    const store2 = await openStore({ kind: 'sqlite', path });
    open.push(store2);
    expect(existsSync(fileOf(path, ids[0]!))).toBe(false);
    expect(existsSync(fileOf(path, ids[0]!, 'stderr'))).toBe(false);
    expect(existsSync(fileOf(path, ids[1]!))).toBe(true);
    await store2.finishRun({ runId: ids[1]!, state: 'succeeded', at: T0, actor: 's' });
    // A file no run points at (left by a kill after a prune's commit), in a shard below every remaining run.
    appendFileSync(join(`${path}.output`, '0', 'orphan'), 'z');
    const db = new Database(path);
    db.prepare("UPDATE sqlite_sequence SET seq = 2000 WHERE name = 'runs'").run();
    db.close();
    expect((await store2.createRuns([{ jobName: 'j', planDate: '2026-11-28', nominalAt: T0, dueAt: T0, origin: 'manual', priority: 0, spec: { run: { shell: 'true' } } as never }], 's', T0))[0]!.id).toBe(2001);
    await store2.pruneBefore(T0 + 1, '2000-01-01');
    await store2.close();
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

  it('a batch that does not commit leaves no bytes in the files it wrote, however often it is re-sent', async () => {
    const { path, store, run } = await fresh();
    const id = await run();
    await store.appendOutput([chunk(id, 0, 'abc')]);
    // The agent's re-sent batch: a chunk of a healthy run (written, its descriptor stays open) and one that fails
    // the transaction (a run the store does not know). Before, each attempt left its bytes in the file.
    for (let i = 0; i < 5; i++) {
      await expect(store.appendOutput([chunk(id, 1, 'x'.repeat(1000)), chunk(999_999, 0, 'q')])).rejects.toThrow();
      expect(statSync(fileOf(path, id)).size).toBe(3);
    }
    expect(await store.appendOutput([chunk(id, 1, 'def')])).toBe(1);
    expect(readFileSync(fileOf(path, id)).toString()).toBe('abcdef');
    expect((await store.readOutput(id, 'stdout')).toString()).toBe('abcdef');
    expect((await store.getRun(id))!.outputBytes).toBe(6);
  });

  it('a failed COMMIT only closes the files it wrote; their next opening cuts them to what the index holds', async () => {
    // A COMMIT that fails after an I/O error may still have committed: cutting the bytes back at once could cut
    // committed output, so `forget` leaves them and the next opening goes by the index (here: one chunk of 3).
    const dir = mkdtempSync(join(tmpdir(), 'batchalyzer-forget-'));
    const files = new OutputFiles(dir, () => undefined);
    const touched = new Map<string, number>();
    const at = files.end(7, 'stdout', () => 0, touched);
    files.append(7, 'stdout', Buffer.from('abcdef'), at);
    files.forget(touched);
    expect(touched.size).toBe(0);
    expect(statSync(files.path(7, 'stdout')).size).toBe(6); // nothing cut while the outcome is unknown
    expect(files.end(7, 'stdout', () => 3, new Map())).toBe(3); // reopened: cut to the indexed end
    expect(readFileSync(files.path(7, 'stdout')).toString()).toBe('abc');
    await files.close();
  });

  it('a chunk of an unknown run creates no directory or file', async () => {
    const { path, store } = await fresh();
    await expect(store.appendOutput([chunk(999_999, 0, 'q')])).rejects.toThrow();
    expect(existsSync(join(`${path}.output`, '999'))).toBe(false);
  });

  it('a chunk whose file cannot be written goes into the database, with one warning per file, and nothing is lost', async () => {
    const { path, store, run, warnings } = await fresh();
    const id = await run();
    writeFileSync(`${path}.output`, 'not a directory');
    expect(await store.appendOutput([chunk(id, 0, 'abc'), chunk(id, 1, 'def')])).toBe(2);
    expect(await store.appendOutput([chunk(id, 2, 'ghi'), chunk(id, 2, 'ghi')])).toBe(1);
    expect((await store.getRun(id))!.outputBytes).toBe(9);
    expect((await store.readOutput(id, 'stdout')).toString()).toBe('abcdefghi');
    expect(warnings.map((w) => w.code)).toEqual(['output_file_fallback']);
    expect(warnings[0]!.message).toMatch(/b\.db\.output.*writable.*stored inside the database/);
    // Once the directory can be written again, the next chunks go to the file, read in order with the blobs.
    unlinkSync(`${path}.output`);
    expect(await store.appendOutput([chunk(id, 3, 'jkl')])).toBe(1);
    expect(readFileSync(fileOf(path, id)).toString()).toBe('jkl');
    expect((await store.readOutput(id, 'stdout')).toString()).toBe('abcdefghijkl');
  });

  it('output files are readable by the server only (0600 files, 0700 directories)', async () => {
    const { path, store, run } = await fresh();
    const id = await run();
    await store.appendOutput([chunk(id, 0, 'secret')]);
    expect(statSync(fileOf(path, id)).mode & 0o777).toBe(0o600);
    expect(statSync(join(`${path}.output`, '0')).mode & 0o777).toBe(0o700);
    expect(statSync(`${path}.output`).mode & 0o777).toBe(0o700);
  });

  it('a prune whose file deletions fail still succeeds, and says so in a warning', async () => {
    const { path, store, run, warnings } = await fresh();
    const id = await run();
    await store.appendOutput([chunk(id, 0, 'x')]);
    await store.finishRun({ runId: id, state: 'succeeded', at: T0, actor: 's' });
    await run(); // a run left in the shard: its files are deleted one by one
    // In place of the run's stdout file: a directory with a file in it, which rm without recursive refuses.
    rmSync(fileOf(path, id));
    mkdirSync(fileOf(path, id));
    writeFileSync(join(fileOf(path, id), 'f'), 'z');
    expect(await store.pruneBefore(T0 + 1, '2000-01-01')).toEqual({ runs: 1 });
    await store.close();
    expect(warnings.map((w) => w.code)).toEqual(['output_remove_failed']);
  });

  it('output that has to read as zeros (a missing file) says so in a warning', async () => {
    const { path, store, run, warnings } = await fresh();
    const id = await run();
    await store.appendOutput([chunk(id, 0, 'abc')]);
    rmSync(fileOf(path, id));
    expect(await store.readOutput(id, 'stdout')).toEqual(Buffer.alloc(3));
    expect(warnings.map((w) => w.code)).toEqual(['output_read_zeros']);
  });

  it('output file names are only ever built from a positive run id and stdout or stderr', () => {
    const files = new OutputFiles('/nonexistent', () => undefined);
    expect(files.path(1001, 'stderr')).toBe('/nonexistent/1/1001.stderr');
    expect(() => files.path(1, '../x')).toThrow(/stream/);
    expect(() => files.path(-1, 'stdout')).toThrow(/run id/);
    expect(() => files.path(1.5, 'stdout')).toThrow(/run id/);
  });
});

