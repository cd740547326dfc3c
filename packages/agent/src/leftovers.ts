import { readdirSync, readFileSync } from 'node:fs';
import { RUN_TAG, runTag } from './env.js';
import { type JournalEntry, processStartTicks } from './journal.js';

/**
 * Ends what a previous agent process left running of the runs in its journal (brief §8: a run reported lost must
 * not go on running, it may be retried). Two ways, both at start:
 * - the process group of each entry's recorded process, when that process is still the same one (start time);
 * - every process whose environment carries one of the entries' run tags (BATCHALYZER_RUN_TAG, env.ts): this also
 *   finds a run whose pid never reached the journal (the agent was killed between the job's start and that write)
 *   and processes that left the run's group (setsid). A process that replaced its environment is not found so.
 * Returns how many processes were signalled.
 */
export function endLeftovers(entries: readonly JournalEntry[], agentId: string): number {
  let ended = 0;
  for (const e of entries) {
    // Only when the process is the same one (start time matches): a reused PID is someone else's.
    if (e.pid && e.startTicks !== undefined && processStartTicks(e.pid) === e.startTicks) {
      try {
        process.kill(-e.pid, 'SIGKILL');
        ended++;
      } catch {
        /* gone */
      }
    }
  }
  if (entries.length === 0 || process.platform !== 'linux') return ended;
  const tags = new Set(entries.map((e) => `${RUN_TAG}=${runTag(agentId, e.runId, e.attempt)}`));
  // Twice: a process the first pass missed because it was forked after the scan read its parent carries the tag too.
  for (let pass = 0; pass < 2; pass++) {
    for (const pid of taggedProcesses(tags)) {
      try {
        process.kill(pid, 'SIGKILL');
        ended++;
      } catch {
        /* gone meanwhile */
      }
    }
  }
  return ended;
}

/** Processes (other than this one) whose environment holds one of `entries` (`NAME=value`) exactly. */
export function taggedProcesses(entries: ReadonlySet<string>, proc = '/proc'): number[] {
  const found: number[] = [];
  let pids: string[];
  try {
    pids = readdirSync(proc).filter((f) => /^\d+$/.test(f));
  } catch {
    return found; // no procfs
  }
  for (const name of pids) {
    const pid = Number(name);
    if (pid === process.pid) continue;
    let env: string;
    try {
      env = readFileSync(`${proc}/${name}/environ`, 'latin1');
    } catch {
      continue; // gone, or another user's (EACCES): not this agent's job unless the agent could read it
    }
    if (!env.includes(RUN_TAG)) continue;
    if (env.split('\0').some((v) => entries.has(v))) found.push(pid);
  }
  return found;
}
