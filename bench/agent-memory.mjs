// agent-memory: server memory per connected agent at 1,000 and 5,000 simulated agents (real handshake, heartbeats
// every 2 s), measured as the growth of the server process's RSS (and of its JS heap) after a full GC.
// Baseline in the same run: a bare `ws` server (same options as the agent hub) holding the same number of idle
// sockets that send a small frame at the same interval.
import { createServer as httpServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { figure, forkSim, gc, log, registerAgents, sleep, startServer, tempDir } from './lib.mjs';

const BENCH = 'agent-memory';
const HB = 2000;
const STEPS = [1000, 5000];

function mem() {
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed + m.external };
}
const kb = (b) => b / 1024;

const sim = await forkSim();
const base = {};

// ── Baseline: bare ws server ──
if (process.argv[2] === 'bare') {
  const http = httpServer();
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false, maxPayload: 1024 * 1024 });
  const sockets = new Set();
  http.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => {
    sockets.add(ws);
    ws.on('message', () => undefined);
    ws.on('close', () => sockets.delete(ws));
  }));
  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  const url = `ws://127.0.0.1:${http.address().port}/`;
  await sleep(500);
  const m0 = mem();
  let have = 0;
  for (const n of STEPS) {
    const open = sim.wait('plain-open');
    sim.send({ cmd: 'plain', url, n: n - have, everyMs: HB });
    await open;
    have = n;
    await sleep(3000);
    const m = mem();
    base[n] = { rss: (m.rss - m0.rss) / n, heap: (m.heap - m0.heap) / n };
    log(`bare ws, ${n} sockets: ${kb(base[n].rss).toFixed(1)} KB RSS, ${kb(base[n].heap).toFixed(1)} KB heap per socket`);
  }
  const closed = sim.wait('plain-closed');
  sim.send({ cmd: 'plain-close' });
  await closed;
  for (const ws of sockets) ws.terminate();
  http.close();
  process.stdout.write(`BARE ${JSON.stringify(base)}\n`);
  await sim.close();
  process.exit(0);
}

// The baseline runs in its own process (this file with argument `bare`), so that neither RSS figure inherits
// the other's freed-but-kept memory.
{
  const { spawn } = await import('node:child_process');
  const out = await new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--expose-gc', new URL(import.meta.url).pathname, 'bare'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    p.stdout.on('data', (d) => (text += d));
    p.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`bare ws baseline exited ${code}`))));
  });
  Object.assign(base, JSON.parse(/BARE (.*)/.exec(out)[1]));
}

// ── The batchalyzer server ──
const dir = tempDir();
const server = await startServer(dir, { agents: { heartbeatMs: HB, staleAfterMs: 60_000, missingAfterMs: 120_000 } });
const keys = await registerAgents(server.store, STEPS.at(-1));
log(`${STEPS.at(-1)} agents registered`);
await sleep(500);
const m0 = mem();
let have = 0;
const names = Object.keys(keys);
for (const n of STEPS) {
  const batch = Object.fromEntries(names.slice(have, n).map((k) => [k, keys[k]]));
  const t = Date.now();
  await sim.connect(server.url(), batch, { reconnect: true });
  log(`${n} agents connected (${Date.now() - t} ms for ${n - have} handshakes)`);
  have = n;
  await sleep(3000);
  const m = mem();
  const per = { rss: (m.rss - m0.rss) / n, heap: (m.heap - m0.heap) / n };
  log(`server, ${n} agents: ${kb(per.rss).toFixed(1)} KB RSS, ${kb(per.heap).toFixed(1)} KB heap per agent`);
  figure({ bench: BENCH, metric: `RSS per agent at ${n}`, value: kb(per.rss), unit: 'KB', baseline: `bare ws server, ${n} idle sockets`, baselineValue: kb(base[n].rss), target: '≤ 50 KB per agent', met: kb(per.rss) <= 50 });
  figure({ bench: BENCH, metric: `JS heap per agent at ${n}`, value: kb(per.heap), unit: 'KB', baseline: `bare ws server, ${n} idle sockets`, baselineValue: kb(base[n].heap) });
}
await sim.close();
await server.stop();
process.exit(0);
