#!/usr/bin/env node
// `npm start`: the batchalyzer server on embedded SQLite under ./data with examples/demo.yaml applied.
// Extra arguments pass through to `batchalyzer server` (npm start -- --listen 127.0.0.1:9090).
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = [
  join(root, 'packages/cli/dist/main.js'), 'server',
  '--data', join(root, 'data'),
  '--apply', join(root, 'examples/demo.yaml'),
  ...process.argv.slice(2),
];
console.log('batchalyzer: starting the server on SQLite in ./data with examples/demo.yaml applied');
const child = spawn(process.execPath, args, { stdio: 'inherit', cwd: root });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
