import { closeSync, fstatSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { uptime } from 'node:os';
import { join } from 'node:path';

/**
 * The "running" journal (brief §8): the runs the agent accepted and has not finished. If the agent finds entries
 * at start, it was killed while those runs were active: it reports them lost and ends whatever is left of them
 * (leftovers.ts: their process groups, or, for a run whose pid was not written yet, its tagged processes).
 *
 * One file, `running/slots`, of fixed 512-byte slots, one per active run, overwritten in place. The first half of
 * a slot holds the accepted run as a JSON line, written before the agent answers `accepted` and starts the run;
 * the second half holds the run's process (pid and start time, to end leftovers). Nothing is synced per run: a
 * kill -9 of the agent leaves the page cache, which holds every entry; a power loss ends the processes too, and a
 * run whose entry it took is one the agent no longer lists, which the server declares lost (docs/agent.md).
 * Waiting for an fdatasync before each start cost 1.2–3.4 ms of a 6–8 ms run cycle (e2e-true). A torn line (a
 * power loss in mid-write) is dropped the same way. A free slot is zeros.
 *
 * Why slots and not a file per run: creating and unlinking a file per run changes a directory each time (e2e-true:
 * creating, fsyncing and unlinking a file per run took 3.4 ms of each run's 14 ms cycle); overwriting blocks the
 * file already has does not. Files `<runId>.json` left by earlier versions are still read at start.
 */
export interface JournalEntry {
  runId: number;
  attempt: number;
  acceptedAt: number;
  /** When it was accepted in clock ticks since boot (bootTicksNow): what leftovers.ts compares start times with. */
  acceptedTicks?: number;
  /** The boot it was accepted in (/proc/sys/kernel/random/boot_id): nothing of a previous boot's run still runs. */
  bootId?: string;
  pid?: number;
  /** Start time of the process in clock ticks since boot (/proc/PID/stat field 22): guards against PID reuse. */
  startTicks?: number;
}

const SLOT = 512;
const HALF = SLOT / 2;
/** Slots written when the file is created, so that the usual number of runs never extends it. */
const INITIAL_SLOTS = 64;

export class JournalEntryTooLargeError extends Error {
  constructor(what: string) {
    super(`journal ${what} does not fit in a ${HALF}-byte half slot; this is a bug in the agent, please report it`);
    this.name = 'JournalEntryTooLargeError';
  }
}

export class RunJournal {
  private fd: number;
  private slotCount: number;
  /** Free slots, lowest last (reused first, so that the file stays small). */
  private free: number[] = [];
  /** Slot of each run with an entry, and its attempt (a late removal of an earlier attempt leaves a new one alone). */
  private readonly slotOf = new Map<number, { slot: number; attempt: number }>();
  private readonly zeros = Buffer.alloc(SLOT);

  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 'slots');
    let created = false;
    try {
      this.fd = openSync(path, 'r+');
    } catch (err) {
      // Only a missing file is created: 'w+' truncates, and any other error must not wipe the entries.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.fd = openSync(path, 'w+');
      created = true;
    }
    this.slotCount = Math.floor(fstatSync(this.fd).size / SLOT);
    if (created || this.slotCount < INITIAL_SLOTS) {
      writeSync(this.fd, Buffer.alloc((INITIAL_SLOTS - this.slotCount) * SLOT), 0, (INITIAL_SLOTS - this.slotCount) * SLOT, this.slotCount * SLOT);
      this.slotCount = INITIAL_SLOTS;
      // Once: the file's size and its directory entry (entries themselves are never synced, see above).
      fsyncSync(this.fd);
      const d = openSync(dir, 'r');
      try {
        fsyncSync(d);
      } finally {
        closeSync(d);
      }
    }
    for (let i = this.slotCount - 1; i >= 0; i--) this.free.push(i);
  }

  /** Records an accepted run (into the page cache; see above for why it is not synced). */
  write(e: Pick<JournalEntry, 'runId' | 'attempt' | 'acceptedAt'>): void {
    if (this.fd < 0) throw new Error('the running journal is closed');
    const line = Buffer.from(`${JSON.stringify({ runId: e.runId, attempt: e.attempt, acceptedAt: e.acceptedAt, acceptedTicks: bootTicksNow(), bootId: BOOT_ID })}\n`);
    if (line.length > HALF) throw new JournalEntryTooLargeError('entry');
    const held = this.slotOf.get(e.runId);
    const slot = held?.slot ?? this.free.pop() ?? this.slotCount++;
    const buf = Buffer.alloc(SLOT);
    line.copy(buf);
    try {
      // The whole slot: a reused slot must not keep the process half of its previous run.
      writeSync(this.fd, buf, 0, SLOT, slot * SLOT);
    } catch (err) {
      if (!held) this.free.push(slot);
      throw err;
    }
    this.slotOf.set(e.runId, { slot, attempt: e.attempt });
  }

  /** Records the run's process next to its entry. */
  writeProcess(runId: number, pid: number, startTicks: number | undefined): void {
    const held = this.slotOf.get(runId);
    if (!held || this.fd < 0) return;
    const line = Buffer.from(`${JSON.stringify({ pid, startTicks })}\n`);
    if (line.length > HALF) throw new JournalEntryTooLargeError('process line');
    writeSync(this.fd, line, 0, line.length, held.slot * SLOT + HALF);
  }

  /**
   * Frees the run's slot, once the run's finished report is durable (an entry a crash leaves behind is recognised
   * at start as a run whose report is on disk). With `attempt`, only that attempt's entry.
   */
  remove(runId: number, attempt?: number): void {
    const held = this.slotOf.get(runId);
    if (!held || (attempt !== undefined && held.attempt !== attempt)) return;
    this.slotOf.delete(runId);
    if (this.fd >= 0) writeSync(this.fd, this.zeros, 0, SLOT, held.slot * SLOT);
    this.free.push(held.slot);
  }

  /** The entries on disk (at start, before any write): what a previous agent process left. */
  list(): JournalEntry[] {
    const out: JournalEntry[] = [];
    const buf = Buffer.alloc(this.slotCount * SLOT);
    const n = buf.length ? readSync(this.fd, buf, 0, buf.length, 0) : 0;
    for (let off = 0; off + SLOT <= n; off += SLOT) {
      if (buf[off] === 0) continue;
      const entry = parseEntry(lineAt(buf, off), lineAt(buf, off + HALF));
      if (entry) out.push(entry);
    }
    for (const f of readdirSync(this.dir)) {
      if (f === 'slots') continue;
      const path = join(this.dir, f);
      if (!f.endsWith('.json')) continue;
      const [first, second] = readFileSync(path, 'utf8').split('\n');
      const entry = parseEntry(first ?? '', second ?? '');
      if (entry) out.push(entry);
    }
    return out;
  }

  /** Forgets every entry, on disk too (at start, once what they stood for was reported). */
  clear(): void {
    for (const f of readdirSync(this.dir)) if (f !== 'slots') rmSync(join(this.dir, f), { force: true, recursive: true });
    this.slotOf.clear();
    this.free = [];
    for (let i = this.slotCount - 1; i >= 0; i--) this.free.push(i);
    if (this.fd < 0) return;
    writeSync(this.fd, Buffer.alloc(this.slotCount * SLOT), 0, this.slotCount * SLOT, 0);
    fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
  }
}

/** The line starting at `off` (up to its newline, or the first zero byte, within the half slot). */
function lineAt(buf: Buffer, off: number): string {
  let end = off;
  while (end < off + HALF && buf[end] !== 0 && buf[end] !== 10) end++;
  return buf.toString('utf8', off, end);
}

function parseEntry(first: string, second: string): JournalEntry | undefined {
  let entry: JournalEntry;
  try {
    const e = JSON.parse(first) as JournalEntry;
    if (typeof e?.runId !== 'number' || typeof e.attempt !== 'number') return undefined;
    entry = { runId: e.runId, attempt: e.attempt, acceptedAt: e.acceptedAt };
    if (typeof e.acceptedTicks === 'number') entry.acceptedTicks = e.acceptedTicks;
    if (typeof e.bootId === 'string') entry.bootId = e.bootId;
  } catch {
    return undefined; // torn by a power loss: the server declares the run lost (the agent no longer lists it)
  }
  try {
    const p = JSON.parse(second) as { pid?: unknown; startTicks?: unknown };
    if (typeof p.pid === 'number') entry = { ...entry, pid: p.pid, ...(typeof p.startTicks === 'number' ? { startTicks: p.startTicks } : {}) };
  } catch {
    /* no process line (not started, or torn): its processes are found by the run's tag (leftovers.ts) */
  }
  return entry;
}

/** Linux's USER_HZ, the unit of /proc/PID/stat's start time, on every architecture Node runs on. */
export const TICKS_PER_SECOND = 100;
const UPTIME0 = uptime();
const PERF0 = performance.now();
/** This boot's id (Linux), or undefined. */
export const BOOT_ID: string | undefined = (() => {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
})();

/**
 * Now in clock ticks since boot, like /proc/PID/stat's start times, but on the monotonic clock: a wall-clock step
 * does not move it, and after a suspend it is early (the monotonic clock stops), which only widens what is read.
 */
export function bootTicksNow(): number {
  return Math.floor((UPTIME0 + (performance.now() - PERF0) / 1000) * TICKS_PER_SECOND);
}

/** Field 22 of /proc/PID/stat, or undefined (process gone, or not Linux). */
export function processStartTicks(pid: number, proc = '/proc'): number | undefined {
  try {
    const stat = readFileSync(`${proc}/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]);
  } catch {
    return undefined;
  }
}
