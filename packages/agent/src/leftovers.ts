import { readdirSync, readFileSync } from 'node:fs';
import { RUN_TAG, runTag } from './env.js';
import { BOOT_ID, type JournalEntry, processStartTicks, TICKS_PER_SECOND } from './journal.js';

/** Processes that started this long before a run was accepted are not read (rounding, a suspend). */
const START_MARGIN_TICKS = 60 * TICKS_PER_SECOND;
/**
 * Scans at most: a run that forks faster than it can be stopped is ended with what was found by then. A thread that
 * never stops (a vfork parent whose child was stopped, a wait on a hung NFS mount) makes every pass run: the agent's
 * start is held ~2 s (20 × 100 ms), once. So does, far more cheaply, a process that shows no environment (`env -i`,
 * an exec in progress): 20 × (one scan + 1 ms), ~0.1–0.2 s with ~300 processes.
 */
const MAX_PASSES = 20;

/**
 * Ends what a previous agent process left running of the runs in its journal (brief §8: a run reported lost must
 * not go on running, it may be retried), at start:
 * - a run whose process was recorded: its process group — when that process is still the same one (start time), or,
 *   once it has exited (its pid free, not reused), when a process still in the group carries the run's tag (a group id
 *   is not reused while the group exists). Processes that left the group (a service a deploy job
 *   restarted with setsid) are left alone, as a timeout or a kill from the server leaves them.
 * - a run whose pid never reached the journal (the agent was killed in the milliseconds between the job's start and
 *   that write) and whose end is not reported (`unreported`): every process carrying the run's BATCHALYZER_RUN_TAG
 *   (env.ts). Each is stopped (SIGSTOP: a stopped process cannot fork) as soon as it is found, and the scan repeats
 *   until it finds nothing new with every thread of every stopped process stopped; then all of them, and the groups
 *   they lead, get SIGKILL.
 * Only processes started since the earliest such run was accepted (less a margin; boot ticks, so a wall-clock step
 * does not matter) are read: reading another process's environment takes its memory map's lock, which a process
 * stuck in a page fault (hung NFS) holds. Linux only. Returns the groups (negative) and processes signalled.
 */
export function endLeftovers(entries: readonly JournalEntry[], unreported: (e: JournalEntry) => boolean, agentId: string): number[] {
  if (process.platform !== 'linux') return [];
  const ended: number[] = [];
  // Nothing of a run accepted in a previous boot can be running.
  const thisBoot = entries.filter((e) => e.bootId === undefined || BOOT_ID === undefined || e.bootId === BOOT_ID);
  const tagOf = (e: JournalEntry) => `${RUN_TAG}=${runTag(agentId, e.runId, e.attempt)}`;
  const sinceTicks = (list: readonly JournalEntry[]) => Math.max(0, Math.min(...list.map((e) => (e.acceptedTicks ?? 0) - START_MARGIN_TICKS)));
  const recorded = thisBoot.filter((e) => e.pid !== undefined);
  // The leader exited and its pid is free (a pid another process took since says the group is gone): its group may
  // live on. A leader without a recorded start time cannot be told apart from a reused pid: only its group is asked.
  const exited = recorded.filter((e) => (e.startTicks === undefined ? true : processStartTicks(e.pid!) === undefined));
  const survivors = exited.length ? groupsStillTagged(exited.map((e) => ({ pgid: e.pid!, tag: tagOf(e) })), sinceTicks(exited)) : new Set<number>();
  for (const e of recorded) {
    const leaderLives = e.startTicks !== undefined && processStartTicks(e.pid!) === e.startTicks;
    if (!leaderLives && !survivors.has(e.pid!)) continue;
    try {
      process.kill(-e.pid!, 'SIGKILL');
      ended.push(-e.pid!);
    } catch {
      /* gone */
    }
  }
  const untracked = thisBoot.filter((e) => e.pid === undefined && unreported(e));
  if (untracked.length === 0) return ended;
  const tags = new Set(untracked.map(tagOf));
  const minTicks = sinceTicks(untracked);
  /** Each stopped process and its start time (checked again before the kill: the pid could be reused meanwhile). */
  const stopped = new Map<number, number | undefined>();
  for (let pass = 0; pass < MAX_PASSES; pass++) {
    const seen = scan(tags, minTicks, stopped, '/proc');
    for (const pid of seen.found) {
      stopped.set(pid, processStartTicks(pid));
      try {
        process.kill(pid, 'SIGSTOP');
      } catch {
        /* gone meanwhile */
      }
    }
    // A process stopped in the middle of a fork stops once the fork returns, with the child born (and another thread
    // of it may be inside one): the last scan must come after all of them stopped, or it could miss a child. A
    // process in the middle of an exec shows no environment for a moment: it is read again.
    if (waitStopped(stopped.keys()) && seen.found.length === 0 && seen.unsure === 0) break;
    if (seen.unsure > 0) pause(1);
  }
  for (const [pid, startTicks] of stopped) {
    if (processStartTicks(pid) !== startTicks) continue; // gone (reaped), or another process with its pid
    try {
      if (statField(pid, 2) === pid) process.kill(-pid, 'SIGKILL');
      process.kill(pid, 'SIGKILL');
      ended.push(pid);
    } catch {
      /* gone meanwhile */
    }
  }
  return ended;
}

/**
 * Processes (other than this one, and not in `skip`) whose environment holds one of `entries` (`NAME=value`)
 * exactly; with `minTicks`, only those started at or after that many clock ticks since boot.
 */
export function taggedProcesses(entries: ReadonlySet<string>, minTicks = 0, skip: ReadonlyMap<number, unknown> = new Map(), proc = '/proc'): number[] {
  return scan(entries, minTicks, skip, proc).found;
}

/** taggedProcesses, and how many processes showed no environment (an exec in progress: ask again). */
function scan(entries: ReadonlySet<string>, minTicks: number, skip: ReadonlyMap<number, unknown>, proc: string): { found: number[]; unsure: number } {
  const found: number[] = [];
  let unsure = 0;
  for (const pid of processIds(proc)) {
    if (skip.has(pid)) continue;
    if (minTicks > 0 && (processStartTicks(pid, proc) ?? 0) < minTicks) continue; // older than the runs, or gone
    const tagged = hasTag(pid, entries, proc);
    if (tagged === true) found.push(pid);
    else if (tagged === undefined) unsure++;
  }
  return { found, unsure };
}

/** The groups (of `groups`) that still have a member carrying the group's run tag. */
function groupsStillTagged(groups: readonly { pgid: number; tag: string }[], minTicks: number): Set<number> {
  const tagOf = new Map(groups.map((g) => [g.pgid, new Set([g.tag])]));
  const alive = new Set<number>();
  for (const pid of processIds('/proc')) {
    const pgid = statField(pid, 2);
    const tag = pgid === undefined ? undefined : tagOf.get(pgid);
    if (!tag || alive.has(pgid!)) continue;
    if ((processStartTicks(pid) ?? 0) < minTicks) continue;
    if (hasTag(pid, tag, '/proc')) alive.add(pgid!);
  }
  return alive;
}

function processIds(proc: string): number[] {
  try {
    return readdirSync(proc).filter((f) => /^\d+$/.test(f)).map(Number).filter((pid) => pid !== process.pid);
  } catch {
    return []; // no procfs
  }
}

/**
 * Whether the process's environment holds one of `entries`; undefined when it shows none though it is a live user
 * process (during an exec the old environment is gone and the new one not yet there).
 */
function hasTag(pid: number, entries: ReadonlySet<string>, proc: string): boolean | undefined {
  let env: string;
  try {
    env = readFileSync(`${proc}/${pid}/environ`, 'latin1');
  } catch {
    return false; // gone, or another user's (EACCES): not this agent's job unless the agent could read it
  }
  if (env.length === 0) {
    // Kernel threads and zombies never show one.
    const state = statText(pid, proc);
    if (state === undefined || 'ZX'.includes(state.charAt(0)) || (Number(state.split(' ')[6]) & PF_KTHREAD) !== 0) return false;
    return undefined;
  }
  return env.includes(RUN_TAG) && env.split('\0').some((v) => entries.has(v));
}

/** /proc/PID/stat's flags bit of a kernel thread. */
const PF_KTHREAD = 0x00200000;

/** /proc/PID/stat after the command name (state first), or undefined. */
function statText(pid: number, proc = '/proc'): string | undefined {
  try {
    const stat = readFileSync(`${proc}/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2);
  } catch {
    return undefined;
  }
}

function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms); // at start only, before the link: see MAX_PASSES
}

/**
 * Waits (at most 100 ms) until every thread of each process is stopped or gone (/proc/PID/task/TID/stat state T,
 * t, Z, X, or no file); whether they all are.
 */
function waitStopped(pids: Iterable<number>): boolean {
  const deadline = performance.now() + 100;
  for (const pid of pids) {
    for (;;) {
      if (threadsStopped(pid)) break;
      if (performance.now() >= deadline) return false;
      pause(1);
    }
  }
  return true;
}

function threadsStopped(pid: number): boolean {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return true; // gone
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      if (!'TtZX'.includes(stat.charAt(stat.lastIndexOf(')') + 2))) return false;
    } catch {
      /* the thread is gone */
    }
  }
  return true;
}

/** Field `i` (0-based) after the command name in /proc/PID/stat (2: process group), or undefined. */
function statField(pid: number, i: number): number | undefined {
  const text = statText(pid);
  return text === undefined ? undefined : Number(text.split(' ')[i]);
}
