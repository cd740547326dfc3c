import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateAgentKey } from '@batchalyzer/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent.js';
import { compileAgentConfig } from '../src/config.js';
import { RUN_TAG, runTag } from '../src/env.js';
import { endLeftovers } from '../src/leftovers.js';
import { createLog } from '../src/log.js';

// What a job leaves behind when the agent dies before the job's pid reaches the journal: processes carrying the
// run's tag in their environment and nothing else that ties them to the run.
const started: ChildProcess[] = [];
afterEach(() => {
  for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function tagged(tag: string, script = 'sleep 300'): ChildProcess {
  const c = spawn('sh', ['-c', script], { env: { PATH: process.env.PATH, [RUN_TAG]: tag }, stdio: ['ignore', 'pipe', 'ignore'], detached: true });
  started.push(c);
  return c;
}

/** The signal that ended `c`, or 'still running' after 10 s. */
const exited = (c: ChildProcess) => new Promise<string | null>((r) => {
  if (c.exitCode !== null || c.signalCode !== null) return r(c.signalCode);
  const t = setTimeout(() => r('still running'), 10_000);
  c.once('exit', (_code, sig) => (clearTimeout(t), r(sig)));
});
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const until = async (what: string, ok: () => boolean) => {
  for (const t = performance.now(); !ok(); await new Promise((r) => setTimeout(r, 10))) if (performance.now() - t > 10_000) throw new Error(`timed out: ${what}`);
};

describe.runIf(process.platform === 'linux')('leftovers of runs whose pid never reached the journal', () => {
  it('ends every process tagged with a journal entry of this agent, also one that left the group, and nothing else', async () => {
    const mine = tagged(runTag('q1', 7, 1));
    // A child that made its own session (out of the run's process group) and reports its pid.
    const parent = tagged(runTag('q1', 9, 2), 'setsid sleep 300 & echo $!; wait');
    const escapedPid = await new Promise<number>((r) => parent.stdout!.once('data', (d: Buffer) => r(Number(d.toString().trim()))));
    const otherRun = tagged(runTag('q1', 8, 1));
    const otherAttempt = tagged(runTag('q1', 7, 2));
    const otherAgent = tagged(runTag('q2', 7, 1));
    const prefix = tagged(`${runTag('q1', 7, 1)}0`); // a longer tag that starts with a listed one
    await until('the processes exist', () => [mine, parent, otherRun, otherAttempt, otherAgent, prefix].every((c) => c.pid !== undefined && alive(c.pid)) && alive(escapedPid));

    const n = endLeftovers([{ runId: 7, attempt: 1, acceptedAt: 0 }, { runId: 9, attempt: 2, acceptedAt: 0 }], 'q1');

    expect(await exited(mine)).toBe('SIGKILL');
    expect(await exited(parent)).toBe('SIGKILL');
    await until('the escaped child is gone', () => !alive(escapedPid));
    expect(n).toBeGreaterThanOrEqual(3);
    for (const c of [otherRun, otherAttempt, otherAgent, prefix]) expect(alive(c.pid!)).toBe(true);
  });

  it('an agent that restarts after a kill -9 ends the processes of a run it had accepted but not recorded a pid for', async () => {
    const data = mkdtempSync(join(tmpdir(), 'bz-leftover-'));
    const config = compileAgentConfig({ flags: { name: 'a1', server: ['http://127.0.0.1:1'], data }, env: { BATCHALYZER_AGENT_KEY: generateAgentKey().key }, cwd: data });
    // The previous agent process: it accepted run 41 (journal entry, no pid yet) and died.
    const before = new Agent(config, createLog('silent'));
    const agentId = before.queue.queueId;
    before.journal.write({ runId: 41, attempt: 3, acceptedAt: Date.now() });
    before.stop();
    const job = tagged(runTag(agentId, 41, 3), 'sleep 300 & wait');
    const bystander = tagged(runTag(agentId, 42, 1));
    await until('the job runs', () => job.pid !== undefined && alive(job.pid) && bystander.pid !== undefined);

    const after = new Agent(config, createLog('silent'));
    try {
      after.start();
      expect(await exited(job)).toBe('SIGKILL');
      expect(alive(bystander.pid!)).toBe(true);
      expect([...after.queue.unackedItems()].map((i) => [i.kind, i.runId, i.attempt])).toEqual([['lost', 41, 3]]);
    } finally {
      after.stop();
    }
  });
});
