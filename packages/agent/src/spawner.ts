/**
 * How the agent starts job processes (docs/agent.md "Spawning").
 *
 * Node's child_process (libuv 1.46) starts every process with a plain `fork`, whose cost grows with the agent's
 * mapped memory: page tables copied, then torn down again by the child's `exec` — about 1.3–1.8 ms of CPU per
 * spawn here, most of the agent's cost per `/bin/true` run. The native spawner (native/spawn.c) uses glibc's
 * `posix_spawn` (clone with CLONE_VM|CLONE_VFORK: nothing copied) and learns of the exit through a pidfd watched
 * by the event loop: about 0.6 ms per spawn, child included. The spawn runs on one of the addon's spawner threads,
 * off the event loop (posix_spawn holds its calling thread until the child execs); the process, its pipes and its
 * start time arrive on a later turn ('spawn'). It is built at `npm install` when a C toolchain is there; without
 * it, or for what it cannot do (switching user, Node scripts with their IPC channel), the agent uses child_process.
 */

import type { Serializable } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { Socket, type SocketConstructorOpts } from 'node:net';
import { constants } from 'node:os';
import type { Readable } from 'node:stream';
import { AgentConfigError, type SpawnerChoice } from './config.js';

/**
 * What JobRun needs of a started process; child_process's ChildProcess has all of it too. `pid` is undefined until
 * the process exists: then 'spawn' is emitted (the native spawner: on a later turn of the loop; stdout and stderr are
 * there from then on), or 'error' if it could not start (`spawn FILE CODE`, pid still undefined).
 */
export interface JobChild {
  readonly pid?: number | undefined;
  /** The process's start time (/proc/PID/stat field 22), when the spawner read it (the native spawner does). */
  readonly startTicks?: number | undefined;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  on(event: 'spawn', listener: () => void): this;
  on(event: 'exit', listener: (code: number | null, signal: string | null) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'message', listener: (message: unknown) => void): this;
  once(event: 'spawn', listener: () => void): this;
  /** Only for Node scripts (child_process.fork): their IPC channel. */
  send?: ((message: Serializable, callback: (err: Error | null) => void) => boolean) | undefined;
  readonly connected?: boolean;
  disconnect?: () => void;
  /**
   * When present, output is read through this instead of 'data' events: `onData` gets a view of a buffer that is
   * reused for the next read (it must copy what it keeps, during the call). pause()/resume() and 'close' of
   * stdout/stderr work as usual.
   */
  readOutput?: (onData: (stream: 'stdout' | 'stderr', data: Buffer) => void) => void;
}

interface Addon {
  /** Synchronous: the calling thread waits for the child's exec (the benchmarks' raw loop uses it). */
  spawn(file: string, argv: string[], envp: string[], cwd: string, onExit: (code: number | null, signal: number) => void): [number, number, number];
  /** On one of the addon's spawner threads; onSpawn comes on a later turn of the loop, onExit after it. */
  spawnAsync(
    file: string, argv: string[], envp: string[], cwd: string,
    onSpawn: (err: NodeJS.ErrnoException | null, pid?: number, out?: number, err2?: number, startTicks?: number) => void,
    onExit: (code: number | null, signal: number) => void,
  ): void;
  supported(): boolean;
  /**
   * Test hooks: exit watches not yet freed; make the next spawns fail as if the exit watch could not start; make
   * every spawn wait this long on its spawner thread first, as an exec on a dead NFS mount does (0: off).
   */
  liveWatches(): number;
  setTestFailure(on: boolean): void;
  setTestSpawnDelay(ms: number): void;
  /** Spawner threads started so far (two, more once spawns waited over a second for one: hung execs). */
  spawnerThreads(): number;
}

let loaded: { addon?: Addon; why?: string } | undefined;

/** Loads the native spawner once; `why` says why it is not available. */
export function nativeSpawner(): { addon?: Addon; why?: string } {
  if (loaded) return loaded;
  if (process.platform !== 'linux') return (loaded = { why: 'the native spawner is for Linux only' });
  try {
    const addon = createRequire(import.meta.url)('../build/Release/spawn.node') as Addon;
    loaded = addon.supported() ? { addon } : { why: 'pidfd_open is not available (it needs Linux 5.3 or later)' };
  } catch (err) {
    if (/only on the main thread/.test((err as Error).message)) return (loaded = { why: (err as Error).message });
    loaded = { why: `build/Release/spawn.node did not load (${(err as Error).message.split('\n')[0]}); run \`npm rebuild @batchalyzer/agent\` with a C compiler, make and python3 installed` };
  }
  return loaded;
}

/** Which spawner the agent uses, from --spawner; throws when `native` is asked for and cannot load. */
export function resolveSpawner(choice: SpawnerChoice): { native: boolean; note: string; warn: boolean } {
  if (choice === 'node') return { native: false, note: 'jobs are spawned with child_process (--spawner node)', warn: false };
  const { addon, why } = nativeSpawner();
  if (addon) return { native: true, note: 'jobs are spawned with posix_spawn (native spawner)', warn: false };
  if (choice === 'native') throw new AgentConfigError(`--spawner native: ${why}; use --spawner auto or node`);
  // On Linux the native spawner is expected: its absence is a broken build worth a warning.
  return { native: false, note: `jobs are spawned with child_process, which is slower: ${why}`, warn: process.platform === 'linux' };
}

// The first name of a number wins (SIGABRT, not SIGIOT; SIGIO, not SIGPOLL), as child_process reports them.
const SIGNAL_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(constants.signals)) if (!SIGNAL_NAMES.has(n)) SIGNAL_NAMES.set(n, name);

/** The name of a signal number; real-time signals, which have none in Node, as glibc numbers them (SIGRTMIN is 34). */
function signalName(n: number): string {
  return SIGNAL_NAMES.get(n) ?? (n >= 34 && n <= 64 ? `SIGRTMIN+${n - 34}` : `SIG${n}`);
}

/**
 * The one buffer every native child's pipes are read into (net.Socket's `onread`): each read is handed to its job
 * synchronously, which copies what it keeps, before the next read into it. 'data' events would allocate a fresh
 * 64 KiB buffer per read, which the job then copies into its chunk anyway: twice the external memory per byte of
 * output, and the garbage collections that go with it. Allocated on first use.
 */
const READ_BUFFER_BYTES = 256 * 1024;
let readBuffer: Buffer | undefined;

/** A process started by the native spawner, shaped like a ChildProcess without IPC. */
class NativeChild extends EventEmitter {
  pid: number | undefined;
  startTicks: number | undefined;
  stdout: Socket | null = null;
  stderr: Socket | null = null;
  private onData: ((stream: 'stdout' | 'stderr', data: Buffer) => void) | undefined;

  /** The spawner thread started the process: its pipes are opened and 'spawn' is emitted. */
  spawned(pid: number, out: number, err: number, startTicks: number | undefined): void {
    this.pid = pid;
    this.startTicks = startTicks;
    readBuffer ??= Buffer.allocUnsafe(READ_BUFFER_BYTES);
    // Reading starts on a later loop turn, after JobRun.wire set onData (a read before would be dropped).
    // `onread` is a net.Socket constructor option since Node 12 (@types/node declares it for connect() only).
    const open = (fd: number, stream: 'stdout' | 'stderr') => new Socket({
      fd, readable: true, writable: false,
      onread: { buffer: readBuffer!, callback: (n: number, buf: Buffer) => void this.onData?.(stream, buf.subarray(0, n)) },
    } as SocketConstructorOpts);
    this.stdout = open(out, 'stdout');
    this.stderr = open(err, 'stderr');
    this.emit('spawn');
  }

  readOutput(onData: (stream: 'stdout' | 'stderr', data: Buffer) => void): void {
    this.onData = onData;
  }
}

/**
 * Starts `file` with `args` in its own session (so a process group, like child_process's `detached`), stdin from
 * /dev/null, stdout and stderr to pipes, every signal at its default. Returns at once, before the process exists
 * (posix_spawn runs on one of the addon's spawner threads): like child_process, the child emits 'spawn' once it runs (pid,
 * startTicks, stdout and stderr set), or 'error' if it could not start, with the message `spawn FILE CODE` (e.g.
 * ENOENT, EACCES). Throws only when nothing could be queued: an argument that cannot be passed (a NUL byte), or no
 * spawner thread could be created.
 */
export function spawnNative(file: string, args: readonly string[], env: Record<string, string | undefined>, cwd: string): JobChild {
  const { addon, why } = nativeSpawner();
  if (!addon) throw new Error(`native spawner unavailable: ${why}`);
  const argv = [file, ...args];
  const envp: string[] = [];
  for (const [k, v] of Object.entries(env)) if (v !== undefined) envp.push(`${k}=${v}`);
  // C strings end at a NUL: a value holding one would run something other than what was asked (child_process refuses it too).
  for (const [what, list] of [['argument', argv], ['environment entry', envp], ['working directory', [cwd]]] as const) {
    const i = list.findIndex((s) => s.includes('\0'));
    if (i >= 0) throw new Error(`cannot start: ${what} ${list === argv ? i : JSON.stringify(list[i]!.slice(0, 40))} contains a NUL byte`);
  }
  const child = new NativeChild();
  try {
    addon.spawnAsync(file, argv, envp, cwd, (e, pid, out, err, startTicks) => {
      if (e) {
        child.emit('error', Object.assign(new Error(`spawn ${file} ${e.code ?? e.message}`), { code: e.code, errno: e.errno, syscall: `spawn ${file}`, path: file }));
      } else child.spawned(pid!, out!, err!, startTicks);
    }, (code, sig) => child.emit('exit', code, sig ? signalName(sig) : null));
  } catch (e) {
    // Nothing was started (no spawner thread could be created, say): a failed spawn, thrown at once.
    throw new Error(`cannot start: spawn ${file} ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return child;
}
