import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The "running" journal (brief §8): one small file per run the agent accepted and has not finished. If the
 * agent finds entries at start, it was killed while those runs were active: it reports them lost and ends
 * whatever is left of their process groups.
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
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  write(e: JournalEntry): void {
    const tmp = join(this.dir, `${e.runId}.tmp`);
    const fd = openSync(tmp, 'w');
    writeSync(fd, JSON.stringify(e));
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, join(this.dir, `${e.runId}.json`));
  }

  remove(runId: number): void {
    rmSync(join(this.dir, `${runId}.json`), { force: true });
  }

  list(): JournalEntry[] {
    const out: JournalEntry[] = [];
    for (const f of readdirSync(this.dir)) {
      if (!f.endsWith('.json')) {
        rmSync(join(this.dir, f), { force: true });
        continue;
      }
      try {
        out.push(JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as JournalEntry);
      } catch {
        rmSync(join(this.dir, f), { force: true });
      }
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
