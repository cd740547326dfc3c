import { appendFileSync, close, closeSync, fsync, mkdirSync, open, readdirSync, readFileSync, rmSync, unlink, write, writeSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The "running" journal (brief §8): one small file per run the agent accepted and has not finished. If the
 * agent finds entries at start, it was killed while those runs were active: it reports them lost and ends
 * whatever is left of their process groups.
 *
 * `<runId>.json` holds the accepted run on its first line, fsynced before the run starts: it must survive a power
 * loss, or a run the server saw started could stay running forever (a torn first line means the fsync never
 * returned, so the run never started: it is dropped). The run's process (pid and start time, to end leftovers) is
 * appended as a second line without fsync: processes do not survive a power loss, and after a crash of the agent
 * alone the page cache still has it. No temporary file or rename: a run costs one create and one unlink, and the
 * file stays open from its creation until the process line is written (one open per run, not two).
 */
export interface JournalEntry {
  runId: number;
  attempt: number;
  acceptedAt: number;
  pid?: number;
  /** Start time of the process in clock ticks since boot (/proc/PID/stat field 22): guards against PID reuse. */
  startTicks?: number;
}

export class RunJournal {
  /** Entries written and not closed yet: their process line is still to come. */
  private readonly open = new Map<number, number>();
  /**
   * Entries being unlinked in the thread pool (an unlink took ~1 ms of the event loop per run), with what waits
   * for it: a new attempt of the same run must not have its fresh entry removed by the old attempt's unlink.
   */
  private readonly unlinking = new Map<number, (() => void)[]>();

  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  private path(runId: number): string {
    return join(this.dir, `${runId}.json`);
  }

  /** Records an accepted run; `done` is called once it is on disk (the fsync runs in the thread pool). */
  write(e: Pick<JournalEntry, 'runId' | 'attempt' | 'acceptedAt'>, done: (err: Error | null) => void): void {
    const waiting = this.unlinking.get(e.runId);
    if (waiting) return void waiting.push(() => this.write(e, done));
    open(this.path(e.runId), 'w', (err, fd) => {
      if (err) return done(err);
      const fail = (err: Error) => close(fd, () => done(err));
      write(fd, `${JSON.stringify(e)}\n`, (err) => {
        if (err) return fail(err);
        fsync(fd, (err) => {
          if (err) return fail(err);
          this.open.set(e.runId, fd);
          done(null);
        });
      });
    });
  }

  /** Records the run's process next to its entry (no fsync, see above). */
  writeProcess(runId: number, pid: number, startTicks: number | undefined): void {
    const line = `${JSON.stringify({ pid, startTicks })}\n`;
    const fd = this.open.get(runId);
    if (fd === undefined) return appendFileSync(this.path(runId), line);
    this.open.delete(runId);
    try {
      writeSync(fd, line);
    } finally {
      closeSync(fd);
    }
  }

  remove(runId: number): void {
    const fd = this.open.get(runId);
    if (fd !== undefined) {
      this.open.delete(runId);
      closeSync(fd);
    }
    if (this.unlinking.has(runId)) return;
    // Not waited for: the run's finished report is durable already, and an entry left by a crash before the unlink
    // is recognised at start as a run whose report is on disk.
    this.unlinking.set(runId, []);
    unlink(this.path(runId), () => {
      const next = this.unlinking.get(runId) ?? [];
      this.unlinking.delete(runId);
      for (const f of next) f();
    });
  }

  list(): JournalEntry[] {
    const out: JournalEntry[] = [];
    for (const f of readdirSync(this.dir)) {
      const path = join(this.dir, f);
      if (!f.endsWith('.json')) {
        rmSync(path, { force: true });
        continue;
      }
      const [first, second] = readFileSync(path, 'utf8').split('\n');
      let entry: JournalEntry;
      try {
        entry = JSON.parse(first!) as JournalEntry;
      } catch {
        rmSync(path, { force: true });
        continue;
      }
      try {
        const p = JSON.parse(second ?? '') as { pid?: unknown; startTicks?: unknown };
        if (typeof p.pid === 'number') entry = { ...entry, pid: p.pid, ...(typeof p.startTicks === 'number' ? { startTicks: p.startTicks } : {}) };
      } catch {
        /* no process line (not started, or torn): a leftover cannot be identified, so it is not killed */
      }
      out.push(entry);
    }
    return out;
  }
}

/** Field 22 of /proc/PID/stat, or undefined (process gone, or not Linux). */
export function processStartTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]);
  } catch {
    return undefined;
  }
}
