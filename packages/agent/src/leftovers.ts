import { readdirSync, readFileSync } from 'node:fs';
import { uptime } from 'node:os';
import { RUN_TAG, runTag } from './env.js';
import { type JournalEntry, processStartTicks } from './journal.js';

/** Linux's USER_HZ, the unit of /proc/PID/stat's start time, on every architecture Node runs on. */
const TICKS_PER_SECOND = 100;
/** Processes that started this long before a run was accepted are not read (a stepped clock, rounding). */
const START_MARGIN_MS = 60_000;
/** Scans at most: a run that forks faster than it can be stopped is ended with what was found by then. */
const MAX_PASSES = 20;

/**
 * Ends what a previous agent process left running of the runs in its journal (brief §8: a run reported lost must
 * not go on running, it may be retried), at start:
 * - a run whose process was recorded: its process group, when that process is still the same one (start time).
 *   Processes that left the group (a daemon a deploy job restarted with setsid) are left alone, as a timeout or a
 *   kill from the server leaves them.
 * - a run whose pid never reached the journal (the agent was killed in the milliseconds between the job's start and
 *   that write; `unreported` entries only, not finished ones): every process whose environment carries the run's
 *   BATCHALYZER_RUN_TAG (env.ts). Each is stopped (SIGSTOP: a stopped process cannot fork) as soon as it is found and
 *   the scan repeats until it finds nothing new; then all of them, and the groups they lead, get SIGKILL. Only
 *   processes started after the earliest such run was accepted are read: reading another process's environment
 *   takes its memory map's lock, which a process stuck in a page fault (hung NFS) holds.
 * Returns the processes and groups signalled with SIGKILL.
 */
export function endLeftovers(entries: readonly JournalEntry[], unreported: (e: JournalEntry) => boolean, agentId: string): number[] {
  const ended: number[] = [];
  for (const e of entries) {
    if (e.pid && e.startTicks !== undefined && processStartTicks(e.pid) === e.startTicks) {
      try {
        process.kill(-e.pid, 'SIGKILL');
        ended.push(-e.pid);
      } catch {
        /* gone */
      }
    }
  }
  const untracked = entries.filter((e) => e.pid === undefined && unreported(e));
  if (untracked.length === 0 || process.platform !== 'linux') return ended;
  const tags = new Set(untracked.map((e) => `${RUN_TAG}=${runTag(agentId, e.runId, e.attempt)}`));
  const bootMs = Date.now() - uptime() * 1000;
  const since = Math.min(...untracked.map((e) => e.acceptedAt)) - START_MARGIN_MS;
  const minTicks = Math.max(0, Math.floor(((since - bootMs) / 1000) * TICKS_PER_SECOND));
  const stopped = new Set<number>();
  for (let pass = 0; pass < MAX_PASSES; pass++) {
    let found = 0;
    for (const pid of taggedProcesses(tags, minTicks)) {
      if (stopped.has(pid)) continue;
      stopped.add(pid);
      found++;
      try {
        process.kill(pid, 'SIGSTOP');
      } catch {
        /* gone meanwhile */
      }
    }
    if (found === 0) break;
    // A process stopped in the middle of a fork stops once the fork returns, with the child born: the next scan must
    // come after that, or it could miss the child and end the loop.
    waitStopped(stopped);
  }
  for (const pid of stopped) {
    try {
      if (processGroup(pid) === pid) process.kill(-pid, 'SIGKILL');
      process.kill(pid, 'SIGKILL');
      ended.push(pid);
    } catch {
      /* gone meanwhile */
    }
  }
  return ended;
}

/**
 * Processes (other than this one) whose environment holds one of `entries` (`NAME=value`) exactly; with `minTicks`,
 * only those started at or after that many clock ticks since boot.
 */
export function taggedProcesses(entries: ReadonlySet<string>, minTicks = 0, proc = '/proc'): number[] {
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
    if (minTicks > 0 && (processStartTicks(pid, proc) ?? 0) < minTicks) continue; // older than the runs, or gone
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

/** Waits (at most 100 ms) until each process is stopped or gone (/proc/PID/stat state T, t, Z, X, or no file). */
function waitStopped(pids: ReadonlySet<number>): void {
  const deadline = performance.now() + 100;
  for (const pid of pids) {
    while (performance.now() < deadline) {
      const state = processState(pid);
      if (state === undefined || 'TtZX'.includes(state)) break;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1); // 1 ms: this runs once, at start, before the link
    }
  }
}

function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.charAt(stat.lastIndexOf(')') + 2);
  } catch {
    return undefined;
  }
}

/** The process group of `pid` (/proc/PID/stat field 5), or undefined. */
function processGroup(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
  } catch {
    return undefined;
  }
}
