import { appendFileSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { pbkdf2 } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { allocOutputBuffer } from '@batchalyzer/protocol';
import { describe, expect, it, vi } from 'vitest';
import { agentUrl, compileAgentConfig } from '../src/config.js';
import { globToRegExp } from '../src/glob.js';
import { Masker, RunOutput } from '../src/output.js';
import { RunJournal } from '../src/journal.js';
import { type AgentItem, DiskQueue } from '../src/queue.js';

// allocOutputBuffer as it is, with its calls recorded (how many output bytes RunOutput allocates).
vi.mock('@batchalyzer/protocol', async (importOriginal) => {
  const real = await importOriginal<typeof import('@batchalyzer/protocol')>();
  return { ...real, allocOutputBuffer: vi.fn(real.allocOutputBuffer) };
});

const tmp = () => mkdtempSync(join(tmpdir(), 'bz-agent-'));
const step = (runId: number, n: number): AgentItem => ({ kind: 'step', runId, attempt: 1, at: n, step: n, stepKind: 'progress', text: `step ${n} ${'x'.repeat(100)}` });

describe('glob patterns for allow/deny lists', () => {
  it('matches paths segment by segment', () => {
    expect(globToRegExp('/usr/bin/*').test('/usr/bin/echo')).toBe(true);
    expect(globToRegExp('/usr/bin/*').test('/usr/bin/x/y')).toBe(false);
    expect(globToRegExp('/opt/**').test('/opt/a/b/c')).toBe(true);
    expect(globToRegExp('/bin/ec?o').test('/bin/echo')).toBe(true);
    expect(globToRegExp('/bin/[ab]sh').test('/bin/bsh')).toBe(true);
    expect(globToRegExp('/a.b').test('/axb')).toBe(false);
  });
});

describe('secret masking', () => {
  it('masks values split across writes and holds back only a possible prefix', () => {
    const m = new Masker(['hunter2', 'hunter2-long']);
    const out = [m.push(Buffer.from('pw=hun')), m.push(Buffer.from('ter2 and hunter2-lo')), m.push(Buffer.from('ng!')), m.end()];
    expect(Buffer.concat(out).toString()).toBe('pw=*** and ***!');
    expect(new Masker(['abc']).push(Buffer.from('xyz')).toString()).toBe('xyz');
  });
});

describe('run output', () => {
  it('numbers chunks per stream, flushes on size, and keeps head and tail beyond the cap', () => {
    const chunks: { stream: string; chunk: number; data: string }[] = [];
    let dropped = 0;
    const out = new RunOutput(400, [], 64, { chunk: (stream, chunk, data) => chunks.push({ stream, chunk, data: data.toString() }), truncated: (n) => (dropped = n) });
    for (let i = 0; i < 100; i++) out.write('stdout', Buffer.from(`${String(i).padStart(9, '0')}\n`));
    out.write('stderr', Buffer.from('e'));
    out.end();
    const stdout = chunks.filter((c) => c.stream === 'stdout');
    expect(stdout.map((c) => c.chunk)).toEqual(stdout.map((_, i) => i + 1));
    const text = stdout.map((c) => c.data).join('');
    expect(text.startsWith('000000000\n')).toBe(true);
    expect(text.endsWith('000000099\n')).toBe(true);
    expect(dropped).toBe(1000 - 200 - 100);
    expect(chunks.filter((c) => c.stream === 'stderr').map((c) => c.data)).toEqual(['e']);
  });

  /** Feeds `input` through one buffer that is overwritten after every write, as the native spawner's reads are. */
  function feedReused(out: RunOutput, stream: 'stdout' | 'stderr', input: Buffer, sizes: number[]): void {
    const shared = Buffer.alloc(64 * 1024);
    for (let at = 0, i = 0; at < input.length; i++) {
      const n = Math.min(sizes[i % sizes.length]!, input.length - at);
      input.copy(shared, 0, at, at + n);
      out.write(stream, shared.subarray(0, n));
      shared.fill(0x23); // the next read lands here: nothing kept may still point into it
      at += n;
    }
  }

  it('copies what it keeps: fed from one reused read buffer, the stored bytes are the input, in full-size chunks', () => {
    const input = Buffer.from(Array.from({ length: 50_000 }, (_, i) => `line ${i}\n`).join(''));
    const sizes = [1, 7, 4096, 65_536, 300, 20_000, 13];
    const chunks: Buffer[] = [];
    const out = new RunOutput(4 * input.length, [], 16 * 1024, { chunk: (_s, _n, d) => chunks.push(d), truncated: () => undefined });
    feedReused(out, 'stdout', input, sizes);
    out.flush(); // the interval flush: a partial chunk goes out at its exact size
    feedReused(out, 'stdout', input, sizes.reverse());
    out.end();
    expect(Buffer.concat(chunks).equals(Buffer.concat([input, input]))).toBe(true);
    // Every chunk is full except the one cut by the flush and the last.
    expect(chunks.filter((c) => c.length !== 16 * 1024).length).toBeLessThanOrEqual(2);
    expect(chunks.every((c) => c.length > 0 && c.length <= 16 * 1024)).toBe(true);
  });

  it('masks secrets and keeps head and tail exactly when fed from one reused read buffer', () => {
    const input = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `${i} token=hunter2 ok\n`).join(''));
    const run = (feed: (out: RunOutput) => void, maxBytes: number) => {
      const chunks: Buffer[] = [];
      let dropped = 0;
      const out = new RunOutput(maxBytes, ['hunter2'], 4096, { chunk: (_s, _n, d) => chunks.push(Buffer.from(d)), truncated: (n) => (dropped = n) });
      feed(out);
      out.end();
      return { text: Buffer.concat(chunks).toString(), dropped };
    };
    for (const maxBytes of [10 * input.length, 100_000]) {
      const fresh = run((out) => {
        for (let at = 0; at < input.length; at += 1000) out.write('stdout', Buffer.from(input.subarray(at, at + 1000)));
      }, maxBytes);
      const reused = run((out) => feedReused(out, 'stdout', input, [5, 999, 3, 17_000, 64]), maxBytes);
      expect(reused).toEqual(fresh);
      expect(reused.text).not.toContain('hunter2');
    }
    expect(run((out) => feedReused(out, 'stdout', input, [5, 999]), 10 * input.length).text).toBe(input.toString().replaceAll('hunter2', '***'));
  });

  // The agent's own chunk size (512 KiB with protocol ≥ 2): what a thousand jobs would hold if each kept a full chunk.
  const defaultChunkBytes = () => compileAgentConfig({ env: { BATCHALYZER_AGENT_KEY: 'bza1.k' }, cwd: '/tmp', flags: { name: 'a1', server: ['http://h'] } }).chunkBytes;

  it('a thousand runs with a little output each do not each hold a chunk-size buffer between flushes', () => {
    const chunkBytes = defaultChunkBytes();
    expect(chunkBytes).toBe(512 * 1024);
    const shared = Buffer.alloc(chunkBytes, 0x61);
    const sent: Buffer[] = [];
    const before = process.memoryUsage().arrayBuffers;
    const outs = Array.from({ length: 1000 }, () => new RunOutput(1024 * 1024, [], chunkBytes, { chunk: (_s, _n, d) => sent.push(d), truncated: () => undefined }));
    for (let round = 0; round < 3; round++) for (const out of outs) out.write('stdout', shared.subarray(0, 100 + round));
    const held = process.memoryUsage().arrayBuffers - before;
    expect(held).toBeLessThan(32 * 1024 * 1024); // chunk-size buffers would be 512 MB
    for (const out of outs) out.flush();
    expect(sent.length).toBe(1000);
    expect(sent.every((d) => d.length === 303 && d.every((b) => b === 0x61))).toBe(true);
  });

  it('a thousand runs that each read one full pipe (64 KiB) hold about that much, not a chunk each', () => {
    const chunkBytes = defaultChunkBytes();
    const shared = Buffer.alloc(chunkBytes, 0x62);
    const before = process.memoryUsage().arrayBuffers;
    const outs = Array.from({ length: 1000 }, () => new RunOutput(1024 * 1024 * 1024, [], chunkBytes, { chunk: () => undefined, truncated: () => undefined }));
    for (const out of outs) out.write('stdout', shared.subarray(0, 64 * 1024));
    const held = process.memoryUsage().arrayBuffers - before;
    expect(held).toBeLessThan(100 * 1024 * 1024); // 62.5 MiB read; a full chunk each would be 500 MiB
    expect(outs.length).toBe(1000); // (kept alive until here)
  });

  it('a stream whose chunks fill up keeps starting full chunks (no growing copies in bulk)', () => {
    const chunkBytes = 256 * 1024;
    const shared = Buffer.alloc(64 * 1024, 0x63);
    const sizes: number[] = [];
    const out = new RunOutput(1024 * 1024 * 1024, [], chunkBytes, { chunk: (_s, _n, d) => sizes.push(d.length), truncated: () => undefined });
    for (let i = 0; i < 4 * 8; i++) out.write('stdout', shared);
    out.flush();
    expect(sizes).toEqual(Array(8).fill(chunkBytes));
  });

  it('a steady stream of 4 KiB reads is copied once: chunks sized by its rate, a partial one at the flush sent as a view', () => {
    const chunkBytes = 256 * 1024;
    const shared = Buffer.alloc(64 * 1024);
    const alloc = vi.mocked(allocOutputBuffer);
    const copy = vi.spyOn(Buffer.prototype, 'copy');
    let allInput = 0;
    let allAllocated = 0;
    try {
      for (const reads of [3, 10, 25, 40, 63, 90]) {
        const input = randomBytes(reads * 4096 * 30);
        const chunks: Buffer[] = [];
        const out = new RunOutput(4 * input.length, [], chunkBytes, { chunk: (_s, _n, d) => chunks.push(d), truncated: () => undefined });
        let at = 0;
        const interval = () => {
          for (let i = 0; i < reads; i++, at += 4096) {
            input.copy(shared, 0, at, at + 4096);
            out.write('stdout', shared.subarray(0, 4096));
            shared.fill(0x23); // the next read lands here
          }
          out.flush();
        };
        interval(); // the first interval grows its chunk from 4 KiB
        const sentBefore = chunks.length;
        alloc.mockClear();
        copy.mockClear();
        while (at < input.length) interval();
        const fed = input.length - reads * 4096;
        const allocated = alloc.mock.calls.reduce((n, [size]) => n + size, 0);
        const copied = copy.mock.results.reduce((n, r) => n + (r.value as number), 0);
        copy.mockClear();
        out.end();
        expect(Buffer.concat(chunks).equals(input)).toBe(true);
        // Each byte copied once by RunOutput (into its chunk: none grows, none is copied out at the flush); the other
        // half are this test's reads into `shared`. Into buffers at most twice the bytes.
        expect(copied).toBe(2 * fed);
        expect(allocated).toBeLessThanOrEqual(2 * fed);
        const steady = chunks.slice(sentBefore);
        expect(steady.length).toBe(29 * Math.ceil((reads * 4096) / chunkBytes)); // one per interval and full chunk
        for (const c of steady) expect(c.buffer.byteLength).toBeLessThanOrEqual(2 * c.length + 256); // held: ≤ twice
        allInput += fed;
        allAllocated += allocated;
      }
    } finally {
      copy.mockRestore();
    }
    expect(allAllocated / allInput).toBeLessThan(1.5); // 3.2 to 4.1 times with a 4 KiB start and a copy-out per flush
  });

  it('a stream that outgrows its rate grows its chunk, and one far slower than its last interval gets a small chunk again', () => {
    const chunkBytes = 256 * 1024;
    const sizes: number[] = [];
    const held: number[] = [];
    const out = new RunOutput(1024 * 1024 * 1024, [], chunkBytes, { chunk: (_s, _n, d) => (sizes.push(d.length), held.push(d.buffer.byteLength)), truncated: () => undefined });
    const read = Buffer.alloc(4096, 0x64);
    for (let i = 0; i < 20; i++) out.write('stdout', read); // 80 KiB
    out.flush();
    for (let i = 0; i < 50; i++) out.write('stdout', read); // 200 KiB: grows from 128 to 256 KiB
    out.flush();
    out.write('stdout', read.subarray(0, 100)); // quiet now: a 200 KiB buffer for it, copied out at the flush
    out.flush();
    out.write('stdout', read.subarray(0, 100)); // and then a small one
    const before = vi.mocked(allocOutputBuffer).mock.calls.length;
    out.flush();
    expect(sizes).toEqual([80 * 1024, 200 * 1024, 100, 100]);
    expect(held.slice(0, 2)).toEqual([128 * 1024 + 256, 256 * 1024 + 256]);
    expect(held[2]).toBeLessThanOrEqual(8192); // copied out (into Node's small-buffer pool): not 256 KiB kept for 100 bytes
    expect(vi.mocked(allocOutputBuffer).mock.calls.length).toBe(before + 1); // the last one's copy-out
    expect(vi.mocked(allocOutputBuffer).mock.calls.at(-2)?.[0]).toBe(4096); // the last chunk started at 4 KiB
  });

  it('a read ten times the size of the kept tail keeps exactly its last bytes and copies only those', () => {
    const chunks: Buffer[] = [];
    let dropped = 0;
    const out = new RunOutput(4000, [], 4096, { chunk: (_s, _n, d) => chunks.push(Buffer.from(d)), truncated: (n) => (dropped = n) });
    const head = randomBytes(2000);
    const before = randomBytes(300);
    const big = randomBytes(10_000);
    const after = randomBytes(400);
    out.write('stdout', head);
    out.write('stdout', before);
    const shared = Buffer.from(big);
    const from = vi.spyOn(Buffer, 'from');
    out.write('stdout', shared);
    const copiedIn = (from.mock.calls as unknown[][]).reduce((n, [a]) => n + (Buffer.isBuffer(a) ? a.length : 0), 0);
    from.mockRestore();
    shared.fill(0x23); // nothing kept may point into the read
    out.write('stdout', after);
    out.end();
    expect(copiedIn).toBe(1000); // the tail's cap (a quarter of 4000), not the 10,000 bytes read
    const tail = Buffer.concat([big.subarray(big.length - 600), after]);
    const marker = Buffer.from(`\n[batchalyzer: 9700 bytes of stdout not kept (output cap); the last 1000 bytes follow]\n`);
    expect(Buffer.concat(chunks).equals(Buffer.concat([head, marker, tail]))).toBe(true);
    expect(dropped).toBe(9700);
  });
});

describe('disk queue', () => {
  it('keeps unacknowledged items across a restart, in order, and forgets acknowledged ones', () => {
    const dir = tmp();
    const q = DiskQueue.open(dir);
    for (let i = 1; i <= 5; i++) expect(q.append(step(1, i))).toBe(i);
    q.flush();
    expect(q.durableSeq).toBe(5);
    q.ack(2);
    q.close();
    const again = DiskQueue.open(dir);
    expect(again.queueId).toBe(q.queueId);
    expect(again.firstUnacked()).toBe(3);
    expect([...again.unackedItems()].map((i) => (i as { step: number }).step)).toEqual([3, 4, 5]);
    expect(again.append(step(1, 6))).toBe(6);
    again.close();
  });

  it('cuts a torn last line left by a crash, and reads items back from disk beyond its memory budget', () => {
    const dir = tmp();
    const q = DiskQueue.open(dir, 300);
    for (let i = 1; i <= 10; i++) q.append(step(1, i));
    q.flush();
    expect((q.get(9)!.item as { step: number }).step).toBe(9);
    q.close();
    const seg = readdirSync(dir).find((f) => f.endsWith('.log'))!;
    appendFileSync(join(dir, seg), '{"seq":11,"item":{"kind":"st');
    const again = DiskQueue.open(dir, 300);
    expect(again.length).toBe(10);
    expect(again.append(step(1, 11))).toBe(11);
    again.flush();
    again.ack(11);
    expect(again.length).toBe(0);
    again.close();
    expect(DiskQueue.open(dir).length).toBe(0);
  });
});

describe('disk queue: raw output records and group commit', () => {
  const output = (chunk: number, data: Buffer): AgentItem => ({ kind: 'output', runId: 7, attempt: 1, at: chunk, stream: 'stdout', chunk, data });
  const durable = (q: DiskQueue) => new Promise<number>((r) => q.once('durable', r));

  it('stores output bytes raw and reads them back byte for byte, from memory, from disk and after a restart', () => {
    const dir = tmp();
    const q = DiskQueue.open(dir, 100); // a tiny memory budget: items are read back from the segment
    const chunks = [Buffer.from([0, 10, 13, 255, 10]), Buffer.alloc(70_000, 0x0a), Buffer.from('{"seq":99}\n')];
    chunks.forEach((c, i) => q.append(output(i + 1, c)));
    q.flush();
    chunks.forEach((c, i) => expect((q.get(i + 1)!.item as { data: Buffer }).data.equals(c)).toBe(true));
    q.close();
    const again = DiskQueue.open(dir);
    expect([...again.unackedItems()].map((i) => (i as { data: Buffer }).data.toString('hex'))).toEqual(chunks.map((c) => c.toString('hex')));
    again.close();
  });

  it('loads base64 output lines written by earlier versions, and cuts a record whose bytes were torn', () => {
    const dir = tmp();
    const q = DiskQueue.open(dir);
    q.close();
    const seg = readdirSync(dir).find((f) => f.endsWith('.log'))!;
    appendFileSync(join(dir, seg), `${JSON.stringify({ seq: 1, item: { kind: 'output', runId: 7, attempt: 1, at: 1, stream: 'stdout', chunk: 1, data: Buffer.from('old').toString('base64') } })}\n`);
    appendFileSync(join(dir, seg), `${JSON.stringify({ seq: 2, item: { kind: 'output', runId: 7, attempt: 1, at: 2, stream: 'stdout', chunk: 2 }, bytes: 10 })}\nshort`);
    const again = DiskQueue.open(dir);
    expect(again.length).toBe(1);
    expect((again.get(1)!.item as { data: Buffer }).data.toString()).toBe('old');
    expect(again.append(output(2, Buffer.from('new')))).toBe(2);
    again.close();
    expect([...DiskQueue.open(dir).unackedItems()].map((i) => (i as { data: Buffer }).data.toString())).toEqual(['old', 'new']);
  });

  it('commits items appended together with one fsync, and hides them until it returned', async () => {
    const q = DiskQueue.open(tmp());
    let commits = 0;
    q.on('durable', () => commits++);
    const done: number[] = [];
    for (let i = 1; i <= 1000; i++) q.append(output(i, Buffer.from(`line ${i}\n`)));
    q.onDurable(1000, () => done.push(1000));
    q.onDurable(3, () => done.push(3));
    expect(q.durableSeq).toBe(0);
    expect(q.get(1)).toBeUndefined();
    expect(q.nextAtOrAfter(1)).toBeUndefined();
    await durable(q);
    expect(commits).toBe(1);
    expect(q.durableSeq).toBe(1000);
    expect(done.sort((a, b) => a - b)).toEqual([3, 1000]);
    expect(q.nextAtOrAfter(1)).toBe(1);
    // Appended while a commit runs: they wait for it and go together in the next one.
    q.append(output(1001, Buffer.from('a')));
    await durable(q);
    for (let i = 1002; i <= 1100; i++) q.append(output(i, Buffer.from('b')));
    await durable(q);
    expect(q.durableSeq).toBe(1100);
    expect(commits).toBe(3);
    q.close();
  });

  it('flush() during a commit in the thread pool writes that batch itself: what it reports durable is in the file', async () => {
    const dir = tmp();
    const q = DiskQueue.open(dir);
    // Every thread of the pool busy for a while: the batch handed to it is surely not written when flush() runs.
    const busy = Array.from({ length: 4 }, () => new Promise((r) => pbkdf2('x', 'y', 200_000, 32, 'sha256', r)));
    const data = Buffer.alloc(64 * 1024, 0x61);
    for (let i = 1; i <= 200; i++) q.append(output(i, data));
    await new Promise((r) => setImmediate(r)); // the group commit has handed the batch to the thread pool
    for (let i = 201; i <= 210; i++) q.append(output(i, data));
    q.flush();
    expect(q.durableSeq).toBe(210);
    // Read at once, before the thread pool's write of the first batch may have finished: every record is there.
    const bytes = readdirSync(dir).filter((f) => f.endsWith('.log')).map((f) => readFileSync(join(dir, f))).reduce((n, b) => n + b.length, 0);
    expect(bytes).toBeGreaterThanOrEqual(210 * data.length);
    q.close(); // the batch still in the thread pool keeps its descriptor until it returns
    await Promise.all(busy);
    const again = DiskQueue.open(dir);
    const items = [...again.unackedItems()] as { chunk: number; data: Buffer }[];
    expect(items.map((i) => i.chunk)).toEqual(Array.from({ length: 210 }, (_, i) => i + 1));
    expect(items.every((i) => i.data.equals(data))).toBe(true);
    again.close();
  });

  it('writing(): an item is being written while pending or in the batch in the thread pool, not once that write landed', async () => {
    const q = DiskQueue.open(tmp());
    const a = q.append(output(1, Buffer.alloc(1024, 1)));
    expect(q.writing(a)).toBe(true); // pending
    await vi.waitFor(() => expect(q.durableSeq).toBe(a));
    expect(q.writing(a)).toBe(false);
    const b = q.append(output(2, Buffer.alloc(32 * 1024, 2))); // bulk: written in the thread pool
    await new Promise((r) => setImmediate(r)); // the batch of b goes to the thread pool
    expect(q.writing(b)).toBe(true);
    expect(q.writing(a)).toBe(false);
    q.flush(); // durable now, but the thread pool may still be writing b's bytes: still "writing"
    expect(q.durableSeq).toBe(b);
    await vi.waitFor(() => expect(q.writing(b)).toBe(false));
    q.close();
  });

  it('a small batch (a run\'s reports) is written on the loop, in the turn after it was appended', async () => {
    const dir = tmp();
    const q = DiskQueue.open(dir);
    const a = q.append(output(1, Buffer.alloc(300, 0x61)));
    const written: number[] = [];
    q.on('written', (upTo: number) => written.push(upTo));
    expect(q.writing(a)).toBe(true); // pending
    await new Promise((r) => setImmediate(r));
    expect(written).toEqual([a]); // landed within that turn: no thread-pool round trip
    expect(q.writing(a)).toBe(false);
    const log = readdirSync(dir).filter((f) => f.endsWith('.log')).map((f) => readFileSync(join(dir, f)));
    expect(Buffer.concat(log).includes(Buffer.alloc(300, 0x61))).toBe(true);
    await vi.waitFor(() => expect(q.durableSeq).toBe(a)); // still made durable by a sync round
    q.close();
  });

  it('after a slow small write on the loop, small batches go to the thread pool for a while', async () => {
    const q = DiskQueue.open(tmp(), undefined, { slowWriteMs: -1 }); // every write counts as slow
    const a = q.append(output(1, Buffer.alloc(300, 1)));
    await new Promise((r) => setImmediate(r));
    expect(q.writing(a)).toBe(false); // the first went on the loop (and was "slow")
    const b = q.append(output(2, Buffer.alloc(300, 2)));
    await new Promise((r) => setImmediate(r));
    expect(q.writing(b)).toBe(true); // in the thread pool now
    await vi.waitFor(() => expect(q.durableSeq).toBe(b));
    q.close();
  });

  it('keeps items in memory until the link sent them (release), then reads a re-send back from disk', () => {
    const dir = tmp();
    const a = Buffer.alloc(600, 0x41);
    const b = Buffer.alloc(600, 0x42);
    const q = DiskQueue.open(dir, 1000); // room for one item in memory
    q.append(output(1, a));
    q.flush();
    q.release(1); // sent: its bytes leave memory, so the next item fits
    q.append(output(2, b));
    q.flush();
    expect((q.get(1)!.item as { data: Buffer }).data.equals(a)).toBe(true); // read back from the segment
    // The second item is served from memory: it is still found with the segment gone.
    for (const f of readdirSync(dir).filter((f) => f.endsWith('.log'))) writeFileSync(join(dir, f), '');
    expect((q.get(2)!.item as { data: Buffer }).data.equals(b)).toBe(true);
    q.close();
  });

  it('writes `acked` before it deletes a segment, so that sequence numbers never restart below the server\'s', async () => {
    const dir = tmp();
    const q = DiskQueue.open(dir);
    for (let i = 1; i <= 3; i++) q.append(output(i, Buffer.alloc(400 * 1024, i)));
    q.flush();
    q.ack(3); // all acknowledged and the segment is over 1 MiB: a new segment starts and the old one goes
    expect(readFileSync(join(dir, 'acked'), 'utf8').trim()).toBe('3');
    while (existsSync(join(dir, '00000001.log'))) await new Promise((r) => setTimeout(r, 5)); // deleted in the thread pool
    // A kill -9 now: the restarted queue continues after 3 (the server would take 1–3 as replays and store nothing).
    const again = DiskQueue.open(dir);
    expect(again.append(step(1, 4))).toBe(4);
    again.close();
    q.close();
  });

  it('writes the acknowledged sequence in place and reads the format of earlier versions', () => {
    const dir = tmp();
    const q = DiskQueue.open(dir);
    for (let i = 1; i <= 3; i++) q.append(step(1, i));
    q.flush();
    q.ack(2);
    q.close();
    expect(readFileSync(join(dir, 'acked'), 'utf8').trim()).toBe('2');
    expect(DiskQueue.open(dir).firstUnacked()).toBe(3);
    writeFileSync(join(dir, 'acked'), '3');
    expect(DiskQueue.open(dir).length).toBe(0);
  });
});

describe('running journal', () => {
  // Written with each entry (boot ticks and boot id, for leftovers.ts): whatever their values.
  const ticks = expect.any(Number);
  const boot = expect.any(String);
  const fds = () => readdirSync('/proc/self/fd').length;
  const written = (j: RunJournal, runId: number) => j.write({ runId, attempt: 1, acceptedAt: 5 });

  it('keeps entries in reused slots of one file, and reads what a previous process left', async () => {
    const dir = tmp();
    const j = new RunJournal(dir);
    const before = fds();
    await written(j, 1);
    await written(j, 2);
    await written(j, 3);
    j.writeProcess(1, 4242, 77);
    expect(fds()).toBe(before); // one descriptor for the journal's life, none per run
    j.remove(2); // ended before it started
    j.remove(2); // and a second removal is harmless
    expect(new RunJournal(dir).list().sort((a, b) => a.runId - b.runId)).toEqual([
      { runId: 1, attempt: 1, acceptedAt: 5, acceptedTicks: ticks, bootId: boot, pid: 4242, startTicks: 77 },
      { runId: 3, attempt: 1, acceptedAt: 5, acceptedTicks: ticks, bootId: boot },
    ]);
    await written(j, 4); // takes the freed slot: the file does not grow
    j.writeProcess(3, 99, undefined);
    j.remove(1);
    expect(readdirSync(dir)).toEqual(['slots']);
    expect(statSync(join(dir, 'slots')).size).toBe(64 * 512);
    expect(new RunJournal(dir).list().sort((a, b) => a.runId - b.runId)).toEqual([
      { runId: 3, attempt: 1, acceptedAt: 5, acceptedTicks: ticks, bootId: boot, pid: 99 },
      { runId: 4, attempt: 1, acceptedAt: 5, acceptedTicks: ticks, bootId: boot },
    ]);
    j.close();
  });

  it('a reused slot does not keep the process of its previous run; a late removal of an earlier attempt keeps the new one', async () => {
    const dir = tmp();
    const j = new RunJournal(dir);
    await written(j, 7);
    j.writeProcess(7, 100, 5);
    j.remove(7);
    await written(j, 8); // same slot as 7 had
    expect(new RunJournal(dir).list()).toEqual([{ runId: 8, attempt: 1, acceptedAt: 5, acceptedTicks: ticks, bootId: boot }]);
    j.write({ runId: 8, attempt: 2, acceptedAt: 6 });
    j.remove(8, 1);
    expect(new RunJournal(dir).list()).toEqual([{ runId: 8, attempt: 2, acceptedAt: 6, acceptedTicks: ticks, bootId: boot }]);
    j.close();
  });

  it('grows past its first slots, drops a torn entry, reads entries of earlier versions and clears them all', async () => {
    const dir = tmp();
    const j = new RunJournal(dir);
    for (let r = 1; r <= 70; r++) await written(j, r);
    expect(new RunJournal(dir).list()).toHaveLength(70);
    j.close();
    // A torn first line (a power loss in mid-write) is dropped: the server declares such a run lost.
    const fd = openSync(join(dir, 'slots'), 'r+');
    const torn = Buffer.alloc(512);
    torn.write('{"runId":6,"att');
    writeSync(fd, torn, 0, 512, 5 * 512);
    closeSync(fd);
    writeFileSync(join(dir, '500.json'), '{"runId":500,"attempt":2,"acceptedAt":1}\n{"pid":12,"startTicks":3}\n');
    const k = new RunJournal(dir);
    const list = k.list();
    expect(list).toHaveLength(70);
    expect(list.find((e) => e.runId === 6)).toBeUndefined();
    expect(list.find((e) => e.runId === 500)).toEqual({ runId: 500, attempt: 2, acceptedAt: 1, pid: 12, startTicks: 3 });
    k.clear();
    expect(readdirSync(dir)).toEqual(['slots']);
    expect(new RunJournal(dir).list()).toEqual([]);
    k.close();
  });
});

describe('agent configuration', () => {
  const base = { env: { BATCHALYZER_AGENT_KEY: 'bza1.k' }, cwd: '/tmp' };
  it('compiles flags over environment with clear errors', () => {
    const c = compileAgentConfig({ ...base, flags: { name: 'a1', server: ['http://h:8080', 'https://g'], refuse: ['shell', 'checks'], allow: ['/usr/bin/*'] } });
    expect(c.servers).toEqual(['ws://h:8080/api/v1/agent', 'wss://g/api/v1/agent']);
    expect(c.accept).toEqual({ command: true, shell: false, node: true, checks: { builtin: false, plugin: false, node: false } });
    expect(c.baseEnv.PATH).toBeTruthy();
    expect(() => compileAgentConfig({ ...base, flags: { server: ['http://h'] } })).toThrow(/--name is required/);
    expect(() => compileAgentConfig({ ...base, flags: { name: 'a', server: ['http://h'], refuse: ['everything'] } })).toThrow(/unknown kind "everything"/);
    expect(() => compileAgentConfig({ ...base, flags: { name: 'a', server: ['http://h'], drainTimeout: 'soon' } })).toThrow(/not a duration/);
    expect(() => compileAgentConfig({ ...base, flags: { name: 'a', server: ['http://h'], spawner: 'fork' } })).toThrow('--spawner: "fork" is auto, native or node');
    expect(compileAgentConfig({ ...base, flags: { name: 'a', server: ['http://h'] } }).spawner).toBe('auto');
    expect(compileAgentConfig({ ...base, flags: { name: 'a', server: ['http://h'] }, env: { ...base.env, BATCHALYZER_AGENT_SPAWNER: 'node' } }).spawner).toBe('node');
    expect(() => agentUrl('ftp://x')).toThrow(/must be http/);
  });
});
