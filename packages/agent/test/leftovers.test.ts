import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateAgentKey } from '@batchalyzer/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent.js';
import { compileAgentConfig } from '../src/config.js';
import { RUN_TAG, runTag } from '../src/env.js';
import { bootTicksNow, type JournalEntry, processStartTicks } from '../src/journal.js';
import { endLeftovers, taggedProcesses } from '../src/leftovers.js';
import { createLog } from '../src/log.js';

// What a job leaves behind when the agent dies before the job's pid reaches the journal: processes carrying the
// run's tag in their environment and nothing else that ties them to the run.
const started: ChildProcess[] = [];
const strays: number[] = [];
afterEach(() => {
  // Each test process leads its own group (detached): the group takes its children too.
  for (const c of started.splice(0)) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const pid of strays.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

function tagged(tag: string, script = 'exec sleep 300'): ChildProcess {
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
const comm = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
};
const firstLine = (c: ChildProcess) => new Promise<number>((r) => c.stdout!.once('data', (d: Buffer) => r(Number(d.toString().trim()))));
const entry = (runId: number, attempt: number, extra: Partial<JournalEntry> = {}): JournalEntry => ({ runId, attempt, acceptedAt: Date.now(), acceptedTicks: bootTicksNow(), ...extra });
const all = () => true;

describe.runIf(process.platform === 'linux')('leftovers of runs whose pid never reached the journal', () => {
  it('ends every process tagged with such a run of this agent, also one that left the group, and nothing else', async () => {
    const q = randomUUID();
    const mine = tagged(runTag(q, 7, 1));
    // A child that made its own session (out of the run's process group) and reports its pid.
    const parent = tagged(runTag(q, 9, 2), 'setsid sleep 300 & echo $!; wait');
    const escaped = await firstLine(parent);
    strays.push(escaped);
    const otherRun = tagged(runTag(q, 8, 1));
    const otherAttempt = tagged(runTag(q, 7, 2));
    const otherAgent = tagged(runTag(randomUUID(), 7, 1));
    const prefix = tagged(`${runTag(q, 7, 1)}0`); // a longer tag that starts with a listed one
    // A run whose process was recorded: only its group is the agent's to end; a daemon it started with setsid (a
    // deploy job restarting a service) is not, as with a timeout or a kill from the server.
    const recorded = tagged(runTag(q, 10, 1), 'setsid sleep 300 & echo $!; wait');
    const daemon = await firstLine(recorded);
    strays.push(daemon);
    // A run whose finished report is on disk: nothing of it is ended by its tag.
    const reported = tagged(runTag(q, 11, 1));
    const bystanders = [otherRun, otherAttempt, otherAgent, prefix, reported];
    await until('the processes exist', () => [mine, parent, recorded, ...bystanders].every((c) => c.pid !== undefined && alive(c.pid)) && alive(escaped) && alive(daemon));

    const ended = endLeftovers([
      entry(7, 1), entry(9, 2), entry(11, 1),
      entry(10, 1, { pid: recorded.pid!, startTicks: processStartTicks(recorded.pid!)! }),
    ], (e) => e.runId !== 11, q);

    expect(await exited(mine)).toBe('SIGKILL');
    expect(await exited(parent)).toBe('SIGKILL');
    expect(await exited(recorded)).toBe('SIGKILL'); // its group
    await until('the escaped child is gone', () => !alive(escaped));
    expect(ended).toEqual(expect.arrayContaining([-recorded.pid!, mine.pid!, parent.pid!, escaped]));
    expect(alive(daemon)).toBe(true);
    for (const c of bystanders) expect(alive(c.pid!)).toBe(true);
  });

  it('ends a run that keeps forking: each process is stopped when found and its group ended (none forks past the scan)', async () => {
    const q = randomUUID();
    // Few rounds, short ones: on some hosts (a VM whose init does not reap) every killed child stays a zombie.
    for (let round = 1; round <= 3; round++) {
      const tag = runTag(q, 5, round);
      // Every few milliseconds a new background pair, each in a session of its own (out of reach of a group kill).
      const loop = tagged(tag, "while :; do setsid sh -c 'sleep 0.002; sleep 300 & sleep 0.002; sleep 300 & wait' & sleep 0.005; done");
      await new Promise((r) => setTimeout(r, 150));
      endLeftovers([entry(5, round)], all, q);
      expect(await exited(loop)).toBe('SIGKILL');
      await new Promise((r) => setTimeout(r, 300));
      expect(taggedProcesses(new Set([`${RUN_TAG}=${tag}`]))).toEqual([]);
    }
  });

  it('a run whose recorded process exited: what it left in its group is ended if it carries the run\'s tag', async () => {
    const q = randomUUID();
    // The leader prints its worker's pid and exits; the worker stays in the leader's group.
    const leader = tagged(runTag(q, 12, 1), 'sleep 300 & echo $!');
    const worker = await firstLine(leader);
    strays.push(worker);
    await exited(leader);
    // The same with a group whose members carry another run's tag: a group id seen again, not this run's.
    const other = tagged(runTag(q, 99, 1), 'sleep 300 & echo $!');
    const otherWorker = await firstLine(other);
    strays.push(otherWorker);
    await exited(other);
    await until('the workers run', () => alive(worker) && alive(otherWorker));

    const ended = endLeftovers([entry(12, 1, { pid: leader.pid!, startTicks: 1 }), entry(13, 1, { pid: other.pid!, startTicks: 1 })], all, q);

    await until('the worker is gone', () => !alive(worker));
    expect(ended).toEqual([-leader.pid!]);
    expect(alive(otherWorker)).toBe(true);
  });

  it('is not misled by the wall clock: acceptance is kept in boot ticks; a run from before a reboot is skipped', async () => {
    const q = randomUUID();
    const job = tagged(runTag(q, 14, 1));
    const old = tagged(runTag(q, 15, 1));
    await until('the jobs run', () => [job, old].every((c) => c.pid !== undefined && alive(c.pid)));
    // Accepted an hour "later" by a wall clock that was stepped back since: the boot ticks still say now.
    const ended = endLeftovers([
      entry(14, 1, { acceptedAt: Date.now() + 3_600_000 }),
      entry(15, 1, { bootId: 'a-previous-boot' }),
    ], all, q);
    expect(await exited(job)).toBe('SIGKILL');
    expect(ended).toEqual([job.pid]);
    expect(alive(old.pid!)).toBe(true);
  });

  it('reads only processes started after the run was accepted (less a margin)', async () => {
    const q = randomUUID();
    const c = tagged(runTag(q, 3, 1));
    // Past its exec (`sh` becomes `sleep`): during an exec a process shows no environment for a moment.
    await until('the process runs sleep', () => c.pid !== undefined && comm(c.pid) === 'sleep');
    const tags = new Set([`${RUN_TAG}=${runTag(q, 3, 1)}`]);
    await until('it is found', () => taggedProcesses(tags).includes(c.pid!));
    expect(taggedProcesses(tags, processStartTicks(c.pid!)!)).toEqual([c.pid]);
    expect(taggedProcesses(tags, processStartTicks(c.pid!)! + 1)).toEqual([]);
    expect(taggedProcesses(tags, 0, new Map([[c.pid!, 0]]))).toEqual([]); // already stopped: not read again
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
    await until('the job runs', () => job.pid !== undefined && alive(job.pid) && bystander.pid !== undefined && alive(bystander.pid));

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
