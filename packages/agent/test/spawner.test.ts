import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AgentItem } from '../src/queue.js';
import { compileAgentConfig } from '../src/config.js';
import { JobRun } from '../src/job.js';
import { processStartTicks, type RunJournal } from '../src/journal.js';
import { createLog } from '../src/log.js';
import { type JobChild, nativeSpawner, resolveSpawner, spawnNative } from '../src/spawner.js';

const PATH = '/usr/local/bin:/usr/bin:/bin';

/** The two ways the agent starts a job: both must behave the same (docs/agent.md "Spawning"). */
const spawners: Record<string, (file: string, args: string[], env: Record<string, string>, cwd: string) => JobChild> = {
  native: spawnNative,
  node: (file, args, env, cwd) => spawn(file, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] }),
};

interface Outcome {
  code: number | null;
  signal: string | null;
  stdout: Buffer;
  stderr: Buffer;
  pid: number;
}

/** Whether a `/bin/sleep ARG` process with this argument is alive (its command line readable). */
function sleeping(arg: string): boolean {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).some((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8') === `/bin/sleep\0${arg}\0`;
    } catch {
      return false;
    }
  });
}

/** Resolves once the process exists (the native spawner's comes on a later turn: pid, pipes, start time). */
function spawned(child: JobChild): Promise<void> {
  if (child.pid !== undefined) return Promise.resolve();
  return new Promise((resolve, reject) => {
    child.once('spawn', resolve);
    child.on('error', reject);
  });
}

/** The error of a spawn that fails: `spawn FILE CODE`, as child_process words it. */
function failure(child: JobChild): Promise<string> {
  return new Promise((resolve, reject) => {
    child.on('error', (e) => (child.pid === undefined ? resolve(e.message) : reject(e)));
    child.once('spawn', () => reject(new Error(`started (pid ${child.pid})`)));
  });
}

function run(child: JobChild): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let open = 3;
    let exit: { code: number | null; signal: string | null } | undefined;
    const done = () => {
      if (--open === 0) resolve({ ...exit!, stdout: Buffer.concat(out), stderr: Buffer.concat(err), pid: child.pid! });
    };
    child.on('error', reject);
    // The native spawner hands out views of one reused read buffer (readOutput): copied here, as RunOutput does.
    if (child.readOutput) child.readOutput((stream, d) => (stream === 'stdout' ? out : err).push(Buffer.from(d)));
    const streams = () => {
      if (!child.readOutput) {
        child.stdout!.on('data', (d: Buffer) => out.push(d));
        child.stderr!.on('data', (d: Buffer) => err.push(d));
      }
      child.stdout!.on('close', done);
      child.stderr!.on('close', done);
    };
    if (child.stdout) streams();
    else child.once('spawn', streams);
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      done();
    });
  });
}

/**
 * A JobRun (job.ts) on its own, with the agent around it faked: the items it reports and what it journals.
 * `native` picks the spawner, as the agent's --spawner does.
 */
function jobRun(native: boolean, command: string[], over: { timeoutMs?: number; killGraceMs?: number } = {}, journalFails = false) {
  const items: AgentItem[] = [];
  const journaled: { pid: number; startTicks: number | undefined }[] = [];
  /** The start time /proc gives when the run reports `started` (the process is there then). */
  const procTicks: (number | undefined)[] = [];
  const config = compileAgentConfig({ flags: { name: 't', server: ['http://127.0.0.1:1'] }, env: { BATCHALYZER_AGENT_KEY: 'bza1.k', PATH }, cwd: '/' });
  const journal = {
    writeProcess: (_runId: number, pid: number, startTicks: number | undefined) => {
      if (journalFails) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
      journaled.push({ pid, startTicks });
    },
    remove: () => {},
  };
  const job = new JobRun({
    runId: 1, attempt: 1, jobName: 'j', planDate: '2026-01-01', nominalAt: null, run: { command }, env: {}, secrets: [],
    cwd: '/', killGraceMs: 2000, maxOutputBytes: 1_000_000, ...over,
  }, {
    config, log: createLog('silent'), journal: journal as unknown as RunJournal, agentId: 'spawner-test', nativeSpawn: native,
    emit: (item) => {
      if (item.kind === 'started') procTicks.push(processStartTicks(item.pid!));
      return items.push(item);
    },
    afterDurable: (_seq, cb) => cb(),
    backlogged: () => false,
    onRelief: () => {},
  });
  return { job, items, journaled, procTicks };
}

describe('native spawner', () => {
  it('is built and loads on this Linux machine (npm install builds it; CI must not silently fall back)', () => {
    const { addon, why } = nativeSpawner();
    expect(why).toBeUndefined();
    expect(addon).toBeDefined();
    expect(resolveSpawner('auto')).toEqual({ native: true, note: expect.stringContaining('posix_spawn'), warn: false });
    expect(resolveSpawner('node').native).toBe(false);
  });

  for (const [name, start] of Object.entries(spawners)) {
    describe(name, () => {
      it('reports exit codes and signals', async () => {
        expect(await run(start('/bin/sh', ['-c', 'exit 7'], { PATH }, '/'))).toMatchObject({ code: 7, signal: null });
        expect(await run(start('/bin/sh', ['-c', 'kill -TERM $$'], { PATH }, '/'))).toMatchObject({ code: null, signal: 'SIGTERM' });
        expect(await run(start('/bin/sh', ['-c', 'kill -s IO $$'], { PATH }, '/'))).toMatchObject({ code: null, signal: 'SIGIO' });
        expect(await run(start('/bin/true', [], { PATH }, '/'))).toMatchObject({ code: 0, signal: null });
      });

      it('streams stdout and stderr apart and complete', async () => {
        const o = await run(start('/bin/sh', ['-c', 'head -c 3000000 /dev/zero; printf oops >&2; printf end'], { PATH }, '/'));
        expect(o.code).toBe(0);
        expect(o.stdout.length).toBe(3_000_003);
        expect(o.stdout.subarray(-3).toString()).toBe('end');
        expect(o.stderr.toString()).toBe('oops');
      });

      it('pause() stops reading until resume() (the agent backpressure), and nothing is lost', async () => {
        const child = start('/bin/sh', ['-c', 'head -c 20000000 /dev/zero'], { PATH }, '/');
        let got = 0;
        let paused = false;
        const onData = (_s: string, d: Buffer) => {
          got += d.length;
          if (!paused) {
            paused = true;
            child.stdout!.pause();
          }
        };
        if (child.readOutput) child.readOutput(onData);
        await spawned(child);
        if (!child.readOutput) child.stdout!.on('data', (d: Buffer) => onData('stdout', d));
        const closed = new Promise((r) => child.stdout!.on('close', r));
        await new Promise((r) => setTimeout(r, 300));
        expect(paused).toBe(true);
        expect(got).toBeLessThan(2_000_000); // the rest waits in the pipe
        child.stdout!.resume();
        await closed;
        expect(got).toBe(20_000_000);
      });

      it('gives exactly the environment and working directory asked for', async () => {
        const dir = mkdtempSync(join(tmpdir(), 'bza-spawn-'));
        const o = await run(start('/bin/sh', ['-c', 'pwd; env | sort'], { PATH, ZED: 'a b=c', EMPTY: '' }, dir));
        const [pwd, ...env] = o.stdout.toString().trim().split('\n');
        expect(pwd).toBe(dir);
        // sh adds PWD (and may add SHLVL/_); nothing of the agent's own environment leaks in.
        expect(env.filter((l) => !/^(PWD|SHLVL|_|OLDPWD)=/.test(l))).toEqual(['EMPTY=', `PATH=${PATH}`, 'ZED=a b=c']);
      });

      it('starts the job as the leader of a new session, stdin from /dev/null, no signal ignored or blocked, no inherited descriptors', async () => {
        const stat = await run(start('/bin/cat', ['/proc/self/stat'], { PATH }, '/'));
        // Fields after the command name: state, ppid, pgrp, session.
        const [, ppid, pgrp, session] = stat.stdout.toString().replace(/^.*\) /, '').split(' ');
        expect(Number(ppid)).toBe(process.pid);
        expect(Number(pgrp)).toBe(stat.pid);
        expect(Number(session)).toBe(stat.pid);

        const status = (await run(start('/bin/grep', ['-E', '^Sig(Ign|Blk)', '/proc/self/status'], { PATH }, '/'))).stdout.toString();
        // Node ignores SIGPIPE; an ignored signal survives exec, so a job would not die of a closed pipe.
        expect(status).toMatch(/SigBlk:\s+0+\n/);
        // Also glibc's two internal signals (32, 33), which its posix_spawn would leave ignored.
        expect(status).toMatch(/SigIgn:\s+0+\n/);

        const fds = await run(start('/bin/sh', ['-c', 'readlink /proc/$$/fd/0; ls /proc/$$/fd'], { PATH }, '/'));
        const [stdin, ...listed] = fds.stdout.toString().trim().split('\n');
        expect(stdin).toBe('/dev/null');
        // sh may hold one descriptor of its own (the script or a saved fd) above 2; the agent's (sockets, files) must not be there.
        expect(listed.map(Number).filter((fd) => fd > 2).length).toBeLessThanOrEqual(1);
        expect(listed.length).toBeLessThan(6);
      });

      it('runs an executable file without a #! line with /bin/sh, as execvp does', async () => {
        const dir = mkdtempSync(join(tmpdir(), 'bza-spawn-'));
        const script = join(dir, 'legacy');
        // It also reports what it got: its own session and group, no ignored signal, the environment given.
        writeFileSync(script, 'echo "legacy $1"\ncut -d" " -f5,6 /proc/$$/stat\ngrep SigIgn /proc/$$/status\necho "Z=$Z"\nexit 4\n');
        chmodSync(script, 0o755);
        const o = await run(start(script, ['arg'], { PATH, Z: 'zed' }, '/'));
        expect(o.code).toBe(4);
        const [line, ids, ignored, z] = o.stdout.toString().trim().split('\n');
        expect(line).toBe('legacy arg');
        expect(ids).toBe(`${o.pid} ${o.pid}`);
        expect(ignored).toMatch(/^SigIgn:\s+0+$/);
        expect(z).toBe('Z=zed');
      });

      it('leaves no descriptor behind in the agent', async () => {
        const fds = () => readdirSync('/proc/self/fd').length;
        await run(start('/bin/true', [], { PATH }, '/')); // first use: lazy loading may open files for good
        const before = fds();
        await Promise.all(Array.from({ length: 40 }, () => run(start('/bin/sh', ['-c', 'echo out; echo err >&2'], { PATH }, '/'))));
        await new Promise((r) => setImmediate(r));
        expect(fds()).toBe(before);
      });

      it('signals reach the whole process group', async () => {
        const child = start('/bin/sh', ['-c', 'sleep 30 & sleep 30; echo never'], { PATH }, '/');
        const outcome = run(child);
        await new Promise((r) => setTimeout(r, 100));
        process.kill(-child.pid!, 'SIGKILL');
        expect(await outcome).toMatchObject({ code: null, signal: 'SIGKILL', stdout: Buffer.alloc(0) });
      });

      it('sees every exit among many concurrent jobs and leaves no zombie', async () => {
        const outcomes = await Promise.all(Array.from({ length: 60 }, (_, i) => run(start('/bin/sh', ['-c', `exit ${i % 5}`], { PATH }, '/'))));
        expect(outcomes.map((o) => o.code)).toEqual(Array.from({ length: 60 }, (_, i) => i % 5));
        const zombies = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
          try {
            const s = readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
            return s[0] === 'Z' && Number(s[1]) === process.pid;
          } catch {
            return false;
          }
        });
        expect(zombies).toEqual([]);
      });

      it('fails like a failed spawn, with the code and the file, without starting anything', async () => {
        const dir = mkdtempSync(join(tmpdir(), 'bza-spawn-'));
        const script = join(dir, 'not-executable');
        writeFileSync(script, '#!/bin/sh\necho hi\n');
        chmodSync(script, 0o644);
        expect(await failure(start('/no/such/program', [], { PATH }, '/'))).toBe('spawn /no/such/program ENOENT');
        expect(await failure(start(script, [], { PATH }, '/'))).toBe(`spawn ${script} EACCES`);
        expect(await failure(start('/bin/true', [], { PATH }, join(dir, 'missing')))).toBe('spawn /bin/true ENOENT');
      });

      it('a job killed before its spawn completed is ended once it exists: started with its pid, start time journaled', async () => {
        const t = performance.now();
        const { job, items, journaled, procTicks } = jobRun(name === 'native', ['/bin/sleep', '30']);
        job.start();
        job.kill(); // the native spawner's spawn is still in flight here: no pid yet
        await job.done;
        expect(performance.now() - t).toBeLessThan(1500); // SIGTERM, not the 2 s grace's SIGKILL, nor the 30 s
        const started = items.filter((i) => i.kind === 'started');
        expect(started).toHaveLength(1);
        const pid = (started[0] as { pid: number }).pid;
        expect(pid).toBeGreaterThan(0);
        expect(items.at(-1)).toMatchObject({ kind: 'finished', signal: 'SIGTERM', exitCode: null });
        expect(items.at(-1)).not.toHaveProperty('error');
        // The start time journaled is the kernel's for that process (what a restarted agent compares before a kill).
        expect(journaled).toEqual([{ pid, startTicks: procTicks[0] }]);
        expect(procTicks[0]).toBeGreaterThan(0);
        expect(() => process.kill(-pid, 0)).toThrow(); // nothing of its group is left
      });

      it('a journal that cannot take the process fails the run (the agent goes on) and ends the process', async () => {
        const marker = `${30 + Math.random()}`.slice(0, 8);
        const { job, items } = jobRun(name === 'native', ['/bin/sleep', marker], {}, true);
        job.start();
        await job.done;
        expect(items.filter((i) => i.kind === 'started')).toEqual([]);
        expect(items.at(-1)).toMatchObject({ kind: 'finished', error: expect.stringMatching(/EIO/) });
        await new Promise((r) => setTimeout(r, 100));
        expect(sleeping(marker)).toBe(false); // killed (a zombie has no command line)
      });

      it('a job that cannot start fails with the spawn error and reports no start', async () => {
        const { job, items, journaled } = jobRun(name === 'native', ['/no/such/dir/program']);
        job.start();
        await job.done;
        expect(items.filter((i) => i.kind === 'started')).toEqual([]);
        expect(items.at(-1)).toMatchObject({ kind: 'finished', error: 'cannot start: spawn /no/such/dir/program ENOENT' });
        expect(journaled).toEqual([]);
      });
    });
  }

  it('starts the process off the event loop and hands over its start time as /proc has it (field 22)', async () => {
    const child = spawnNative('/bin/sleep', ['5'], { PATH }, '/');
    // posix_spawn runs on a spawner thread: nothing of the process is known when spawnNative returns.
    expect(child.pid).toBeUndefined();
    expect(child.stdout).toBeNull();
    const outcome = run(child);
    await spawned(child);
    expect(child.startTicks).toBeGreaterThan(0);
    expect(child.startTicks).toBe(processStartTicks(child.pid!));
    process.kill(-child.pid!, 'SIGKILL');
    expect(await outcome).toMatchObject({ signal: 'SIGKILL' });
    // Also for a process that exited before the spawner thread read /proc: it is not reaped before its exit is seen.
    const quick = spawnNative('/bin/true', [], { PATH }, '/');
    await spawned(quick);
    expect(quick.startTicks).toBe(processStartTicks(quick.pid!));
    await run(quick);
  });

  it('does not spin while a tracer holds a job\'s exit (the pidfd is readable, nothing to reap yet)', async (ctx) => {
    // A job whose child ptrace-seizes it and holds its exit for 1.5 s. Needs a C compiler (the addon's build needs one too).
    const dir = mkdtempSync(join(tmpdir(), 'bza-spawn-'));
    writeFileSync(join(dir, 'held.c'), `#include <stdio.h>
#include <sys/ptrace.h>
#include <unistd.h>
int main(void) {
  int p[2]; pipe(p); pid_t parent = getpid();
  if (fork() == 0) { close(1); close(2); char r = ptrace(PTRACE_SEIZE, parent, 0, 0) == 0 ? 'k' : 'x'; write(p[1], &r, 1); usleep(1500000); return 0; }
  char c; read(p[0], &c, 1); printf("%c", c); fflush(stdout); return 5;
}
`);
    const cc = spawnSync('cc', ['-o', join(dir, 'held'), join(dir, 'held.c')], { encoding: 'utf8' });
    if (cc.status !== 0) return ctx.skip(`no C compiler: ${cc.error?.message ?? cc.stderr}`);
    const t = performance.now();
    const cpu = process.cpuUsage();
    const o = await run(spawnNative(join(dir, 'held'), [], { PATH }, '/'));
    if (o.stdout.toString() !== 'k') return ctx.skip('ptrace is not allowed here (kernel.yama.ptrace_scope)');
    const used = process.cpuUsage(cpu);
    expect(o.code).toBe(5);
    expect(performance.now() - t).toBeGreaterThan(1000); // the exit really was held
    // A busy poll burns the whole 1.5 s; the back-off a few milliseconds. 500 ms leaves room for a loaded machine.
    expect((used.user + used.system) / 1000).toBeLessThan(500);
  });

  it('a job gets no descriptor but 0–2, also none the agent inherited without close-on-exec', async () => {
    // An agent started with an extra descriptor (fd 30, not close-on-exec: Node marks only its low inherited fds
    // close-on-exec at start-up): posix_spawn would pass it on; the spawner closes everything above 2 in the child.
    const script = `
      import { spawnNative } from ${JSON.stringify(new URL('../dist/spawner.js', import.meta.url).href)};
      const c = spawnNative('/bin/sh', ['-c', 'ls /proc/$$/fd'], { PATH: '/usr/bin:/bin' }, '/');
      let out = '';
      c.once('spawn', () => c.readOutput((stream, d) => { if (stream === 'stdout') out += d; }));
      c.on('exit', () => setTimeout(() => console.log(JSON.stringify(out.trim().split('\\n'))), 100));`;
    // bash, not sh: dash cannot redirect a descriptor above 9.
    const r = spawnSync('/bin/bash', ['-c', 'exec "$0" --input-type=module -e "$1" 30</dev/null', process.execPath, script], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(['0', '1', '2']);
  });

  it('a spawn that hangs does not hold its run: the timeout ends it after the grace period, and the late process is killed at once', async () => {
    const { addon } = nativeSpawner();
    const marker = `${30 + Math.random()}`.slice(0, 8); // an argument no other process has
    addon!.setTestSpawnDelay(2500); // the spawner thread is stuck, as in an exec on a dead NFS mount
    try {
      const t = performance.now();
      const { job, items } = jobRun(true, ['/bin/sleep', marker], { timeoutMs: 200, killGraceMs: 300 });
      job.start();
      await job.done;
      expect(performance.now() - t).toBeLessThan(2000); // timeout + grace, not the spawn's 2.5 s
      expect(items.at(-1)).toMatchObject({ kind: 'finished', timedOut: true, error: expect.stringMatching(/^timed out before its process started/) });
      addon!.setTestSpawnDelay(0);
      await new Promise((r) => setTimeout(r, 3500 - (performance.now() - t))); // the stuck spawn completes meanwhile
      expect(sleeping(marker)).toBe(false); // started at ~2.5 s and killed when it was handed over (a zombie has no cmdline)
      expect(items.filter((i) => i.kind === 'started')).toEqual([]); // nothing reported after the run's end
      expect(items.filter((i) => i.kind === 'finished')).toHaveLength(1);
    } finally {
      addon!.setTestSpawnDelay(0);
    }
  });

  it('spawns that wait over a second for a spawner thread (execs hanging on both) get another thread', async () => {
    const { addon } = nativeSpawner();
    await run(spawnNative('/bin/true', [], { PATH }, '/')); // the first spawn starts the usual threads
    const before = addon!.spawnerThreads(); // two, or more if an earlier test made the pool grow
    addon!.setTestSpawnDelay(2500); // every spawn holds its thread 2.5 s, as an exec on a dead NFS mount would
    try {
      const children = Array.from({ length: before + 1 }, () => spawnNative('/bin/true', [], { PATH }, '/'));
      // One more than there are threads: the last waits, and after a second a thread is started for it.
      const deadline = performance.now() + 5000;
      while (addon!.spawnerThreads() <= before && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(addon!.spawnerThreads()).toBe(before + 1);
      addon!.setTestSpawnDelay(0);
      const outcomes = await Promise.all(children.map((c) => run(c)));
      expect(outcomes.map((o) => o.code)).toEqual(children.map(() => 0));
    } finally {
      addon!.setTestSpawnDelay(0);
    }
  });

  it('frees every exit watch, also when watching fails (then the job is ended, not left running)', async () => {
    const { addon } = nativeSpawner();
    const settle = () => new Promise((r) => setImmediate(() => setImmediate(r)));
    await settle();
    const before = addon!.liveWatches();
    await Promise.all(Array.from({ length: 50 }, () => run(spawnNative('/bin/true', [], { PATH }, '/'))));
    await settle();
    expect(addon!.liveWatches()).toBe(before);
    addon!.setTestFailure(true);
    try {
      expect(await failure(spawnNative('/bin/sleep', ['30'], { PATH }, '/'))).toBe('spawn /bin/sleep EINVAL');
    } finally {
      addon!.setTestFailure(false);
    }
    await settle();
    expect(addon!.liveWatches()).toBe(before);
    const children = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return Number(readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1]) === process.pid;
      } catch {
        return false;
      }
    });
    expect(children).toEqual([]); // the sleep was killed and reaped
  });

  it('kills, when the agent exits, a job spawned but not yet handed over (it was never journaled with its pid)', async () => {
    const addonPath = new URL('../build/Release/spawn.node', import.meta.url).pathname;
    const marker = `29.${process.pid}${Date.now() % 100000}`;
    // Exits at once: the spawns are queued or in progress on the spawner threads, none delivered.
    const script = `const a = require(${JSON.stringify(addonPath)}); for (let i = 0; i < 3; i++) a.spawnAsync('/bin/sleep', ['/bin/sleep', '${marker}'], [], '/', () => {}, () => {}); process.exit(0);`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 });
    expect(r.status).toBe(0);
    await new Promise((res) => setTimeout(res, 200));
    const left = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker) && !/\) Z /.test(readFileSync(`/proc/${p}/stat`, 'utf8'));
      } catch {
        return false;
      }
    });
    for (const p of left) process.kill(Number(p), 'SIGKILL');
    expect(left).toEqual([]);
  });

  it('names real-time signals, which Node has no names for', async () => {
    expect(await run(spawnNative('/bin/sh', ['-c', 'kill -s 40 $$'], { PATH }, '/'))).toMatchObject({ code: null, signal: 'SIGRTMIN+6' });
  });

  it('refuses to load in a worker thread (its exit watches live on the loop they were made on)', async () => {
    const { Worker } = await import('node:worker_threads');
    const addonPath = new URL('../build/Release/spawn.node', import.meta.url).pathname;
    const worker = new Worker(`try { require(${JSON.stringify(addonPath)}); require('node:worker_threads').parentPort.postMessage('loaded'); } catch (e) { require('node:worker_threads').parentPort.postMessage(e.message); }`, { eval: true });
    const message = await new Promise((resolve) => worker.once('message', resolve));
    await worker.terminate();
    expect(message).toBe('the native spawner runs only on the main thread');
  });

  it('names any errno of a failed spawn (ELOOP)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bza-spawn-'));
    symlinkSync(join(dir, 'loop'), join(dir, 'loop'));
    expect(await failure(spawnNative(join(dir, 'loop'), [], { PATH }, '/'))).toBe(`spawn ${join(dir, 'loop')} ELOOP`);
  });

  it('refuses NUL bytes instead of cutting the string short', () => {
    expect(() => spawnNative('/bin/echo', ['a\0b'], { PATH }, '/')).toThrow('cannot start: argument 1 contains a NUL byte');
    expect(() => spawnNative('/bin/echo', [], { PATH, X: 'a\0rm -rf' }, '/')).toThrow(/environment entry "X=a\\u0000rm -rf" contains a NUL byte/);
  });
});
