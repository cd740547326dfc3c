#!/usr/bin/env node
// `npm start`: the batchalyzer server on SQLite in ./data with examples/demo.yaml applied, plus a local agent
// named "local" (registered on first start, key kept in data/local-agent.key). Extra arguments pass through to
// `batchalyzer server`, e.g. `npm start -- --listen 127.0.0.1:9090`.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'packages/cli/dist/main.js');
const args = process.argv.slice(2).filter((a) => a !== '--');
// `--data DIR` moves everything (store, agent key, agent queue); the other arguments go to the server.
const dataAt = args.indexOf('--data');
const data = dataAt >= 0 ? resolve(args.splice(dataAt, 2)[1]) : join(root, 'data');
const keyFile = join(data, 'local-agent.key');
mkdirSync(data, { recursive: true });

const admin = (...args) => spawnSync(process.execPath, [cli, ...args, '--data', data], { cwd: root, encoding: 'utf8' });
if (!existsSync(keyFile)) {
  // First start, or the key file was removed: register the local agent, or give it a new key.
  let r = admin('agent', 'register', 'local', '--key-file', keyFile);
  if (r.status !== 0 && /already registered/.test(r.stderr)) r = admin('agent', 'rotate-key', 'local', '--key-file', keyFile);
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    process.exit(1);
  }
}

console.log('batchalyzer: starting the server on SQLite in ./data with examples/demo.yaml applied, and a local agent');
const server = spawn(process.execPath, [cli, 'server', '--data', data, '--apply', join(root, 'examples/demo.yaml'), ...args], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
});
let agent = null;
let buffered = '';
server.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  if (agent) return;
  buffered += chunk;
  const m = /listening on (http:\/\/\S+)/.exec(buffered);
  if (!m) return;
  const url = m[1];
  agent = spawn(process.execPath, [cli, 'agent', '--server', url, '--name', 'local', '--key-file', keyFile, '--data', join(data, 'agent')], {
    cwd: root,
    stdio: 'inherit',
  });
  agent.on('exit', (code) => {
    if (!stopping) console.error(`batchalyzer: the local agent exited (${code}); the server keeps running`);
  });
  console.log(`
  batchalyzer is running.
    server:       ${url}  (health: ${url}/api/v1/health)
    local agent:  "local", connected to ${url}
    definitions:  examples/demo.yaml (batchalyzer export --data ./data shows them)
    web console:  not in this release yet, so there is nothing to log in to; the API answers at ${url}/api/v1
  Stop with Ctrl-C.
`);
});

let stopping = false;
const stop = (signal) => {
  if (stopping) return;
  stopping = true;
  // The agent drains first (it finishes or hands back its work), then the server stops.
  if (agent && agent.exitCode === null) {
    agent.once('exit', () => server.kill(signal));
    agent.kill('SIGTERM');
    setTimeout(() => agent.kill('SIGTERM'), 15_000).unref(); // a second SIGTERM makes it exit at once
  } else server.kill(signal);
};
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));
server.on('exit', (code, signal) => {
  if (agent && agent.exitCode === null) agent.kill('SIGTERM');
  process.exit(code ?? (signal ? 0 : 1));
});
