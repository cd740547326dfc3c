import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import type { DispatchPayloadMessage } from '@batchalyzer/protocol';

/**
 * The job's environment (brief §3, docs/agent.md): the agent's minimal base (PATH, HOME, LANG, USER, …),
 * then the job's env, then the run's BATCHALYZER_* variables, which always win. With run-as, HOME, USER,
 * LOGNAME and SHELL describe the target user.
 */
export function jobEnv(base: Record<string, string>, p: DispatchPayloadMessage, tag: string, user?: PasswdEntry): Record<string, string> {
  const env: Record<string, string> = { ...base };
  if (user) Object.assign(env, { HOME: user.home, USER: user.name, LOGNAME: user.name, SHELL: user.shell });
  Object.assign(env, p.env);
  env.BATCHALYZER_RUN_ID = String(p.runId);
  env.BATCHALYZER_ATTEMPT = String(p.attempt);
  env.BATCHALYZER_JOB = p.jobName;
  env.BATCHALYZER_PLAN_DATE = p.planDate;
  env.BATCHALYZER_NOMINAL_TIME = p.nominalAt === null ? '' : new Date(p.nominalAt).toISOString();
  env[RUN_TAG] = tag;
  return env;
}

/**
 * Marks every process of a run (inherited by its children) as this agent's: `<queue id>/<run id>/<attempt>`. An
 * agent killed before a run's pid reached the journal finds the run's processes by it at start (leftovers.ts).
 */
export const RUN_TAG = 'BATCHALYZER_RUN_TAG';

export function runTag(agentId: string, runId: number, attempt: number): string {
  return `${agentId}/${runId}/${attempt}`;
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

/** Looks a user up in /etc/passwd (no native modules: the agent stays installable alone). */
export function lookupUser(name: string): PasswdEntry | undefined {
  for (const line of safeRead('/etc/passwd').split('\n')) {
    const f = line.split(':');
    if (f.length >= 7 && (f[0] === name || f[2] === name)) return { name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]!, shell: f[6]! };
  }
  return undefined;
}

export function lookupGroup(name: string): number | undefined {
  for (const line of safeRead('/etc/group').split('\n')) {
    const f = line.split(':');
    if (f.length >= 3 && (f[0] === name || f[2] === name)) return Number(f[2]);
  }
  return undefined;
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** The executable a command would run: a path with `/` is taken relative to cwd, a bare name is searched on PATH. */
export function resolveExecutable(file: string, cwd: string, path: string): string | undefined {
  if (file.includes('/')) return isAbsolute(file) ? file : resolve(cwd, file);
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(isAbsolute(dir) ? dir : resolve(cwd, dir), file);
    try {
      if (statSync(candidate).isFile()) {
        accessSync(candidate, constants.X_OK);
        return candidate;
      }
    } catch {
      /* not here */
    }
  }
  return undefined;
}
