import { arch, cpus, hostname, loadavg, platform, release, totalmem, uptime } from 'node:os';
import { join } from 'node:path';
import { type DispatchPayloadMessage, type HostFacts, MAX_ACTIVE_RUNS, recycleOutputBuffer } from '@batchalyzer/protocol';
import type { AgentConfig } from './config.js';
import { JobRun } from './job.js';
import { RunJournal } from './journal.js';
import { endLeftovers } from './leftovers.js';
import { ServerLink } from './link.js';
import type { Log } from './log.js';
import { type AgentItem, DiskQueue } from './queue.js';
import { resolveSpawner } from './spawner.js';
import { AGENT_VERSION } from './version.js';

/** Full output chunks remembered for reuse at most (Agent.rememberRecyclable): 32 MiB of 512 KiB chunks, 4 MiB of protocol 1's. */
const RECYCLE_WINDOW = 64;
/** Above this many bytes not yet written to the queue's segment, job output pipes pause. */
const BACKLOG_BYTES = 4 * 1024 * 1024;

/**
 * The agent (brief §8): owns the disk queue, the running journal, the jobs and the link to the server.
 * Lifecycle: start() recovers what a previous process left (queued items are re-sent; runs in the journal are
 * reported lost), then connects; drain() stops taking work, waits for jobs, flushes the queue.
 */
export class Agent {
  readonly queue: DiskQueue;
  readonly journal: RunJournal;
  readonly link: ServerLink;
  private readonly runs = new Map<number, JobRun>();
  private draining = false;
  private reliefWaiters: (() => void)[] = [];
  private readonly spawner: { native: boolean; note: string; warn: boolean };

  constructor(readonly config: AgentConfig, readonly log: Log) {
    this.spawner = resolveSpawner(config.spawner);
    // Protocol 3 sends before the fsync, so the queue's sync rounds can be spaced (DiskQueue.open).
    this.queue = DiskQueue.open(join(config.dataDir, 'queue'), config.queueMemoryBytes, { syncGapMs: config.protocolVersion >= 3 ? 5 : 0 });
    this.journal = new RunJournal(join(config.dataDir, 'running'));
    // The backlog is what is not yet written (the page cache takes it); the fsync runs beside the writes and does
    // not hold the pipes (flush() writes and syncs at once and reports only 'durable').
    const relieve = () => {
      if (this.queue.pendingBytes < BACKLOG_BYTES / 2) for (const w of this.reliefWaiters.splice(0)) w();
    };
    this.queue.on('written', relieve);
    this.queue.on('acked', (acked: number) => this.recycle(acked));
    this.queue.on('durable', relieve);
    this.link = new ServerLink(config, this.queue, {
      hello: () => ({
        protocol: config.protocolVersion,
        agent: config.name,
        version: AGENT_VERSION,
        facts: hostFacts(),
        capabilities: config.accept,
        queueId: this.queue.queueId,
        activeRuns: this.activeRuns(),
        draining: this.draining,
      }),
      dispatch: (p) => this.accept(p),
      kill: (runId) => {
        const run = this.runs.get(runId);
        run?.kill();
        return run !== undefined;
      },
      activeRuns: () => this.activeRuns(),
    }, log);
  }

  /**
   * Full output chunks whose buffer goes back to allocOutputBuffer once acknowledged, in sequence order. A buffer is
   * reused only when nothing can read it any more: acknowledged (so no longer queued or sent again), not in a write
   * the thread pool may still be doing (flush() can make a batch durable while its write runs), and no frame over it
   * still in ws. Otherwise it is left to the garbage collector, as every buffer was before.
   */
  private recyclable: { seq: number; data: Buffer }[] = [];

  /**
   * Remembers a full chunk for reuse. Only the newest RECYCLE_WINDOW unacknowledged ones are kept: while the server
   * acknowledges nothing (down, or its store failing) the queue lets older bytes go to disk only, and this list must
   * not keep them alive (an agent streaming 600 MB to a dead server reached 675 MB of RSS).
   */
  private rememberRecyclable(seq: number, data: Buffer): void {
    this.recyclable.push({ seq, data });
    if (this.recyclable.length > RECYCLE_WINDOW) this.recyclable.shift(); // the list is short: shift is cheap
  }

  private recycle(acked: number): void {
    const list = this.recyclable;
    while (list.length && list[0]!.seq <= acked) {
      const { seq, data } = list.shift()!;
      if (!this.queue.writing(seq) && !this.link.sending(data)) recycleOutputBuffer(data, this.config.chunkBytes);
    }
  }

  start(): void {
    if (this.spawner.warn) this.log.warn(this.spawner.note);
    else this.log.info(this.spawner.note);
    this.recover();
    this.link.start();
  }

  /** Runs that are executing or whose reports are still queued: the server must not think them lost. */
  activeRuns(): number[] {
    const ids = this.queue.unackedRuns();
    for (const id of this.runs.keys()) ids.add(id);
    return [...ids].slice(0, MAX_ACTIVE_RUNS);
  }

  get runningCount(): number {
    return this.runs.size;
  }

  /** A previous agent process died with runs in its journal: report them lost and end their leftovers. */
  private recover(): void {
    const finished = new Set<string>();
    for (const item of this.queue.unackedItems()) if (item.kind === 'finished' || item.kind === 'lost') finished.add(`${item.runId}:${item.attempt}`);
    const entries = this.journal.list();
    for (const e of entries) {
      if (!finished.has(`${e.runId}:${e.attempt}`)) {
        this.queue.append({ kind: 'lost', runId: e.runId, attempt: e.attempt, at: Date.now(), reason: `agent ${this.config.name} restarted while run ${e.runId} was running; its result is unknown` });
        this.log.warn(`run ${e.runId} was running when the agent stopped; reporting it lost`);
      }
    }
    const ended = endLeftovers(entries, (e) => !finished.has(`${e.runId}:${e.attempt}`), this.queue.queueId);
    if (ended.length > 0) this.log.warn(`ended what runs of the previous agent process left running (SIGKILL to ${ended.map((p) => (p < 0 ? `group ${-p}` : `pid ${p}`)).join(', ')})`);
    this.queue.flush();
    this.journal.clear();
    if (this.queue.length) this.log.info(`${this.queue.length} queued report(s) from before the restart will be re-sent`);
  }

  private accept(p: DispatchPayloadMessage): string | null {
    const existing = this.runs.get(p.runId);
    if (existing && existing.attempt === p.attempt) return null; // a repeated dispatch (lost accept): same run
    if (this.draining) return `agent ${this.config.name} is draining and takes no new work`;
    if (existing) return `agent ${this.config.name} is still running attempt ${existing.attempt} of run ${p.runId}`;
    const run = new JobRun(p, {
      config: this.config,
      log: this.log,
      journal: this.journal,
      agentId: this.queue.queueId,
      nativeSpawn: this.spawner.native,
      emit: (item: AgentItem) => {
        const seq = this.queue.append(item);
        if (item.kind === 'output' && item.data.length === this.config.chunkBytes) this.rememberRecyclable(seq, item.data);
        return seq;
      },
      afterDurable: (seq, cb) => this.queue.onDurable(seq, cb),
      backlogged: () => this.queue.pendingBytes > BACKLOG_BYTES,
      onRelief: (cb) => this.reliefWaiters.push(cb),
    });
    this.runs.set(p.runId, run);
    run.done.then(() => this.runs.delete(p.runId));
    this.log.info(`run ${p.runId} (${p.jobName}, attempt ${p.attempt}) accepted`);
    // Recorded in the journal before the accept frame is sent (a kill -9 after it finds the run there and reports
    // it lost); started just after that frame (a microtask), so that the server knows the run before its reports.
    let journaled: Error | null = null;
    try {
      this.journal.write({ runId: p.runId, attempt: p.attempt, acceptedAt: Date.now() });
    } catch (err) {
      journaled = err as Error;
    }
    queueMicrotask(() => {
      if (journaled) run.fail(`cannot start: the agent could not record the run in its journal: ${journaled.message}`);
      else run.start();
    });
    return null;
  }

  /**
   * SIGTERM (brief §8): announce draining, take no new work, wait for running jobs up to the drain timeout
   * (then terminate them), wait for the queue to be acknowledged (bounded), stop. The queue stays on disk.
   */
  async drain(): Promise<void> {
    this.draining = true;
    this.link.send({ type: 'draining' });
    this.log.info(`draining: ${this.runs.size} running job(s), waiting up to ${this.config.drainTimeoutMs} ms`);
    const all = () => Promise.all([...this.runs.values()].map((r) => r.done));
    const timedOut = await Promise.race([all().then(() => false), delay(this.config.drainTimeoutMs).then(() => true)]);
    if (timedOut) {
      this.log.warn(`drain timeout: terminating ${this.runs.size} job(s)`);
      for (const r of this.runs.values()) r.terminate();
      await Promise.race([all(), delay(15_000)]);
    }
    this.queue.flush();
    if (this.queue.length > 0 && this.link.connected) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 10_000);
        const check = () => {
          if (this.queue.length === 0) {
            clearTimeout(t);
            this.queue.off('acked', check);
            resolve();
          }
        };
        this.queue.on('acked', check);
        check();
      });
    }
    if (this.queue.length) this.log.warn(`${this.queue.length} report(s) not yet acknowledged stay queued on disk`);
    this.stop();
  }

  stop(): void {
    this.link.stop();
    this.queue.close();
    this.journal.close();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

export function hostFacts(): HostFacts {
  return {
    hostname: hostname(),
    platform: platform(),
    arch: arch(),
    release: release(),
    cpus: cpus().length,
    memoryBytes: totalmem(),
    bootTime: Math.round(Date.now() - uptime() * 1000),
    load1: loadavg()[0] ?? 0,
    node: process.versions.node,
    pid: process.pid,
  };
}
