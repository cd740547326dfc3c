/**
 * How the agent starts job processes (docs/agent.md "Spawning").
 *
 * Node's child_process (libuv 1.46) starts every process with a plain `fork`, whose cost grows with the agent's
 * mapped memory: page tables copied, then torn down again by the child's `exec` — about 1.3–1.8 ms of CPU per
 * spawn here, most of the agent's cost per `/bin/true` run. The native spawner (native/spawn.c) uses glibc's
 * `posix_spawn` (clone with CLONE_VM|CLONE_VFORK: nothing copied) and learns of the exit through a pidfd watched
 * by the event loop: about 0.6 ms per spawn, child included. It is built at `npm install` when a C toolchain is
 * there; without it, or for what it cannot do (switching user, Node scripts with their IPC channel), the agent
 * uses child_process.
 */

import type { Serializable } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { Socket, type SocketConstructorOpts } from 'node:net';
import { constants } from 'node:os';
import type { Readable } from 'node:stream';
import { AgentConfigError, type SpawnerChoice } from './config.js';

/** What JobRun needs of a started process; child_process's ChildProcess has all of it too. */
export interface JobChild {
  readonly pid?: number | undefined;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  on(event: 'exit', listener: (code: number | null, signal: string | null) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'message', listener: (message: unknown) => void): this;
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
  spawn(file: string, argv: string[], envp: string[], cwd: string, onExit: (code: number | null, signal: number) => void): [number, number, number];
  supported(): boolean;
  /** Test hooks: exit watches not yet freed; make the next spawns fail as if the exit watch could not start. */
  liveWatches(): number;
  setTestFailure(on: boolean): void;
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
  readonly pid: number;
  readonly stdout: Socket;
  readonly stderr: Socket;
  private onData: ((stream: 'stdout' | 'stderr', data: Buffer) => void) | undefined;
  constructor(pid: number, out: number, err: number) {
    super();
    this.pid = pid;
    readBuffer ??= Buffer.allocUnsafe(READ_BUFFER_BYTES);
    // Reading starts on a later loop turn, after JobRun.wire set onData (a read before would be dropped).
    // `onread` is a net.Socket constructor option since Node 12 (@types/node declares it for connect() only).
    const open = (fd: number, stream: 'stdout' | 'stderr') => new Socket({
      fd, readable: true, writable: false,
      onread: { buffer: readBuffer!, callback: (n: number, buf: Buffer) => void this.onData?.(stream, buf.subarray(0, n)) },
    } as SocketConstructorOpts);
    this.stdout = open(out, 'stdout');
    this.stderr = open(err, 'stderr');
  }

  readOutput(onData: (stream: 'stdout' | 'stderr', data: Buffer) => void): void {
    this.onData = onData;
  }
}

/**
 * Starts `file` with `args` in its own session (so a process group, like child_process's `detached`), stdin from
 * /dev/null, stdout and stderr to pipes, every signal at its default. Throws like a failed spawn: the message is
 * `spawn FILE CODE` (e.g. ENOENT, EACCES).
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
  let child: NativeChild | undefined;
  let pid: number;
  let out: number;
  let err: number;
  try {
    // The exit is seen on a later turn of the event loop at the earliest, so `child` is set by then.
    [pid, out, err] = addon.spawn(file, argv, envp, cwd, (code, sig) => child!.emit('exit', code, sig ? signalName(sig) : null));
  } catch (e) {
    throw new Error(`cannot start: spawn ${file} ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  child = new NativeChild(pid, out, err);
  return child;
}
