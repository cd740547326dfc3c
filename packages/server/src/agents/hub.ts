import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { AGENT_PATH, CLOSE, dispatchPayload, dispatchPayloadOk, type QueueItem } from '@batchalyzer/protocol';
import type { Store } from '@batchalyzer/store';
import type { EventBus } from '../events.js';
import type { Service } from '../lifecycle.js';
import type { AgentLink, ConnectedAgent, DispatchPayload, OutputReport, RunReports } from '../link.js';
import { type AgentHubConfig, DEFAULT_AGENT_HUB_CONFIG } from './config.js';
import type { HubContext } from './context.js';
import { Pacer } from './pacer.js';
import { AgentSession } from './session.js';

export interface AgentHubDeps {
  store: Store;
  events: EventBus;
  logger: Logger;
  reports: RunReports;
  config?: Partial<AgentHubConfig>;
  /**
   * Milliseconds on a clock that never steps (default performance.now()), for every silence and liveness
   * computation: the wall clock may jump (brief §4: NTP, VM resume) and must neither drop healthy agents nor hide
   * dead ones. Wall time (Date.now()) is still what is stored and shown (last seen, messages). Injected in tests.
   */
  monotonic?: () => number;
}

/** The server's side of the agent link (brief §8): an `AgentLink` for the engine and a `Service` for the composition root. */
export interface AgentHub extends AgentLink, Service {
  readonly config: AgentHubConfig;
  /** Takes a WebSocket upgrade for AGENT_PATH; returns false (and leaves the socket alone) for any other path. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean;
  /** Listens for upgrades on this HTTP server; other paths get 404 unless another upgrade listener exists. */
  attach(server: Server): void;
  /** Drops an agent's connection as if the network failed (operators, tests); the agent reconnects. */
  drop(agent: string): boolean;
}

interface Liveness {
  status: 'connected' | 'stale' | 'missing' | 'disconnected';
  /** Wall time of the last frame (stored and shown). */
  lastSeenAt: number;
  /** Monotonic time of the last frame (silence is measured on this). */
  lastSeenMono: number;
  /** Monotonic time lastSeenAt was last persisted. */
  persistedMono: number;
  lostReported: boolean;
}

const ACTOR = 'agent-link';
/** Upgrades held while the server starts; more are cut off (the agents retry). */
const MAX_PARKED = 10_000;

export function createAgentHub(deps: AgentHubDeps): AgentHub {
  return new Hub(deps);
}

class Hub implements AgentHub, HubContext {
  readonly name = 'agents';
  readonly config: AgentHubConfig;
  readonly store: Store;
  readonly events: EventBus;
  readonly logger: Logger;
  readonly pacer: Pacer;
  readonly monotonic: () => number;
  private readonly reports: RunReports;
  private wss: WebSocketServer | undefined;
  private readonly sessions = new Map<string, AgentSession>();
  private readonly all = new Set<AgentSession>();
  private readonly liveness = new Map<string, Liveness>();
  /** Highest committed sequence per agent and queue id (a wiped agent data dir starts a new queue). */
  private readonly accepted = new Map<string, { queueId: string; seq: number }>();
  /** Runs this process dispatched, by run: to which agent (reports of earlier attempts are then recognised). */
  private readonly dispatched = new Map<number, string>();
  private timer: NodeJS.Timeout | undefined;
  /** JSON texts of the job-derived parts of dispatch payloads that passed the protocol's check (checkPayload). */
  private stopped = true;
  private started = false;
  /**
   * Upgrades that arrive after the HTTP port opens but before this hub starts (the engine starts first, loading
   * the unfinished runs): held and taken once started, instead of being cut off, so that agents reconnecting
   * after a server restart are not sent into their reconnect back-off by the server's own start-up.
   */
  private readonly parked = new Set<{ req: IncomingMessage; socket: Duplex; head: Buffer }>();
  /** Store writes started by connection events, awaited by stop() so that none runs after the store closes. */
  private readonly sideEffects = new Set<Promise<unknown>>();
  /** Disconnect messages waiting for the agent to stay away past the stale time (offline). */
  private readonly disconnectNotices = new Map<string, NodeJS.Timeout>();

  constructor(deps: AgentHubDeps) {
    this.store = deps.store;
    this.events = deps.events;
    this.logger = deps.logger.child({ component: 'agents' });
    this.reports = deps.reports;
    this.config = { ...DEFAULT_AGENT_HUB_CONFIG, ...deps.config };
    this.monotonic = deps.monotonic ?? (() => performance.now());
    // SQLite commits are serialised and synchronous: one at a time keeps the budget exact. PostgreSQL commits
    // wait on the network (the loop runs meanwhile), so they may overlap up to the pool's size.
    // A share is at most 50 ms, so that a loop turn stays within the 100 ms lag budget (burst bench).
    this.pacer = new Pacer(this.config.reportSliceMs, this.store.kind === 'sqlite' ? 1 : 10, Math.max(this.config.reportSliceMs, 50));
  }

  async start(): Promise<void> {
    // After a server restart no agent is connected yet: each gets a fresh window to come back before it is missing.
    // Done before any connection is taken, so that it cannot overwrite an agent that is already back.
    const now = Date.now();
    const mono = this.monotonic();
    for (const a of await this.store.listAgents()) {
      // The fresh window is monotonic; the wall time stays what the store knows (shown in messages, stored again).
      this.liveness.set(a.name, { status: 'disconnected', lastSeenAt: a.lastSeenAt ?? now, lastSeenMono: mono, persistedMono: mono, lostReported: false });
      if (a.status === 'connected' || a.status === 'stale') await this.store.updateAgentLink(a.name, { status: 'disconnected' });
    }
    this.wss = new WebSocketServer({ noServer: true, maxPayload: this.config.maxFrameBytes, perMessageDeflate: false, clientTracking: false });
    this.wss.on('error', (err) => this.logger.warn({ err: err.message }, 'agent listener error'));
    this.wss.on('wsClientError', (err, socket) => {
      this.logger.debug({ err: err.message }, 'bad agent upgrade request');
      socket.destroy();
    });
    this.stopped = false;
    this.started = true;
    this.timer = setInterval(() => this.tick().catch((err) => this.logger.error({ err }, 'agent liveness check failed')), this.config.tickMs);
    const parked = [...this.parked];
    this.parked.clear();
    for (const p of parked) if (!p.socket.destroyed) this.handleUpgrade(p.req, p.socket, p.head);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.started = true; // no more parking
    for (const p of this.parked) p.socket.destroy();
    this.parked.clear();
    clearInterval(this.timer);
    for (const t of this.disconnectNotices.values()) clearTimeout(t);
    this.disconnectNotices.clear();
    const sessions = [...this.all];
    const closed = sessions.map((s) => new Promise((r) => (s.ws.readyState === s.ws.CLOSED ? r(undefined) : s.ws.once('close', r))));
    for (const s of sessions) s.close(CLOSE.goingAway, 'server stopping');
    const bounded = (p: Promise<unknown>, ms: number) => Promise.race([p, new Promise((r) => setTimeout(r, ms).unref())]);
    await bounded(Promise.all([...closed, ...sessions.map((s) => s.settled())]), 3_000);
    for (const s of sessions) s.ws.terminate();
    await bounded(Promise.all(this.sideEffects), 3_000);
    this.wss?.close();
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://x').pathname;
    } catch {
      return false;
    }
    if (path !== AGENT_PATH) return false;
    socket.on('error', () => undefined);
    if (!this.started) {
      if (this.parked.size >= MAX_PARKED) {
        socket.destroy();
        return true;
      }
      const p = { req, socket, head };
      this.parked.add(p);
      socket.once('close', () => this.parked.delete(p));
      return true;
    }
    if (this.stopped || !this.wss) {
      socket.destroy();
      return true;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const s = new AgentSession(ws, req, this);
      this.all.add(s);
      ws.on('close', () => this.all.delete(s));
    });
    return true;
  }

  attach(server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (!this.handleUpgrade(req, socket, head) && server.listenerCount('upgrade') === 1) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      }
    });
  }

  drop(agent: string): boolean {
    const s = this.sessions.get(agent);
    if (!s) return false;
    s.ws.terminate();
    return true;
  }

  // ── AgentLink ──────────────────────────────────────────────────────────────────────────────────

  connected(): ConnectedAgent[] {
    return [...this.sessions.values()].map((s) => ({
      name: s.name,
      connectedAt: s.connectedAt,
      draining: s.draining,
      version: s.hello!.version,
      capabilities: s.hello!.capabilities,
      activeRuns: s.activeRuns,
      activeRunsCut: s.activeRunsCut,
      listVersion: s.listVersion,
    }));
  }

  async dispatch(agent: string, payload: DispatchPayload): Promise<void> {
    const s = this.sessions.get(agent);
    if (!s) throw new Error(`agent ${agent} is not connected`);
    if (s.draining) throw new Error(`agent ${agent} is draining`);
    const invalid = this.checkPayload(payload);
    if (invalid !== null) throw new Error(`run ${payload.runId} cannot be sent: ${invalid}`);
    this.dispatched.set(payload.runId, agent);
    await s.request(`d:${payload.runId}:${payload.attempt}`, { type: 'dispatch', payload }, this.config.dispatchTimeoutMs);
  }

  /**
   * Why the payload would break the protocol, or null. The hand-written check (held equal to the schema by the
   * protocol's tests) answers for every usual payload without building anything; the schema only words the error
   * (a full schema check of every payload was a tenth of the server's time between dispatch and send,
   * dispatch-latency, and a JSON text per payload to skip it was still ~0.05 ms a run, e2e-true).
   */
  private checkPayload(payload: DispatchPayload): string | null {
    if (dispatchPayloadOk(payload)) return null;
    const r = dispatchPayload.safeParse(payload);
    return r.success ? null : (r.error.issues[0]?.message ?? 'invalid payload');
  }

  async kill(agent: string, runId: number): Promise<void> {
    const s = this.sessions.get(agent);
    if (!s) throw new Error(`agent ${agent} is not connected`);
    await s.request(`k:${runId}`, { type: 'kill', runId }, this.config.dispatchTimeoutMs);
  }

  // ── HubContext (called by sessions) ────────────────────────────────────────────────────────────

  claim(session: AgentSession): string | null {
    const existing = this.sessions.get(session.name);
    if (existing && existing !== session) {
      const silentFor = this.monotonic() - existing.lastFrameMono;
      const open = existing.ws.readyState === existing.ws.OPEN;
      // The existing connection wins unless it is dead (closed, or silent past the stale time).
      if (open && silentFor < this.config.staleAfterMs) {
        return `agent "${session.name}" is already connected from ${existing.remote} since ${new Date(existing.connectedAt).toISOString()}; the existing connection wins; stop the other agent process`;
      }
      this.logger.warn({ agent: session.name, old: existing.remote, silentForMs: silentFor }, 'replacing a dead connection of this agent');
      this.sessions.delete(session.name);
      existing.close(CLOSE.timeout, 'replaced by a new connection of the same agent');
      existing.ws.terminate();
    }
    this.sessions.set(session.name, session);
    clearTimeout(this.disconnectNotices.get(session.name));
    this.disconnectNotices.delete(session.name);
    const queueId = session.hello!.queueId;
    if (this.accepted.get(session.name)?.queueId !== queueId) this.accepted.set(session.name, { queueId, seq: 0 });
    const mono = this.monotonic();
    this.liveness.set(session.name, { status: 'connected', lastSeenAt: Date.now(), lastSeenMono: mono, persistedMono: mono, lostReported: false });
    return null;
  }

  async online(s: AgentSession): Promise<void> {
    const hello = s.hello!;
    const now = Date.now();
    await this.store.updateAgentLink(s.name, {
      status: 'connected', lastSeenAt: now, connectedAt: now, version: hello.version, draining: hello.draining,
      facts: { ...hello.facts, clockOffsetMs: now - hello.clock, remote: s.remote }, capabilities: hello.capabilities,
    });
    this.logger.info({ agent: s.name, remote: s.remote, version: hello.version, activeRuns: hello.activeRuns.length }, 'agent connected');
    this.events.emit('agent:connected', { name: s.name });
    const resolved = await this.store.resolveMessage(messageKey(s.name), ACTOR, now, 'agent connected again');
    if (resolved) this.events.emit('message:resolved', { id: resolved.id, key: resolved.key });
  }

  offline(s: AgentSession, reason: string): void {
    if (this.sessions.get(s.name) !== s) return; // a refused or replaced connection: nothing changes for the agent
    this.sessions.delete(s.name);
    const l = this.liveness.get(s.name);
    if (l) l.status = 'disconnected';
    this.logger.warn({ agent: s.name, reason }, 'agent disconnected');
    this.events.emit('agent:disconnected', { name: s.name, reason });
    const at = Date.now();
    this.track(this.store.updateAgentLink(s.name, { status: 'disconnected', lastSeenAt: l?.lastSeenAt ?? at }), 'could not record the disconnect');
    // While stopping, a disconnect is the server's doing, not news about the agent. Otherwise it becomes a message
    // only if the agent stays away as long as a silent agent takes to go stale: a link that drops and comes back
    // at once (a restarted agent, a network blip, a rejected report) needs no operator, and each used to raise and
    // resolve a message.
    if (this.stopped) return;
    clearTimeout(this.disconnectNotices.get(s.name));
    const name = s.name;
    this.disconnectNotices.set(name, setTimeout(() => {
      this.disconnectNotices.delete(name);
      if (this.stopped || this.sessions.has(name) || this.liveness.get(name)?.status === 'missing') return;
      this.track(this.raise(name, 'warning', `agent ${name} disconnected at ${new Date(at).toISOString()}: ${reason}`, at), 'could not raise the disconnect message');
    }, this.config.staleAfterMs));
  }

  draining(s: AgentSession): void {
    this.logger.info({ agent: s.name }, 'agent draining');
    this.events.emit('agent:draining', { name: s.name });
    this.track(this.store.updateAgentLink(s.name, { draining: true }), 'could not record draining');
  }

  seen(s: AgentSession): void {
    const l = this.liveness.get(s.name);
    if (!l || this.sessions.get(s.name) !== s) return;
    l.lastSeenAt = s.lastFrameAt;
    l.lastSeenMono = s.lastFrameMono;
    if (l.status === 'stale') {
      l.status = 'connected';
      this.track(this.store.updateAgentLink(s.name, { status: 'connected', lastSeenAt: l.lastSeenAt }), 'could not record the agent as connected');
      l.persistedMono = l.lastSeenMono;
    }
  }

  private track(p: Promise<unknown>, what: string): void {
    const q = p.catch((err) => this.logger.error({ err }, what)).finally(() => this.sideEffects.delete(q));
    this.sideEffects.add(q);
  }

  acceptedSeq(s: AgentSession): number {
    const a = this.accepted.get(s.name);
    return a && a.queueId === s.hello?.queueId ? a.seq : 0;
  }

  setAcceptedSeq(s: AgentSession, seq: number): void {
    const a = this.accepted.get(s.name);
    if (a && a.queueId === s.hello?.queueId) a.seq = Math.max(a.seq, seq);
  }

  async wasDispatchedTo(runId: number, agent: string): Promise<boolean> {
    if (this.dispatched.get(runId) === agent) return true;
    // After a server restart the memory is gone: the run's history says where it was dispatched.
    const events = await this.store.runEvents(runId);
    return events.some((e) => e.toState === 'dispatched' && (e.detail as { agent?: string } | null)?.agent === agent);
  }

  deliverOutput(s: AgentSession, chunks: OutputReport[]): Promise<void> {
    return this.reports.output(s.name, chunks);
  }

  holderOf(runId: number): { agent: string; attempt: number } | undefined {
    return this.reports.holder?.(runId);
  }

  /** Every report but output, which arrives in batches through deliverOutput. */
  async deliver(s: AgentSession, item: Exclude<QueueItem, { kind: 'output' }>): Promise<void> {
    const agent = s.name;
    switch (item.kind) {
      case 'started':
        return this.reports.started(agent, item.runId, item.attempt, item.at);
      case 'truncated':
        return this.reports.truncated(agent, item.runId);
      case 'step':
        return this.reports.steps(agent, [{ runId: item.runId, seq: item.step, at: item.at, kind: item.stepKind, text: item.text, ...(item.data !== undefined ? { data: item.data } : {}) }]);
      case 'finished':
        return this.reports.finished(agent, {
          runId: item.runId, attempt: item.attempt, at: item.at, exitCode: item.exitCode, signal: item.signal, timedOut: item.timedOut,
          ...(item.error !== undefined ? { error: item.error } : {}), ...(item.result !== undefined ? { result: item.result } : {}),
        });
      case 'lost':
        return this.reports.lost(agent, item.runId, item.reason);
    }
  }

  // ── Liveness (brief §8): stale, then missing, then the runs of a missing agent are lost ─────────

  // Silence is measured on the monotonic clock only: a wall-clock step forward (NTP, VM resume) made every agent
  // look silent for the step and dropped them all in one tick (then missing, their runs lost); a step back hid a
  // dead agent for as long.
  private async tick(): Promise<void> {
    const now = Date.now();
    const mono = this.monotonic();
    const c = this.config;
    for (const [name, l] of this.liveness) {
      const s = this.sessions.get(name);
      const silent = mono - l.lastSeenMono;
      if (s) {
        if (silent > c.missingAfterMs) {
          this.logger.warn({ agent: name, silentMs: silent }, 'agent silent past the missing time; dropping its connection');
          s.close(CLOSE.timeout, 'no heartbeat');
          s.ws.terminate();
        } else if (silent > c.staleAfterMs && l.status === 'connected') {
          l.status = 'stale';
          // Events follow the store write, so a subscriber that reads the store on an event sees what it announces.
          try {
            await this.store.updateAgentLink(name, { status: 'stale', lastSeenAt: l.lastSeenAt });
          } finally {
            this.events.emit('agent:stale', { name });
          }
        } else if (l.lastSeenMono - l.persistedMono > 60_000) {
          l.persistedMono = l.lastSeenMono; // last-seen is persisted about once a minute, not on every heartbeat
          await this.store.updateAgentLink(name, { lastSeenAt: l.lastSeenAt });
        }
        continue;
      }
      if (l.status !== 'missing' && silent > c.missingAfterMs) {
        l.status = 'missing';
        this.logger.warn({ agent: name }, 'agent missing');
        try {
          await this.store.updateAgentLink(name, { status: 'missing' }).catch(() => undefined);
          await this.raise(name, 'critical', `agent ${name} is missing: not seen since ${new Date(l.lastSeenAt).toISOString()}`, now);
        } finally {
          this.events.emit('agent:missing', { name });
        }
      }
      if (l.status === 'missing' && !l.lostReported && silent > c.missingAfterMs + c.lostRunLeaseMs) {
        l.lostReported = true;
        await this.loseRunsOf(name, `agent ${name} missing since ${new Date(l.lastSeenAt).toISOString()} (lease of ${c.lostRunLeaseMs} ms expired)`);
      }
    }
  }

  private async loseRunsOf(agent: string, reason: string): Promise<void> {
    let before: number | undefined;
    for (;;) {
      const page = await this.store.listRuns({ agent, state: ['dispatched', 'running'] }, { limit: 500, ...(before !== undefined ? { before } : {}) });
      for (const r of page.items) {
        this.logger.warn({ agent, runId: r.id }, 'run lost with its agent');
        await this.reports.lost(agent, r.id, reason);
      }
      if (page.next === undefined) return;
      before = page.next;
    }
  }

  private async raise(agent: string, severity: 'warning' | 'critical', text: string, at: number): Promise<void> {
    const { message, created } = await this.store.raiseMessage({ key: messageKey(agent), severity, source: 'agent', text, at, actor: ACTOR, agentName: agent, sourceRef: agent });
    this.events.emit('message:raised', { id: message.id, key: message.key, severity: message.severity, created });
  }
}

function messageKey(agent: string): string {
  return `agent-link:${agent}`;
}
