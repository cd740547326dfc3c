import { describeEnd, type EndOutcome, outcomeOf, postsFor, retryAt } from '@batchalyzer/core';
import type { EndState, RunRecord } from '@batchalyzer/store';
import type { FinishReport, OutputReport, RunReports, StepReport } from '../link.js';
import type { Engine } from './engine.js';

/**
 * What agents report, recorded through the engine (brief §3, §6, §8). Every report is checked against the run
 * it names (the right agent, the right attempt, not ended yet) and committed before the promise resolves; the
 * link acknowledges the agent only then. Duplicates change nothing: ending is idempotent in the store.
 */
export function engineReports(engine: Engine): RunReports {
  const { store, events, logger, clock } = engine;

  const ownRun = (agent: string, runId: number, attempt?: number): RunRecord | undefined => {
    const run = engine.state.runs.get(runId);
    if (!run || run.agentName !== agent || (attempt !== undefined && run.attempt !== attempt)) return undefined;
    return run;
  };

  const end = async (run: RunRecord, state: EndState, at: number, details: { exitCode?: number | null; signal?: string | null; reason?: string | null; result?: unknown }) => {
    const outcome: EndOutcome | 'lost' = state === 'cancelled' || state === 'skipped' ? 'failed' : (state as EndOutcome | 'lost');
    const post = state === 'cancelled' ? [] : postsFor(run.spec, outcome).map((name) => ({ name, planDate: run.planDate }));
    const r = await store.finishRun({ runId: run.id, state, at, actor: run.agentName ? `agent:${run.agentName}` : 'scheduler', post, ...details });
    engine.forget(run.id);
    if (!r.changed) return;
    for (const c of r.posted) {
      engine.state.addCondition(c.name, c.planDate);
      events.emit('condition:posted', { name: c.name, planDate: c.planDate, actor: `run:${run.id}` });
    }
    events.emit('run:ended', { runId: run.id, jobName: run.jobName, planDate: run.planDate, state, agent: run.agentName });
    await raiseOrResolve(run, state, details.reason ?? null, at);
    await engine.followAfter(run, at);
    engine.poke();
  };

  const raiseOrResolve = async (run: RunRecord, state: EndState, reason: string | null, at: number) => {
    const key = `job:${run.jobName}:failed`;
    if (state === 'succeeded') {
      const m = await store.resolveMessage(key, 'scheduler', at, `run ${run.id} succeeded`);
      if (m) events.emit('message:resolved', { id: m.id, key });
      return;
    }
    if (state === 'cancelled' || state === 'skipped') return;
    const severity = state === 'warning' ? 'warning' : 'critical';
    const text = `job ${run.jobName} ${state === 'warning' ? 'ended with a warning' : state} (run ${run.id}, plan date ${run.planDate})${reason ? `: ${reason}` : ''}`;
    const { message, created } = await store.raiseMessage({
      key: state === 'warning' ? `job:${run.jobName}:warning` : key, severity, source: 'job', text, at, actor: 'scheduler',
      jobName: run.jobName, sourceRef: `run:${run.id}`, agentName: run.agentName,
    });
    events.emit('message:raised', { id: message.id, key: message.key, severity, created });
  };

  /** Failed attempts wait for another attempt while retries remain; only the last failure ends the run. */
  const failOrRetry = async (run: RunRecord, state: EndState, at: number, details: { exitCode?: number | null; signal?: string | null; reason: string; result?: unknown }) => {
    const killedBy = engine.killRequested.get(run.id);
    if (killedBy !== undefined) details = { ...details, reason: `killed by ${killedBy} (${details.reason})` };
    const again = killedBy === undefined ? retryAt(run.spec, run.attempt, at) : null;
    if (again !== null && state !== 'succeeded' && state !== 'warning') {
      const back = await store.retryRun({ runId: run.id, at, dueAt: again, actor: 'scheduler', reason: details.reason, exitCode: details.exitCode ?? null, signal: details.signal ?? null });
      if (back) {
        engine.state.runs.set(back.id, back);
        engine.state.releaseHolds(back.id);
        events.emit('run:retrying', { runId: back.id, jobName: back.jobName, attempt: back.attempt, at: again });
        engine.poke();
        return;
      }
    }
    await end(run, state, at, details);
  };

  engine.onLost = async (runId, reason) => {
    const run = engine.state.runs.get(runId);
    if (!run || run.state === 'waiting') return;
    await failOrRetry(run, 'lost', clock.now(), { reason });
  };

  return {
    async started(agent, runId, attempt, at) {
      if (!ownRun(agent, runId, attempt)) return;
      if (await store.startRun(runId, at)) {
        // The store returns no row: the engine's copy, with the columns the start changed.
        const run = engine.state.runs.get(runId);
        if (run && run.state === 'dispatched' && run.attempt === attempt) engine.state.runs.set(runId, { ...run, state: 'running', startedAt: at });
        else {
          // Changed or gone while the commit ran (PostgreSQL awaits it; e.g. the agent was lost and the run retried
          // as the next attempt): the stored row decides, and only a run still running is tracked as such.
          const stored = await store.getRun(runId);
          if (stored?.state === 'running') engine.state.runs.set(runId, stored);
        }
        events.emit('run:started', { runId, agent });
      }
    },
    async output(agent, chunks: OutputReport[]) {
      const mine = chunks.filter((c) => ownRun(agent, c.runId) ?? false);
      await store.appendOutput(mine);
      for (const c of mine) events.emit('run:output', { runId: c.runId, stream: c.stream, bytes: c.data.length });
    },
    async truncated(agent, runId) {
      if (ownRun(agent, runId)) await store.markOutputTruncated(runId);
    },
    async steps(agent, steps: StepReport[]) {
      await store.appendRunSteps(steps.filter((s) => ownRun(agent, s.runId)));
    },
    async finished(agent, report: FinishReport) {
      const run = ownRun(agent, report.runId, report.attempt);
      if (!run) {
        logger.debug({ agent, runId: report.runId }, 'finish report for a run that is not active on this agent; ignored');
        return;
      }
      const outcome = outcomeOf(run.spec, report);
      const details = { exitCode: report.exitCode, signal: report.signal, reason: describeEnd(report), ...(report.result !== undefined ? { result: report.result } : {}) };
      await failOrRetry(run, outcome, report.at, details);
    },
    async lost(agent, runId, reason) {
      if (ownRun(agent, runId)) await engine.onLost(runId, reason);
    },
    holder(runId) {
      const run = engine.state.runs.get(runId);
      return run && run.state !== 'waiting' && run.agentName ? { agent: run.agentName, attempt: run.attempt } : undefined;
    },
  };
}
