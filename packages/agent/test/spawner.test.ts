import { spawn } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
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
    else {
      child.stdout!.on('data', (d: Buffer) => out.push(d));
      child.stderr!.on('data', (d: Buffer) => err.push(d));
    }
    child.stdout!.on('close', done);
    child.stderr!.on('close', done);
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      done();
    });
  });
}

describe('native spawner', () => {
  it('is built and loads on this Linux machine (npm install builds it; CI must not silently fall back)', () => {
    const { addon, why } = nativeSpawner();
    expect(why).toBeUndefined();
    expect(addon).toBeDefined();
    expect(resolveSpawner('auto')).toEqual({ native: true, note: expect.stringContaining('posix_spawn') });
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
        else child.stdout!.on('data', (d: Buffer) => onData('stdout', d));
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
        // Only glibc's two internal signals (32, 33: thread cancellation and set*id) may stay ignored: its
        // posix_spawn ignores them in the child, and every glibc program installs its own handlers at start.
        const ignored = BigInt(`0x${/SigIgn:\s+([0-9a-f]+)/.exec(status)![1]}`);
        expect(ignored & ~0x180000000n).toBe(0n);

        const fds = await run(start('/bin/sh', ['-c', 'readlink /proc/$$/fd/0; ls /proc/$$/fd'], { PATH }, '/'));
        const [stdin, ...listed] = fds.stdout.toString().trim().split('\n');
        expect(stdin).toBe('/dev/null');
        // sh may hold one descriptor of its own (the script or a saved fd) above 2; the agent's (sockets, files) must not be there.
        expect(listed.map(Number).filter((fd) => fd > 2).length).toBeLessThanOrEqual(1);
        expect(listed.length).toBeLessThan(6);
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
    });
  }

  it('fails like a failed spawn, with the code and the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bza-spawn-'));
    const script = join(dir, 'not-executable');
    writeFileSync(script, '#!/bin/sh\necho hi\n');
    chmodSync(script, 0o644);
    expect(() => spawnNative('/no/such/program', [], { PATH }, '/')).toThrow('cannot start: spawn /no/such/program ENOENT');
    expect(() => spawnNative(script, [], { PATH }, '/')).toThrow(`cannot start: spawn ${script} EACCES`);
    expect(() => spawnNative('/bin/true', [], { PATH }, join(dir, 'missing'))).toThrow('cannot start: spawn /bin/true ENOENT');
  });

  it('refuses NUL bytes instead of cutting the string short', () => {
    expect(() => spawnNative('/bin/echo', ['a\0b'], { PATH }, '/')).toThrow('cannot start: argument 1 contains a NUL byte');
    expect(() => spawnNative('/bin/echo', [], { PATH, X: 'a\0rm -rf' }, '/')).toThrow(/environment entry "X=a\\u0000rm -rf" contains a NUL byte/);
  });
});
