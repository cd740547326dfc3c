import { ChildProcess, fork, spawn } from 'node:child_process';
import { realpathSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { DispatchPayloadMessage } from '@batchalyzer/protocol';
import type { AgentConfig } from './config.js';
import { jobEnv, lookupGroup, lookupUser, type PasswdEntry, resolveExecutable, runTag } from './env.js';
import { matchesAny } from './glob.js';
import { processStartTicks, type RunJournal } from './journal.js';
import type { Log } from './log.js';
import { Masker, RunOutput } from './output.js';
import type { AgentItem } from './queue.js';
import { type JobChild, spawnNative } from './spawner.js';

/** What a running job needs from the agent. */
export interface JobContext {
  config: AgentConfig;
  log: Log;
  journal: RunJournal;
  /** This agent's data directory's identity (its queue id): part of each run's BATCHALYZER_RUN_TAG (env.ts). */
  agentId: string;
  /** Start command and shell jobs with the native spawner (spawner.ts). */
  nativeSpawn: boolean;
  /** Appends an item to the disk queue; returns its sequence. */
  emit(item: AgentItem): number;
  /** Calls back once the item with this sequence (and all before it) is on disk. */
  afterDurable(seq: number, cb: () => void): void;
  /** True while the queue has too much not yet written: output pipes pause (backpressure). */
  backlogged(): boolean;
  onRelief(cb: () => void): void;
}

type Kind = 'command' | 'shell' | 'node';
const MAX_STEPS = 10_000;
const MAX_STEP_DATA = 64 * 1024;

/**
 * One attempt of one run on this agent (brief §3, §8): checks the refusals, spawns the process in its own
 * process group, streams its output, enforces the timeout on the whole group (SIGTERM, then SIGKILL after the
 * grace period), and reports started/output/steps/finished through the queue.
 */
export class JobRun {
  readonly runId: number;
  readonly attempt: number;
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private child: JobChild | undefined;
  private output: RunOutput;
  private masker: Masker;
  private flushTimer: NodeJS.Timeout | undefined;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private terminating = false;
  /** Its spawn is in flight on a native spawner thread (no pid yet). */
  private spawnPending = false;
  private timedOut = false;
  private finished = false;
  private exit: { code: number | null; signal: string | null } | undefined;
  private steps = 0;
  private result: unknown;
  private paused = false;

  constructor(readonly payload: DispatchPayloadMessage, private readonly ctx: JobContext) {
    this.runId = payload.runId;
    this.attempt = payload.attempt;
    this.done = new Promise((r) => (this.resolveDone = r));
    this.masker = new Masker(payload.secrets);
    this.output = new RunOutput(payload.maxOutputBytes, payload.secrets, ctx.config.chunkBytes, {
      chunk: (stream, chunk, data) => this.item({ kind: 'output', stream, chunk, data }),
      truncated: (droppedBytes) => this.item({ kind: 'truncated', droppedBytes }),
    });
  }

  private item(partial: Record<string, unknown> & { kind: AgentItem['kind'] }): number {
    return this.ctx.emit({ ...partial, runId: this.runId, attempt: this.attempt, at: Date.now() } as AgentItem);
  }

  get kind(): Kind {
    const r = this.payload.run;
    return 'command' in r ? 'command' : 'shell' in r ? 'shell' : 'node';
  }

  start(): void {
    if (this.terminating) return this.finish({ error: 'terminated before it started' });
    try {
      this.spawn();
    } catch (err) {
      return this.finish({ error: (err as Error).message });
    }
    // From here, its spawn included: an exec that hangs (a dead NFS mount) must not hold the run past its timeout.
    const { timeoutMs } = this.payload;
    if (timeoutMs && !this.finished) {
      this.timeoutTimer = setTimeout(() => {
        this.timedOut = true;
        this.ctx.log.info(`run ${this.runId}: timeout after ${timeoutMs} ms; terminating its process group`);
        this.terminate();
      }, timeoutMs);
    }
  }

  /** The run could not be started (e.g. its journal entry could not be written). */
  fail(error: string): void {
    this.finish({ error });
  }

  private spawn(): void {
    const { config } = this.ctx;
    const p = this.payload;
    const kind = this.kind;
    if (!config.accept[kind]) throw new Error(`refused: ${kind} jobs are disabled on agent ${config.name} (--refuse ${kind})`);
    let user: PasswdEntry | undefined;
    let gid: number | undefined;
    if (p.runAs) {
      user = lookupUser(p.runAs.user);
      if (!user) throw new Error(`cannot start: run-as user "${p.runAs.user}" does not exist on ${config.name}`);
      gid = user.gid;
      if (p.runAs.group) {
        gid = lookupGroup(p.runAs.group);
        if (gid === undefined) throw new Error(`cannot start: run-as group "${p.runAs.group}" does not exist on ${config.name}`);
      }
      if (process.getuid?.() !== 0 && user.uid !== process.getuid?.()) {
        throw new Error(`cannot start: running as "${p.runAs.user}" needs the agent to run as root`);
      }
    }
    const env = jobEnv(config.baseEnv, p, runTag(this.ctx.agentId, p.runId, p.attempt), user);
    const cwd = p.cwd ? resolve(env.HOME ?? '/', p.cwd) : (env.HOME ?? '/');
    try {
      if (!statSync(cwd).isDirectory()) throw new Error();
    } catch {
      throw new Error(`cannot start: working directory ${cwd} does not exist on ${config.name}`);
    }
    const r = p.run;
    const exe = 'command' in r
      ? resolveExecutable(r.command[0]!, cwd, env.PATH ?? '')
      : 'shell' in r ? '/bin/sh' : resolve(cwd, r.node);
    if (!exe) throw new Error(`cannot start: ${(r as { command: string[] }).command[0]} not found on PATH (${env.PATH})`);
    this.checkLists(exe);

    const ids = user ? { uid: user.uid, gid: gid ?? user.gid } : {};
    // detached: the job gets its own process group, so that timeout and kill reach all its processes.
    const common = { cwd, env, detached: true, ...ids };
    if ('node' in r) {
      this.child = fork(exe, r.args ?? [], { ...common, stdio: ['ignore', 'pipe', 'pipe', 'ipc'], execArgv: [], serialization: 'json' });
    } else {
      const [file, args] = 'command' in r ? [exe, r.command.slice(1)] : ['/bin/sh', ['-c', r.shell]];
      // The native spawner cannot switch user: run-as jobs keep child_process.
      this.child = this.ctx.nativeSpawn && !user
        ? spawnNative(file, args, env, cwd)
        : spawn(file, args, { ...common, stdio: ['ignore', 'pipe', 'pipe'] });
    }
    const child = this.child;
    child.on('error', (err) => {
      if (child.pid === undefined) this.finish({ error: `cannot start: ${err.message}` });
      else this.ctx.log.warn(`run ${this.runId}: ${err.message}`);
    });
    const nodeConfig = 'node' in r ? r.config : undefined;
    // The native spawner starts the process on its own thread: pid, pipes and start time come with 'spawn'.
    if (child.pid !== undefined) {
      try {
        return this.wire(child, nodeConfig);
      } catch (err) {
        discard(child); // start() fails the run: its process must not run on unwatched
        throw new Error(`cannot start: ${(err as Error).message}`);
      }
    }
    this.spawnPending = true;
    child.once('spawn', () => {
      this.spawnPending = false;
      if (this.finished) return discard(child); // given up while its start was pending (terminate)
      try {
        this.wire(child, nodeConfig);
      } catch (err) {
        // On the addon's callback an exception would end the agent: the run fails instead, and its process goes.
        discard(child);
        this.finish({ error: `cannot start: ${(err as Error).message}` });
      }
    });
  }

  private checkLists(exe: string): void {
    const { config } = this.ctx;
    if (!config.deny.length && !config.allow.length) return; // nothing to check: no realpath per run
    let real = exe;
    try {
      real = realpathSync(exe);
    } catch {
      /* checked as given; spawning will report a missing file */
    }
    const paths = real === exe ? [exe] : [exe, real];
    const denied = config.deny.find((_, i) => paths.some((x) => config.denyRe[i]!.test(x)));
    if (denied !== undefined) throw new Error(`refused: ${exe} matches the deny pattern "${denied}" of agent ${config.name}`);
    if (config.allow.length && !paths.some((x) => matchesAny(x, config.allowRe))) {
      throw new Error(`refused: ${exe} is not in the allow list of agent ${config.name} (${config.allow.join(', ')})`);
    }
  }

  /** The process exists (pid set): journal, `started`, output, exit. */
  private wire(child: JobChild, nodeConfig: unknown): void {
    if (child.pid === undefined) return;
    this.ctx.journal.writeProcess(this.runId, child.pid, child.startTicks ?? processStartTicks(child.pid));
    this.ctx.log.debug(`run ${this.runId}: pid ${child.pid} (${child instanceof ChildProcess ? 'child_process' : 'posix_spawn'})`);
    this.item({ kind: 'started', pid: child.pid });
    // Finish once the process exited and both pipes closed (not on 'close': it never fires for a forked
    // child whose IPC channel the agent disconnected).
    let open = 2;
    const maybeFinish = () => {
      if (open === 0 && this.exit) this.finish({});
    };
    const onData = (stream: 'stdout' | 'stderr', d: Buffer) => {
      this.output.write(stream, d); // copies what it keeps: `d` may be a reused read buffer (readOutput)
      if (!this.paused && this.ctx.backlogged()) this.pause();
    };
    if (child.readOutput) child.readOutput(onData);
    for (const stream of ['stdout', 'stderr'] as const) {
      child[stream]!.on('close', () => {
        open--;
        maybeFinish();
      });
      if (!child.readOutput) child[stream]!.on('data', (d: Buffer) => onData(stream, d));
    }
    this.flushTimer = setInterval(() => this.output.flush(), this.ctx.config.flushIntervalMs);
    if (child.send) {
      child.on('message', (m) => this.onScriptMessage(m));
      child.send({ type: 'config', config: nodeConfig ?? null, run: this.runInfo() }, (err) => {
        if (err) this.ctx.log.warn(`run ${this.runId}: could not send the configuration: ${err.message}`);
      });
    }
    child.on('exit', (code, signal) => {
      this.exit = { code, signal };
      // The job ends with its leader: whatever it left in its process group is ended too, so no orphan survives.
      if (this.groupAlive()) this.terminate();
      maybeFinish();
    });
    // Terminated (kill, drain) while its spawn was in flight: ended now that it has a process group.
    if (this.terminating) this.signalTerminate();
  }

  private runInfo() {
    const p = this.payload;
    return { id: p.runId, attempt: p.attempt, job: p.jobName, planDate: p.planDate, nominalTime: p.nominalAt === null ? null : new Date(p.nominalAt).toISOString() };
  }

  /** Node-script IPC (docs/agent.md): { progress }, { message }, { result }. */
  private onScriptMessage(m: unknown): void {
    if (!m || typeof m !== 'object') return;
    const msg = m as Record<string, unknown>;
    if ('result' in msg) {
      this.result = this.maskValue(msg.result);
      if (this.child?.connected) this.child.disconnect?.();
      return;
    }
    const stepKind = 'progress' in msg ? 'progress' : 'message' in msg ? 'message' : undefined;
    if (!stepKind || this.steps >= MAX_STEPS) return;
    const raw = msg[stepKind];
    const text = this.maskText(typeof raw === 'string' ? raw : JSON.stringify(raw) ?? '').slice(0, 4096);
    const data = msg.data === undefined ? undefined : this.maskValue(msg.data);
    this.item({ kind: 'step', step: ++this.steps, stepKind, text, ...(data !== undefined ? { data } : {}) });
  }

  private maskText(s: string): string {
    return this.masker.push(Buffer.from(s)).toString() + this.masker.end().toString();
  }

  private maskValue(v: unknown): unknown {
    const json = JSON.stringify(v);
    if (json === undefined || json.length > MAX_STEP_DATA) return undefined;
    try {
      return JSON.parse(this.maskText(json));
    } catch {
      return undefined;
    }
  }

  private pause(): void {
    this.paused = true;
    this.child?.stdout?.pause();
    this.child?.stderr?.pause();
    this.ctx.onRelief(() => {
      this.paused = false;
      this.child?.stdout?.resume();
      this.child?.stderr?.resume();
    });
  }

  private groupAlive(): boolean {
    if (!this.child?.pid) return false;
    try {
      process.kill(-this.child.pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  private signalGroup(sig: NodeJS.Signals): void {
    if (!this.child?.pid) return;
    try {
      process.kill(-this.child.pid, sig);
    } catch {
      /* already gone */
    }
  }

  /** SIGTERM to the whole process group, SIGKILL after the grace period (brief §3). */
  terminate(): void {
    if (this.terminating) return;
    // Accepted, not started yet (a microtask away): start() ends it instead. Or its spawn is in flight (the native
    // spawner's thread): wire() ends it once its pid is known. Or it could not start: its 'error' finishes it.
    this.terminating = true;
    if (this.child?.pid) return this.signalTerminate();
    if (!this.spawnPending) return;
    // An exec that hangs (a dead NFS mount) holds its spawner thread: the run does not wait for it past the grace
    // period. It ends without a process; one that still starts later is killed at once (the 'spawn' listener).
    const grace = this.payload.killGraceMs;
    setTimeout(() => {
      if (!this.spawnPending || this.finished) return;
      this.ctx.log.warn(`run ${this.runId}: its process has not started ${grace} ms after it was ${this.timedOut ? 'timed out' : 'terminated'}; the run ends without it`);
      this.finish({ error: `${this.timedOut ? 'timed out' : 'terminated'} before its process started (the spawn did not complete within the ${grace} ms grace period; a process that starts later is killed at once)` });
    }, grace).unref();
  }

  private signalTerminate(): void {
    this.signalGroup('SIGTERM');
    setTimeout(() => {
      if (this.groupAlive()) this.signalGroup('SIGKILL');
    }, this.payload.killGraceMs).unref();
  }

  /** Kill requested by the server. */
  kill(): void {
    this.ctx.log.info(`run ${this.runId}: kill requested by the server; terminating its process group`);
    this.terminate();
  }

  private finish(extra: { error?: string }): void {
    if (this.finished) return;
    this.finished = true;
    clearInterval(this.flushTimer);
    clearTimeout(this.timeoutTimer);
    this.output.end();
    const code = this.exit?.code ?? null;
    const seq = this.item({
      kind: 'finished',
      exitCode: code === null ? null : Math.max(0, Math.min(255, code)),
      signal: this.exit?.signal ?? null,
      timedOut: this.timedOut,
      ...(extra.error ? { error: extra.error } : {}),
      ...(this.result !== undefined ? { result: this.result } : {}),
    });
    // The journal entry goes only once the finished report is on disk: a crash before that finds the entry and
    // the report either on disk (recovery sees it and reports nothing more) or not (the run is reported lost).
    this.ctx.afterDurable(seq, () => this.ctx.journal.remove(this.runId, this.attempt));
    if (extra.error) this.ctx.log.warn(`run ${this.runId} (${this.payload.jobName}): ${extra.error}`);
    else this.ctx.log.info(`run ${this.runId} (${this.payload.jobName}) ended`, { exitCode: code, signal: this.exit?.signal ?? null, timedOut: this.timedOut });
    this.resolveDone();
  }
}

/** A process whose run has ended already (or failed to take it): its group killed, its pipes closed. */
function discard(child: JobChild): void {
  try {
    if (child.pid) process.kill(-child.pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  child.stdout?.destroy();
  child.stderr?.destroy();
}
