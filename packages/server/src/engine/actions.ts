import { addDays, ConflictError, expandTarget, explain, NotFoundError, planDateOf, planDayBounds, ValidationError, type WaitReason } from '@batchalyzer/core';
import type { NewRun, RunRecord } from '@batchalyzer/store';
import type { Engine } from './engine.js';

/**
 * Operator actions (brief §4, §6): every one is attributed to an actor, committed through the store, and
 * followed by a decision pass. The API and CLI call these; they never write runs themselves.
 */
export class OperatorActions {
  constructor(private readonly engine: Engine) {}

  private async active(runId: number): Promise<RunRecord> {
    const run = this.engine.state.runs.get(runId);
    if (run) return run;
    const stored = await this.engine.store.getRun(runId);
    if (!stored) throw new NotFoundError('run', runId);
    throw new ConflictError(`run ${runId} has already ended (${stored.state}); re-run it instead`, { runId, state: stored.state });
  }

  async hold(runId: number, actor: string): Promise<RunRecord> {
    return this.setHeld(runId, true, actor);
  }

  async release(runId: number, actor: string): Promise<RunRecord> {
    return this.setHeld(runId, false, actor);
  }

  private async setHeld(runId: number, held: boolean, actor: string): Promise<RunRecord> {
    const run = await this.active(runId);
    if (run.state !== 'waiting') throw new ConflictError(`run ${runId} is ${run.state}; only waiting runs can be held or released`, { runId });
    const updated = await this.engine.store.setRunHeld(runId, held, actor, this.engine.clock.now());
    if (!updated) throw new ConflictError(`run ${runId} is no longer waiting`, { runId });
    this.engine.state.runs.set(runId, updated);
    this.engine.events.emit('run:held', { runId, held });
    this.engine.poke();
    return updated;
  }

  /** Runs a job now, outside its schedule; the schedule is not shifted (brief §4). */
  async runNow(jobName: string, actor: string): Promise<RunRecord[]> {
    const now = this.engine.clock.now();
    return this.create(jobName, planDateOf(now, this.engine.calendar), now, now, 'manual', actor);
  }

  /** Orders a job into a plan date: past dates run now; future dates wait for that day to begin. */
  async order(jobName: string, planDate: string, actor: string): Promise<RunRecord[]> {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(planDate) || Number.isNaN(Date.parse(planDate)) || addDays(planDate, 0) !== planDate) {
      throw new ValidationError('the order', [{ path: 'planDate', message: `"${planDate}" is not a date; write YYYY-MM-DD` }]);
    }
    const now = this.engine.clock.now();
    const { start } = planDayBounds(planDate, this.engine.calendar);
    const occ = this.engine.occurrencesOf(jobName);
    const nominal = occ && occ.kind !== 'after' ? occ.next(start - 1) : start;
    const dueAt = Math.max(now, start);
    return this.create(jobName, planDate, nominal ?? start, dueAt, 'order', actor);
  }

  async rerun(runId: number, actor: string): Promise<RunRecord[]> {
    const old = await this.engine.store.getRun(runId);
    if (!old) throw new NotFoundError('run', runId);
    if (['waiting', 'dispatched', 'running'].includes(old.state)) throw new ConflictError(`run ${runId} has not ended yet (${old.state}); wait for it or kill it first`, { runId });
    const spec = this.engine.defs.jobs[old.jobName] ?? old.spec;
    const run: NewRun = {
      jobName: old.jobName, planDate: old.planDate, nominalAt: old.nominalAt, dueAt: this.engine.clock.now(), origin: 'rerun',
      priority: spec.priority ?? 0, spec, targetAgent: old.targetAgent, rerunOf: old.id,
    };
    return this.commit([run], actor);
  }

  private async create(jobName: string, planDate: string, nominalAt: number, dueAt: number, origin: 'manual' | 'order', actor: string): Promise<RunRecord[]> {
    const spec = this.engine.defs.jobs[jobName];
    if (!spec) throw new NotFoundError('job', jobName, 'check the name with `batchalyzer export`');
    const targets = spec.on.mode === 'all' ? expandTarget(spec.on, this.engine.defs.groups) : [null];
    return this.commit(targets.map((targetAgent) => ({ jobName, planDate, nominalAt, dueAt, origin, priority: spec.priority ?? 0, spec, targetAgent })), actor);
  }

  private async commit(runs: NewRun[], actor: string): Promise<RunRecord[]> {
    const created = await this.engine.store.createRuns(runs, actor, this.engine.clock.now());
    for (const r of created) this.engine.track(r);
    this.engine.poke();
    return created;
  }

  /** Cancels a waiting run; it ends `cancelled` and posts nothing. */
  async cancel(runId: number, actor: string): Promise<RunRecord> {
    const run = await this.active(runId);
    if (run.state !== 'waiting') throw new ConflictError(`run ${runId} is ${run.state}; kill it instead of cancelling`, { runId });
    // Only while it still waits: a dispatch may have claimed it since the check above (the store decides).
    const r = await this.engine.store.finishRun({ runId, state: 'cancelled', at: this.engine.clock.now(), actor, reason: `cancelled by ${actor}`, onlyFrom: ['waiting'] });
    if (!r.changed) throw new ConflictError(`run ${runId} is ${r.run.state} now; kill it instead of cancelling`, { runId, state: r.run.state });
    this.engine.forget(runId);
    this.engine.events.emit('run:ended', { runId, jobName: run.jobName, planDate: run.planDate, state: 'cancelled', agent: null });
    await this.engine.followAfter(r.run, r.run.endedAt ?? this.engine.clock.now());
    this.engine.poke();
    return r.run;
  }

  /** Kills a dispatched or running run: the agent terminates its process group and reports the end. */
  async kill(runId: number, actor: string): Promise<void> {
    const run = await this.active(runId);
    if (run.state === 'waiting') throw new ConflictError(`run ${runId} is waiting; cancel it instead of killing`, { runId });
    this.engine.logger.info({ runId, actor, agent: run.agentName }, 'kill requested');
    // A killed run ends failed without retrying: the operator wanted it stopped.
    this.engine.killRequested.set(runId, actor);
    await this.engine.killOnAgent(run.agentName!, runId);
  }

  async postCondition(name: string, planDate: string, actor: string): Promise<boolean> {
    const added = await this.engine.store.postCondition({ name, planDate, actor, at: this.engine.clock.now() });
    if (added) {
      this.engine.state.addCondition(name, planDate);
      this.engine.events.emit('condition:posted', { name, planDate, actor });
      this.engine.poke();
    }
    return added;
  }

  async removeCondition(name: string, planDate: string, actor: string): Promise<boolean> {
    const removed = await this.engine.store.removeCondition({ name, planDate, actor, at: this.engine.clock.now() });
    if (removed) {
      this.engine.state.removeCondition(name, planDate);
      this.engine.events.emit('condition:removed', { name, planDate, actor });
    }
    return removed;
  }

  /** "Why is this not running?" (brief §11, §13): every reason, with who holds what and which agents were considered. */
  async why(runId: number): Promise<{ run: RunRecord; reasons: WaitReason[] }> {
    const run = this.engine.state.runs.get(runId) ?? (await this.engine.store.getRun(runId));
    if (!run) throw new NotFoundError('run', runId);
    if (run.state !== 'waiting') return { run, reasons: [] };
    const e = this.engine;
    const snapshot = e.state.snapshot(e.clock.now(), e.defs, e.connectedAgents(), e.registeredAgents(), e.options.agingMs);
    return { run, reasons: explain(runId, snapshot) };
  }
}
