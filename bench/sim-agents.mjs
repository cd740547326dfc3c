// Simulated agents for the benchmarks: many protocol-speaking WebSocket clients in one process (forked with IPC).
// Each agent does the real handshake (hello → challenge → signed auth → welcome), heartbeats, accepts dispatches,
// reports `started` and, `runMs` later, `finished` (exit 0) through an in-memory outbound queue with sequence
// numbers that is re-sent after a reconnect until acknowledged, like the real agent's disk-backed queue.
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { AGENT_PATH, PROTOCOL_VERSION, signChallenge } from '@batchalyzer/protocol';

const CAPS = { command: true, shell: true, node: true, checks: { builtin: true, plugin: true, node: true } };
let opts = { runMs: 10, reconnect: false, heartbeat: true };
const agents = new Map();
const plain = [];
const closes = {};
if (process.env.BENCH_SIM_DEBUG) setInterval(() => process.stderr.write(`  sim: connected ${connected}, closes ${JSON.stringify(closes)}\n`), 3000).unref();
let connected = 0;

function send(ws, m) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
}

class SimAgent {
  constructor(name, key, held = []) {
    this.name = name;
    this.key = key;
    this.queueId = randomUUID();
    this.seq = 0;
    this.acked = 0;
    this.queue = []; // unacknowledged { seq, item }
    this.active = new Map(held.map((r) => [r.runId, r.attempt])); // runId -> attempt
    this.ws = null;
    this.ready = false;
    this.hb = null;
    this.failures = 0;
  }

  connect(url) {
    this.url = url;
    // Like the real agent (packages/agent/src/link.ts): an upgrade that gets no answer is abandoned and retried.
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}${AGENT_PATH}`, { perMessageDeflate: false, handshakeTimeout: 10_000 });
    this.ws = ws;
    this.trace = [`${this.name}@${Date.now() % 1e6}`];
    ws.on('open', () => {
      this.step('open');
      send(ws, {
        type: 'hello', protocol: PROTOCOL_VERSION, agent: this.name, version: 'sim', clock: Date.now(), facts: { hostname: this.name },
        capabilities: CAPS, queueId: this.queueId, activeRuns: [...this.active.keys()], draining: false,
      });
    });
    ws.on('message', (data) => this.onMessage(JSON.parse(data.toString())));
    ws.on('error', () => undefined);
    ws.on('close', (code, reason) => {
      this.step(`close ${code}`);
      if (process.env.BENCH_SIM_DEBUG === '2') process.stderr.write(`  sim ${this.trace.join(' ')}\n`);
      if (process.env.BENCH_SIM_DEBUG) closes[`${this.ready ? 'ready' : 'handshake'}:${code}:${reason}`] = (closes[`${this.ready ? 'ready' : 'handshake'}:${code}:${reason}`] ?? 0) + 1;
      if (this.ready) {
        this.ready = false;
        connected--;
      }
      clearInterval(this.hb);
      if (opts.reconnect) setTimeout(() => this.connect(this.url), this.backoff());
    });
  }

  /** The real agent's reconnect delay (packages/agent/src/link.ts, defaults 200 ms to 30 s): exponential, jittered. */
  backoff() {
    const step = Math.min(30_000, 200 * 2 ** Math.min(this.failures, 20));
    this.failures++;
    return Math.round(step * (0.5 + Math.random() * 0.5));
  }

  step(what) {
    if (process.env.BENCH_SIM_DEBUG === '2') this.trace.push(`${what}+${Date.now() % 1e6 - Number(this.trace[0].split('@')[1])}`);
  }

  onMessage(m) {
    if (!this.ready) this.step(m.type);
    switch (m.type) {
      case 'challenge':
        send(this.ws, { type: 'auth', signature: signChallenge(this.key, m.nonce, this.name, PROTOCOL_VERSION) });
        return;
      case 'welcome':
        if (process.env.BENCH_SIM_DEBUG === '2') process.stderr.write(`  sim ${this.trace.join(' ')}\n`);
        this.ready = true;
        this.failures = 0;
        connected++;
        if (opts.heartbeat) {
          this.hb = setInterval(() => send(this.ws, { type: 'heartbeat', at: Date.now(), activeRuns: [...this.active.keys()] }), m.heartbeatMs);
          this.hb.unref();
        }
        for (const q of this.queue) send(this.ws, { type: 'report', seq: q.seq, item: q.item });
        if (connected === agents.size) process.send?.({ ev: 'all-connected', n: connected });
        return;
      case 'refused':
        process.send?.({ ev: 'refused', name: this.name, reason: m.reason, message: m.message });
        return;
      case 'dispatch': {
        const { runId, attempt } = m.payload;
        this.active.set(runId, attempt);
        send(this.ws, { type: 'accepted', runId, attempt });
        this.report({ kind: 'started', runId, attempt, at: Date.now() });
        if (opts.runMs >= 0) setTimeout(() => this.finish(runId), opts.runMs);
        return;
      }
      case 'kill':
        send(this.ws, { type: 'kill-result', runId: m.runId, found: this.active.has(m.runId) });
        return;
      case 'ack':
        this.acked = Math.max(this.acked, m.seq);
        while (this.queue.length && this.queue[0].seq <= this.acked) this.queue.shift();
        return;
    }
  }

  finish(runId) {
    const attempt = this.active.get(runId);
    if (attempt === undefined) return;
    this.active.delete(runId);
    this.report({ kind: 'finished', runId, attempt, at: Date.now(), exitCode: 0, signal: null, timedOut: false });
  }

  report(item) {
    const q = { seq: ++this.seq, item };
    this.queue.push(q);
    if (this.ready) send(this.ws, { type: 'report', seq: q.seq, item });
  }
}

process.on('message', (m) => {
  if (m.cmd === 'connect') {
    opts = { ...opts, ...m.opts };
    const names = Object.keys(m.keys);
    const fresh = [];
    let i = 0;
    // Connect in small waves so that the handshakes do not all land in the same tick.
    const wave = () => {
      for (let k = 0; k < 50 && i < names.length; k++, i++) {
        const name = names[i];
        const a = new SimAgent(name, m.keys[name], m.held?.[name] ?? []);
        agents.set(name, a);
        fresh.push(a);
      }
      if (i < names.length) setImmediate(wave);
      else for (const a of fresh) a.connect(m.url);
    };
    wave();
  } else if (m.cmd === 'plain') {
    // Bare idle WebSocket clients (for the bare `ws` server baseline): open, then a small frame every `everyMs`.
    let open = 0;
    for (let i = 0; i < m.n; i++) {
      const ws = new WebSocket(m.url, { perMessageDeflate: false });
      plain.push(ws);
      ws.on('open', () => {
        if (m.everyMs) setInterval(() => ws.readyState === WebSocket.OPEN && ws.send('{"type":"heartbeat"}'), m.everyMs).unref();
        if (++open === m.n) process.send?.({ ev: 'plain-open', n: open });
      });
      ws.on('error', () => undefined);
    }
  } else if (m.cmd === 'plain-close') {
    for (const ws of plain.splice(0)) ws.terminate();
    process.send?.({ ev: 'plain-closed' });
  } else if (m.cmd === 'finish-held') {
    // The jobs that were running during the outage end now; their results wait in the queue until acknowledged.
    for (const a of agents.values()) for (const runId of [...a.active.keys()]) a.finish(runId);
    process.send?.({ ev: 'finished-held' });
  } else if (m.cmd === 'opts') {
    opts = { ...opts, ...m.opts };
  } else if (m.cmd === 'close') {
    opts.reconnect = false;
    for (const a of agents.values()) a.ws?.terminate();
    process.send?.({ ev: 'closed' });
    setTimeout(() => process.exit(0), 50);
  }
});
process.send?.({ ev: 'ready' });
