// `npm install` hook of @batchalyzer/agent: builds the native spawner (native/spawn.c, docs/agent.md "Spawning").
// It is optional: without a C toolchain (or off Linux) the agent spawns jobs with child_process, which is slower;
// so a failed build warns and never fails the install.
'use strict';
const { spawnSync } = require('node:child_process');
const { join } = require('node:path');

const root = join(__dirname, '..');
if (process.platform !== 'linux') {
  console.log('@batchalyzer/agent: the native spawner is for Linux only; jobs will be spawned with child_process');
  process.exit(0);
}
const gyp = process.env.npm_config_node_gyp || join(process.execPath, '..', '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
const r = spawnSync(process.execPath, [gyp, 'rebuild'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (r.status === 0) {
  console.log('@batchalyzer/agent: native spawner built (build/Release/spawn.node)');
} else {
  const why = (r.error?.message ?? `${r.stderr}`.split('\n').filter((l) => /ERR!|error/.test(l)).slice(0, 5).join('\n')) || `node-gyp exited ${r.status}`;
  console.warn(`@batchalyzer/agent: WARNING: the native spawner was not built; jobs will be spawned with child_process (slower).\n${why}\nTo build it: install a C compiler, make and python3, then run \`npm rebuild @batchalyzer/agent\`.`);
}
