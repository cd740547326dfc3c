import type { RunRecord } from '@batchalyzer/store';
import type { ConnectedAgent } from '../link.js';
import type { EngineState } from './state.js';

/**
 * Reconciliation of the runs the store shows on agents with the agents' own lists (brief §8; docs/scheduling.md,
 * "Delivery"). Every period, the dispatched and running runs are compared with their connected agent's list
 * (hello and every heartbeat carry it: the runs the agent runs and those with reports still in its queue; a run
 * leaves it only once the server acknowledged its end, i.e. committed it). A run missing from it on two checks a
 * period apart (monotonic clock) is decided:
 * - dispatched and never accepted: the dispatch never reached the agent; the run waits again (same attempt);
 * - accepted or running: the agent had it but has neither the job nor a report of it any more. A kill -9 of the
 *   agent cannot do that (its journal and queue are written before it answers); a power loss of its host, a
 *   replaced data directory or a report the agent gave up on can. The run is lost (retried if the job allows): it
 *   may have started, so putting it back could run it twice unknowingly. This is what ends a run the server saw
 *   started after a power loss, so the agent does not sync its journal before it starts a job (docs/agent.md).
 * Periodic, not once after a reconnect: a restarted agent lists runs whose old reports it is still re-sending, and
 * drops them only once those are acknowledged. A list the agent cut at its limit (MAX_ACTIVE_RUNS) proves nothing. A dispatch younger than a period is left for later: its age is wall time (dispatchedAt is
 * stored), so after the clock stepped back (brief §4) an unconfirmed dispatch looks recent until the clock passes
 * its time again.
 */
export type Verdict = 'keep' | 'watch' | 'requeue' | 'lose';

export interface Sighting {
  /** Monotonic time (ms) of the first check that found the run missing. */
  at: number;
  attempt: number;
  /** The agent's list that did not have it (ConnectedAgent.listVersion). */
  listVersion: number;
}

/**
 * The decision for one run, from plain data (no I/O; Reconciler.sweep acts on it). The second sighting counts only
 * a period after the first and against a newer list from the agent: the same list seen twice says nothing new (a
 * paused connection, a heartbeat not yet read).
 */
export function judge(
  run: Pick<RunRecord, 'id' | 'state' | 'attempt' | 'dispatchedAt'>,
  agent: Pick<ConnectedAgent, 'activeRuns' | 'activeRunsCut' | 'listVersion'>,
  facts: { accepted: boolean; dispatching: boolean; seen: Sighting | undefined; now: number; mono: number; periodMs: number },
): Verdict {
  if (agent.activeRuns.has(run.id) || facts.dispatching || agent.activeRunsCut) return 'keep';
  if (run.state === 'dispatched' && (run.dispatchedAt === null || run.dispatchedAt > facts.now - facts.periodMs)) return 'keep';
  const seen = facts.seen?.attempt === run.attempt ? facts.seen : undefined;
  if (!seen || facts.mono - seen.at < facts.periodMs || agent.listVersion <= seen.listVersion) return 'watch';
  return run.state === 'running' || facts.accepted ? 'lose' : 'requeue';
}

/**
 * A first sighting, or the one to keep (replaced only for another attempt). It lasts as long as every check finds
 * the run missing: one that finds it listed (or cannot tell) clears it. No upper age: a sighting that started over
 * after N periods adopted the newest list, and with heartbeats slower than the checks the one newer list could keep
 * arriving just before each restart, so a dead run stayed.
 */
export function sighting(prev: Sighting | undefined, run: Pick<RunRecord, 'attempt'>, listVersion: number, mono: number): Sighting {
  return prev && prev.attempt === run.attempt ? prev : { at: mono, attempt: run.attempt, listVersion };
}

export interface ReconcilerDeps {
  state: EngineState;
  periodMs: number;
  now: () => number;
  agents: () => ConnectedAgent[];
  lose: (run: RunRecord, reason: string) => Promise<void>;
  requeue: (run: RunRecord, reason: string) => Promise<void>;
  /** A decision that could not be recorded (store error): the run is judged again from scratch. Without a run: the sweep failed. */
  failed: (err: unknown, run: RunRecord | undefined) => void;
}

export class Reconciler {
  /** Runs found missing, with when, which attempt and which list (cleared when seen again or decided). */
  private readonly seen = new Map<number, Sighting>();
  /** Dispatched runs whose agent confirmed the dispatch (`accepted`), by attempt: the agent may have started them. */
  private readonly accepted = new Map<number, number>();
  /** Runs whose dispatch request is still waiting for the agent's answer: not judged meanwhile. */
  private readonly inFlight = new Set<number>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly deps: ReconcilerDeps) {}

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** A dispatch frame is going out for the run. */
  dispatching(runId: number): void {
    this.accepted.delete(runId);
    this.seen.delete(runId);
    this.inFlight.add(runId);
  }

  /** Its answer (or time-out): `accepted` when the agent confirmed that attempt. */
  answered(run: RunRecord, accepted: boolean): void {
    this.inFlight.delete(run.id);
    const now = this.deps.state.runs.get(run.id);
    if (accepted && now?.state === 'dispatched' && now.attempt === run.attempt && now.agentName === run.agentName) this.accepted.set(run.id, run.attempt);
  }

  forget(runId: number): void {
    this.accepted.delete(runId);
    this.seen.delete(runId);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.sweep().catch((err) => this.deps.failed(err, undefined)).finally(() => this.schedule());
    }, this.deps.periodMs).unref();
  }

  async sweep(): Promise<void> {
    const { state, periodMs } = this.deps;
    const agents = new Map(this.deps.agents().map((a) => [a.name, a] as const));
    if (agents.size === 0) return;
    const now = this.deps.now();
    const mono = performance.now();
    const active: RunRecord[] = [];
    for (const ids of state.activeByJob.values()) for (const id of ids) active.push(state.runs.get(id)!);
    let n = 0;
    for (const r of active) {
      // 100,000 active runs take tens of milliseconds: the loop yields now and then (burst: loop lag ≤ 100 ms).
      if (++n % 2000 === 0) await new Promise((resolve) => setImmediate(resolve));
      if (this.stopped) return;
      const agent = r?.agentName ? agents.get(r.agentName) : undefined;
      // Changed while an earlier decision was committed (or while yielding): judged at the next check.
      if (!agent || state.runs.get(r.id) !== r || (r.state !== 'dispatched' && r.state !== 'running')) continue;
      const verdict = judge(r, agent, {
        accepted: this.accepted.get(r.id) === r.attempt, dispatching: this.inFlight.has(r.id), seen: this.seen.get(r.id), now, mono, periodMs,
      });
      if (verdict === 'keep') {
        this.seen.delete(r.id);
        // Listed by its agent while dispatched: the agent has it, whether its `accepted` came late (after the
        // request timed out) or was lost with a connection. It may start it: from now on it counts as accepted.
        if (r.state === 'dispatched' && agent.activeRuns.has(r.id)) this.accepted.set(r.id, r.attempt);
      } else if (verdict === 'watch') this.seen.set(r.id, sighting(this.seen.get(r.id), r, agent.listVersion, mono));
      else {
        try {
          if (verdict === 'lose') {
            await this.deps.lose(r, `agent ${agent.name} no longer has run ${r.id}: neither the job nor a report of it (host power loss, replaced agent data, or a report the agent gave up on); its result is unknown`);
          } else await this.deps.requeue(r, `agent ${agent.name} does not have run ${r.id}`);
        } catch (err) {
          this.deps.failed(err, r);
        }
        this.seen.delete(r.id);
      }
    }
  }
}
