// `npm install` hook of @batchalyzer/agent: builds the native spawner (native/spawn.c, docs/agent.md "Spawning").
// It is optional: without a C toolchain (or off Linux) the agent spawns jobs with child_process, which is slower;
// so a failed build never fails the install (npm shows this script's output only with --foreground-scripts; the
// agent itself warns at start when the spawner is missing).
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
if (process.platform !== 'linux') {
  console.log('@batchalyzer/agent: the native spawner is for Linux only; jobs will be spawned with child_process');
  process.exit(0);
}
const gyp = process.env.npm_config_node_gyp || join(process.execPath, '..', '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
// Node's own headers when they are installed beside it (Debian's nodejs, the official tarballs): node-gyp would
// otherwise download them, which fails or hangs without network.
const prefix = join(process.execPath, '..', '..');
const args = [gyp, 'rebuild'];
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h')) && existsSync(join(prefix, 'include', 'node', 'common.gypi'))) args.push(`--nodedir=${prefix}`);
const r = spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', timeout: 3 * 60_000 });
if (r.status === 0) {
  console.log('@batchalyzer/agent: native spawner built (build/Release/spawn.node)');
} else {
  const why = (r.error?.message ?? `${r.stderr}`.split('\n').filter((l) => /ERR!|error/.test(l)).slice(0, 5).join('\n')) || `node-gyp exited ${r.status}`;
  console.warn(`@batchalyzer/agent: WARNING: the native spawner was not built; jobs will be spawned with child_process (slower).\n${why}\nTo build it: install a C compiler, make and python3, then run \`npm rebuild @batchalyzer/agent\`.`);
}
