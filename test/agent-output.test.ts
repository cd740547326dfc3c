import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pattern, serverWithAgent, TestAgent, until } from './support/agent.js';
import { tempDir } from './support/cli.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});

type Env = Awaited<ReturnType<typeof serverWithAgent>>;
async function ended(store: Env['store'], id: number) {
  return until(`run ${id} ended`, async () => {
    const r = await store.getRun(id);
    return r && !['dispatched', 'running'].includes(r.state) ? r : undefined;
  }, 60_000);
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// Writes pattern() (numbered lines, so that a gap, a repeat or a reordering shows) forever, in large writes.
const ENDLESS = `let i = 0; const line = (n) => String(n).padStart(6, '0') + ':abcdefghijklmnopqrstuvwxyz\\n';
function more() { let s = ''; while (s.length < 256 * 1024) s += line(i++); if (process.stdout.write(s)) setImmediate(more); else process.stdout.once('drain', more); }
more();`;

// Writes pattern() until the file GO exists, then 1 MB more, then the number of bytes written to the file COUNT.
const GATED = (go: string, count: string) => `const fs = require('fs'); let i = 0, n = 0, stop = -1;
const line = (k) => String(k).padStart(6, '0') + ':abcdefghijklmnopqrstuvwxyz\\n';
function more() {
  if (stop < 0 && fs.existsSync(${JSON.stringify(go)})) stop = n + 1024 * 1024;
  if (stop >= 0 && n >= stop) return process.stdout.end(() => fs.writeFileSync(${JSON.stringify(count)}, String(n)));
  let s = ''; while (s.length < 64 * 1024) s += line(i++);
  n += s.length;
  if (process.stdout.write(s)) setImmediate(more); else process.stdout.once('drain', more);
}
more();`;

describe('job output through the binary link and the group-committed queue (protocol 2)', () => {
  it('stores 24 MB of random bytes byte for byte', async () => {
    const env = await serverWithAgent('a1');
    cleanup.push(() => env.server.stop(), () => env.agent.kill9(), () => env.store.close());
    const file = join(tempDir(), 'random.bin');
    const bytes = randomBytes(24 * 1024 * 1024);
    writeFileSync(file, bytes);
    const runId = await env.server.run('a1', { command: ['cat', file] }, { maxOutputBytes: 64 * 1024 * 1024 });
    const run = await ended(env.store, runId);
    expect(run.state).toBe('succeeded');
    expect(run.outputTruncated).toBe(false);
    const stored = await env.store.readOutput(runId, 'stdout');
    expect(stored.length).toBe(bytes.length);
    expect(sha(stored)).toBe(sha(bytes));
  });

  it('four jobs streaming at once (stdout and stderr) are each stored byte for byte: reused chunk buffers never mix', async () => {
    const env = await serverWithAgent('a1');
    cleanup.push(() => env.server.stop(), () => env.agent.kill9(), () => env.store.close());
    const dir = tempDir();
    const jobs = await Promise.all(Array.from({ length: 4 }, async (_, i) => {
      const out = randomBytes(12 * 1024 * 1024 + i * 4099);
      const err = randomBytes(3 * 1024 * 1024 + i * 77);
      writeFileSync(join(dir, `out${i}`), out);
      writeFileSync(join(dir, `err${i}`), err);
      const shell = `cat ${join(dir, `err${i}`)} >&2 & cat ${join(dir, `out${i}`)}; wait`;
      return { out, err, runId: await env.server.run('a1', { shell }, { maxOutputBytes: 64 * 1024 * 1024 }) };
    }));
    for (const j of jobs) {
      expect((await ended(env.store, j.runId)).state).toBe('succeeded');
      expect(sha(await env.store.readOutput(j.runId, 'stdout'))).toBe(sha(j.out));
      expect(sha(await env.store.readOutput(j.runId, 'stderr'))).toBe(sha(j.err));
    }
  });

  it('an agent speaking protocol 1 still sends base64 reports that are stored byte for byte', async () => {
    const env = await serverWithAgent('a1', ['--protocol-version', '1']);
    cleanup.push(() => env.server.stop(), () => env.agent.kill9(), () => env.store.close());
    const file = join(tempDir(), 'random.bin');
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    writeFileSync(file, bytes);
    const runId = await env.server.run('a1', { command: ['cat', file] }, { maxOutputBytes: 8 * 1024 * 1024 });
    expect((await ended(env.store, runId)).state).toBe('succeeded');
    expect(sha(await env.store.readOutput(runId, 'stdout'))).toBe(sha(bytes));
  });

  it('kill -9 of the agent mid-stream: what was stored stays, and the stored output is an exact prefix (no gap, no repeat)', async () => {
    const env = await serverWithAgent('a1');
    cleanup.push(() => env.server.stop(), () => env.agent.kill9(), () => env.store.close());
    const runId = await env.server.run('a1', { command: [process.execPath, '-e', ENDLESS] }, { maxOutputBytes: 1024 * 1024 * 1024 });
    const before = await until('8 MB stored', async () => {
      const n = (await env.store.getRun(runId))!.outputBytes;
      return n >= 8 * 1024 * 1024 ? n : undefined;
    }, 60_000, 20);
    await env.agent.kill9();
    const again = new TestAgent({ name: 'a1', url: env.server.url, keyFile: env.keyFile, data: env.agent.data }).start();
    cleanup.push(() => again.kill9());
    const run = await ended(env.store, runId);
    expect(run.state).toBe('lost');
    const stored = await env.store.readOutput(runId, 'stdout');
    expect(stored.length).toBeGreaterThanOrEqual(before);
    expect(stored.length).toBe(run.outputBytes);
    expect(stored.equals(Buffer.from(pattern(stored.length)))).toBe(true);
  });

  it('while the server is away, a job streaming 400 MB keeps the agent\'s memory bounded (the queue holds it on disk)', async () => {
    const env = await serverWithAgent('a1');
    cleanup.push(() => env.server.stop(), () => env.agent.kill9(), () => env.store.close());
    const total = 400 * 1024 * 1024;
    const runId = await env.server.run('a1', { shell: `head -c ${total} /dev/zero | tr '\\0' x` }, { maxOutputBytes: 2 * total });
    await until('1 MB stored', async () => (await env.store.getRun(runId))!.outputBytes >= 1024 * 1024 || undefined, 60_000, 20);
    await env.server.kill9();
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${env.agent.proc.pid}/status`, 'utf8'))![1]) * 1024;
    const queueDir = join(env.agent.data, 'queue');
    const queued = () => readdirSync(queueDir).filter((f) => f.endsWith('.log')).reduce((n, f) => n + statSync(join(queueDir, f)).size, 0);
    let peak = 0;
    await until('the output queued on disk', () => {
      peak = Math.max(peak, rss());
      return queued() >= total * 0.95 || undefined;
    }, 120_000, 50);
    // Chunk buffers kept for reuse until acknowledged held every byte: 675 MB of RSS for 600 MB of output.
    expect(peak).toBeLessThan(200 * 1024 * 1024);
    await env.server.start(env.server.port);
    const run = await ended(env.store, runId);
    expect(run.state).toBe('succeeded');
    expect(run.outputBytes).toBe(total);
  }, 180_000);

  it('kill -9 of the server mid-stream: the restarted server stores exactly what the job printed (output files beside the database)', async () => {
    const env = await serverWithAgent('a1');
    cleanup.push(() => env.server.stop(), () => env.agent.kill9(), () => env.store.close());
    const dir = tempDir();
    const [go, count] = [join(dir, 'go'), join(dir, 'count')];
    const runId = await env.server.run('a1', { command: [process.execPath, '-e', GATED(go, count)] }, { maxOutputBytes: 1024 * 1024 * 1024 });
    await until('4 MB stored', async () => (await env.store.getRun(runId))!.outputBytes >= 4 * 1024 * 1024 || undefined, 60_000, 20);
    await env.server.kill9();
    writeFileSync(go, '');
    await until('the job to end', () => existsSync(count) || undefined, 60_000);
    await env.server.start(env.server.port);
    const run = await ended(env.store, runId);
    expect(run.state).toBe('succeeded');
    const printed = Number(readFileSync(count, 'utf8'));
    const stored = await env.store.readOutput(runId, 'stdout');
    expect(stored.length).toBe(printed);
    expect(run.outputBytes).toBe(printed);
    expect(stored.equals(Buffer.from(pattern(printed)))).toBe(true);
    // The bytes are in the run's file, not in the database.
    expect(existsSync(join(env.data, 'batchalyzer.db.output', String(Math.floor(runId / 1000)), `${runId}.stdout`))).toBe(true);
  });
});
