import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** Runs the built `batchalyzer` CLI as a real child process. */
export const ROOT = resolve(import.meta.dirname, '..', '..');
export const CLI = join(ROOT, 'packages', 'cli', 'dist', 'main.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function cli(args: string[], opts: { env?: Record<string, string> } = {}): Promise<CliResult> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', fail);
    child.on('close', (code, signal) => done({ code, signal, stdout, stderr }));
  });
}

export function spawnCli(args: string[]): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
}

export function tempDir(prefix = 'batchalyzer-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Resolves with the first stdout match of `pattern`, or rejects when the process exits first. */
export function waitForOutput(child: ChildProcess, pattern: RegExp): Promise<RegExpMatchArray> {
  return new Promise((done, fail) => {
    let buf = '';
    let err = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      const m = buf.match(pattern);
      if (m) {
        child.stdout!.off('data', onData);
        done(m);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => fail(new Error(`process exited (${code}) before printing ${pattern}: ${buf}\n${err}`)));
  });
}
