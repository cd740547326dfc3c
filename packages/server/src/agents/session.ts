import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import {
  CLOSE, type AgentMessage, encode, fitCloseReason, type HelloMessage, MAX_ACTIVE_RUNS, MIN_PROTOCOL_VERSION, newNonce, parseAgentMessage, parseOutputFrame,
  PROTOCOL_VERSION, type QueueItem, type RefusalReason, rejectionReason, type ServerMessage, verifyChallenge,
} from '@batchalyzer/protocol';
import type { OutputReport } from '../link.js';
import type { HubContext } from './context.js';

type Ownership = 'ok' | 'stale' | { offense: string };
/** Why a report breaks the protocol, and its sequence number (named in the close reason: the agent charges that item). */
type Offense = { reason: string; seq: number };
type WireOutput = Extract<QueueItem, { kind: 'output' }>;
/** A received report item; output bytes are raw whether they came in a binary frame or as base64. */
type Received = Exclude<QueueItem, { kind: 'output' }> | (Omit<WireOutput, 'data'> & { data: Buffer });

/** Received output bytes waiting for their commit above which the socket is paused (keeps the server's memory flat). */
const MAX_PENDING_BYTES = 4 * 1024 * 1024;
/** Output chunks committed in one store transaction at most (one ack for all of them). */
const MAX_BATCH_ITEMS = 64;
const MAX_BATCH_BYTES = 2 * 1024 * 1024;
/** During a long drain, committed reports are acknowledged at least this often. */
const ACK_EVERY_MS = 50;

/**
 * One agent connection (brief §8): handshake (hello → challenge → auth → welcome or refused), then reports
 * committed in order through RunReports and acknowledged only after the commit, dispatch/kill round trips,
 * heartbeats. Any frame that breaks the protocol closes this connection with a reason; nothing throws out.
 */
/** A request waiting for the agent's answer; callers of the same key share `answer`. */
interface Wait {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  answer: Promise<unknown>;
}

/** Lists of active runs received by this process (AgentSession.listVersion). */
let listsReceived = 0;

export class AgentSession {
  state: 'hello' | 'auth' | 'ready' | 'closed' = 'hello';
  name = '';
  hello: HelloMessage | undefined;
  readonly remote: string;
  readonly openedAt = Date.now();
  connectedAt = 0;
  /** Wall time of the last frame (what is stored and shown as last seen). */
  lastFrameAt = Date.now();
  /** Monotonic time of the last frame (hub.monotonic): silence is measured on this, never on the wall clock. */
  lastFrameMono: number;
  draining = false;
  /**
   * The runs the agent lists as its own (hello, then every heartbeat; plus dispatches it accepted since). Only the
   * agent's next list removes one: a committed end of a run does not (a stale end of an earlier attempt removed the
   * current attempt, which then looked unknown to the agent until its next heartbeat).
   */
  activeRuns = new Set<number>();
  /** The agent's last list was at the protocol's limit, so it may be cut: it proves no absence. */
  activeRunsCut = false;
  /** Increases with every list received, on any connection: reconciliation counts a sighting only on a newer list. */
  listVersion = 0;
  private nonce = '';
  private lastSeq = 0;
  /** Reports received and not yet committed, in sequence order. */
  private readonly inbox: { seq: number; item: Received }[] = [];
  /** The running drain of the inbox (one at a time: reports are committed strictly in order). */
  private chain: Promise<void> = Promise.resolve();
  private pumping = false;
  private pendingBytes = 0;
  private lastAckAt = 0;
  /** Highest sequence committed on this connection, and the highest acknowledged to the agent. */
  private committedSeq = 0;
  private ackedSeq = 0;
  /**
   * Protocol 3: the highest sequence the agent reported durable (fsynced on its disk). Acks and the hub's record of
   * the agent's acknowledged sequence never pass it (see ackable). Before protocol 3 an agent sends only durable
   * items, so everything it sends counts as durable.
   */
  private agentDurable = 0;
  private ackTimer: NodeJS.Timeout | undefined;
  private paused = false;
  private readonly ownership = new Map<string, Ownership>();
  /** Requests waiting for their answer, by key; callers of the same key share one frame and one answer (request). */
  private readonly waits = new Map<string, Wait>();
  /**
   * Keys of requests that timed out on this connection (the newest 1,000): a slow agent's late answer to one is
   * expected, not a protocol violation (it closed the link, and the agent reconnected).
   */
  private readonly expired = new Set<string>();
  private readonly handshakeTimer: NodeJS.Timeout;

  constructor(readonly ws: WebSocket, req: IncomingMessage, private readonly hub: HubContext) {
    this.remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    this.lastFrameMono = hub.monotonic();
    this.handshakeTimer = setTimeout(() => this.close(CLOSE.timeout, 'handshake not completed in time'), hub.config.handshakeTimeoutMs);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      try {
        if (isBinary) this.onBinaryFrame(data);
        else this.onFrame(data);
      } catch (err) {
        this.hub.logger.error({ err, agent: this.name }, 'agent frame handling failed');
        // The server's own failure, not the agent's: 1011 (reconnect and re-send) charges no queued report, as a
        // 4002 without a sequence would (the agent's first unacknowledged item, maybe a good one).
        this.close(CLOSE.serverError, 'frame could not be handled; reconnect and re-send');
      }
    });
    ws.on('error', (err) => this.hub.logger.debug({ err: err.message, remote: this.remote }, 'agent socket error'));
    ws.on('close', (code, reason) => this.onClose(code, reason.toString()));
  }

  send(m: ServerMessage): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(encode(m));
  }

  close(code: number, reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.handshakeTimer);
    try {
      this.ws.close(code, fitCloseReason(reason)); // bytes, not characters: a longer reason made ws throw (no 4002 at all)
    } catch {
      this.ws.terminate();
    }
    // A peer that never answers the close handshake is cut off.
    setTimeout(() => this.ws.terminate(), 2_000).unref();
  }

  /**
   * Closes with 4002. `seq`: the violation is one queued report's (invalid, or for a run the agent does not hold), whose
   * sequence number the close reason names (`[seq N] …`, protocol close.ts), so that the agent charges that item and
   * not the first one it has not seen acknowledged (docs/protocol.md, Hostile input). `null`: the violation is known to
   * be no queued item's fault (`[seq -] …`: a replay, an unasked or late answer, a frame out of place), and the agent
   * charges nothing; undefined (a frame that could not be read far enough to tell): no prefix, the agent's old rule.
   */
  private offend(reason: string, seq?: number | null): void {
    this.hub.logger.warn({ agent: this.name || undefined, remote: this.remote, reason, seq }, 'agent connection closed: protocol violation');
    this.close(CLOSE.protocolError, rejectionReason(reason, seq));
  }

  /**
   * The sequence number of a report frame that failed validation, when it is one the agent's queue holds: the next
   * in order on this connection (a sequence at or below the last one would be a replay, an agent fault and not the
   * item's, so it is marked as no item's: null).
   */
  private badReportSeq(seq: number | undefined): number | null | undefined {
    if (this.state !== 'ready' || seq === undefined) return undefined;
    return seq > this.lastSeq ? seq : null;
  }

  private refuse(reason: RefusalReason, message: string): void {
    this.hub.logger.warn({ agent: this.name, remote: this.remote, reason }, `agent refused: ${message}`);
    this.hub.events.emit('agent:refused', { name: this.name, reason });
    this.send({ type: 'refused', reason, message });
    this.close(CLOSE.refused, reason);
  }

  private onFrame(data: Buffer): void {
    if (this.state === 'closed') return;
    this.lastFrameAt = Date.now();
    this.lastFrameMono = this.hub.monotonic();
    const r = parseAgentMessage(data, this.hub.config.maxFrameBytes);
    if (!r.ok) return this.offend(r.error.message, this.badReportSeq(r.error.seq));
    const m = r.message;
    if (this.state === 'hello') {
      if (m.type !== 'hello') return this.offend(`expected hello, got ${m.type}`);
      return this.onHello(m);
    }
    if (this.state === 'auth') {
      if (m.type !== 'auth') return this.offend(`expected auth, got ${m.type}`);
      this.state = 'closed'; // until verified: ignore anything else the peer sends meanwhile
      this.onAuth(m.signature).catch((err) => {
        this.hub.logger.error({ err, agent: this.name }, 'agent authentication failed');
        this.state = 'auth';
        this.close(CLOSE.serverError, 'server error during authentication');
      });
      return;
    }
    this.hub.seen(this);
    this.onReady(m);
  }

  /** Protocol 2: an output report as a binary frame (header + raw bytes), validated like any frame. */
  private onBinaryFrame(data: Buffer): void {
    if (this.state === 'closed') return;
    this.lastFrameAt = Date.now();
    this.lastFrameMono = this.hub.monotonic();
    if (this.state !== 'ready') return this.offend('binary frame before the handshake completed');
    if ((this.hello?.protocol ?? 1) < 2) return this.offend(`binary frame from an agent speaking protocol ${this.hello?.protocol}`, null);
    const r = parseOutputFrame(data, this.hub.config.maxFrameBytes);
    if (!r.ok) return this.offend(r.error.message, this.badReportSeq(r.error.seq));
    this.hub.seen(this);
    const { type: _type, seq, ...item } = r.message.header;
    this.onReport(seq, { kind: 'output', ...item, data: r.message.data });
  }

  private onReport(seq: number, item: Received): void {
    if (seq <= this.lastSeq) return this.offend(`sequence replay: ${seq} after ${this.lastSeq} on this connection`, null);
    this.lastSeq = seq;
    this.enqueue(seq, item);
  }

  private onHello(m: HelloMessage): void {
    this.name = m.agent;
    this.hello = m;
    if (m.protocol < MIN_PROTOCOL_VERSION || m.protocol > PROTOCOL_VERSION) {
      return this.refuse('incompatible-version', `agent ${m.agent} speaks protocol ${m.protocol}; this server speaks ${MIN_PROTOCOL_VERSION === PROTOCOL_VERSION ? PROTOCOL_VERSION : `${MIN_PROTOCOL_VERSION} to ${PROTOCOL_VERSION}`}; install an agent of the server's release`);
    }
    this.nonce = newNonce();
    this.state = 'auth';
    this.send({ type: 'challenge', nonce: this.nonce, serverTime: Date.now() });
  }

  private async onAuth(signature: string): Promise<void> {
    const hello = this.hello!;
    const record = await this.hub.store.getAgent(hello.agent);
    if (!record) return this.refuseAfterAuth('unknown-agent', `agent "${hello.agent}" is not registered; register it with \`batchalyzer agent register ${hello.agent}\``);
    const publicKey = await this.hub.store.getAgentKeyHash(hello.agent);
    if (!publicKey || !verifyChallenge(publicKey, signature, this.nonce, hello.agent, hello.protocol)) {
      return this.refuseAfterAuth('wrong-key', `the key does not match agent "${hello.agent}"; use the key printed by \`batchalyzer agent register\` or \`agent rotate-key ${hello.agent}\``);
    }
    if (!record.enabled) return this.refuseAfterAuth('disabled', `agent "${hello.agent}" is disabled; enable it with \`batchalyzer agent enable ${hello.agent}\``);
    if (this.ws.readyState !== this.ws.OPEN) return;
    const clash = this.hub.claim(this);
    if (clash) return this.refuseAfterAuth('duplicate-connection', clash);
    clearTimeout(this.handshakeTimer);
    this.state = 'ready';
    this.connectedAt = Date.now();
    this.draining = hello.draining;
    this.takeList(hello.activeRuns);
    this.agentDurable = hello.protocol >= 3 ? 0 : Number.MAX_SAFE_INTEGER;
    // Welcome first: dispatches that follow agent:connected must reach an agent that knows it is connected.
    this.send({ type: 'welcome', serverTime: Date.now(), heartbeatMs: this.hub.config.heartbeatMs });
    await this.hub.online(this);
  }

  private refuseAfterAuth(reason: RefusalReason, message: string): void {
    this.state = 'auth';
    this.refuse(reason, message);
  }

  private onReady(m: AgentMessage): void {
    switch (m.type) {
      case 'heartbeat':
        this.takeList(m.activeRuns);
        this.send({ type: 'ack', seq: this.hub.acceptedSeq(this) });
        return;
      case 'report':
        return this.onReport(m.seq, m.item.kind === 'output' ? { ...m.item, data: Buffer.from(m.item.data, 'base64') } : m.item);
      case 'accepted':
      case 'rejected': {
        const key = `d:${m.runId}:${m.attempt}`;
        const w = this.waits.get(key);
        if (!w && this.lateAnswer(key)) {
          if (m.type === 'accepted') this.activeRuns.add(m.runId); // the agent has it: its heartbeats will say so too
          return;
        }
        if (!w) return this.offend(`${m.type} for run ${m.runId} attempt ${m.attempt}, which was not dispatched on this connection`, null);
        this.waits.delete(key);
        clearTimeout(w.timer);
        if (m.type === 'accepted') {
          this.activeRuns.add(m.runId);
          w.resolve(undefined);
        } else w.reject(new Error(`agent ${this.name} rejected run ${m.runId}: ${m.reason}`));
        return;
      }
      case 'kill-result': {
        const w = this.waits.get(`k:${m.runId}`);
        if (!w && this.lateAnswer(`k:${m.runId}`)) return;
        if (!w) return this.offend(`kill-result for run ${m.runId}, which was not asked to be killed`, null);
        this.waits.delete(`k:${m.runId}`);
        clearTimeout(w.timer);
        w.resolve(m.found);
        return;
      }
      case 'durable':
        return this.onDurable(m.seq);
      case 'draining':
        if (!this.draining) {
          this.draining = true;
          this.hub.draining(this);
        }
        return;
      default:
        return this.offend(`unexpected ${m.type} after the handshake`, null);
    }
  }

  /**
   * Reports are committed strictly in order; the ack follows the commit (brief §12). The socket is paused while
   * too many reports or too many output bytes wait for their commit (keeps the server's memory flat).
   */
  private enqueue(seq: number, item: Received): void {
    this.inbox.push({ seq, item });
    if (item.kind === 'output') this.pendingBytes += item.data.length;
    if (!this.paused && (this.inbox.length > this.hub.config.maxPendingReports || this.pendingBytes > MAX_PENDING_BYTES)) {
      this.paused = true;
      this.ws.pause();
    }
    if (!this.pumping) {
      this.pumping = true;
      this.chain = this.drain().finally(() => (this.pumping = false));
    }
  }

  /**
   * Commits the inbox in order, a report (or a run of output chunks, see takeBatch) at a time, each when the hub's
   * pacer gives it a turn: with SQLite a commit never returns to the event loop by itself, so an agent re-sending
   * hundreds of queued reports after a reconnect held the loop until all were stored while other agents' upgrades
   * and handshakes waited (restart bench). Acknowledged cumulatively whenever the drain has to wait for a turn,
   * and at its end.
   */
  private async drain(): Promise<void> {
    const began = performance.now();
    while (this.inbox.length > 0 && this.state === 'ready') {
      // Output first lets the loop read the frames that arrived meanwhile, so that they are committed as one batch
      // (one transaction, one ack) instead of one transaction each (output-stream bench).
      if (this.inbox[0]!.item.kind === 'output') await new Promise<void>((r) => setImmediate(r));
      const turn = this.hub.pacer.enter();
      if (turn) {
        this.ackNow();
        await turn;
      }
      let offense: Offense | null = null;
      let batch: { seq: number; item: Received }[] = [];
      try {
        if (this.state !== 'ready' || this.inbox.length === 0) break;
        batch = this.takeBatch();
        try {
          const r = await this.commit(batch);
          offense = r.offense;
          this.committedSeq = Math.max(this.committedSeq, r.upTo);
          // A steady stream never waits for a turn: acknowledge at least every 50 ms so that the agent can free
          // its queue segments while the stream lasts (not only at heartbeats).
          if (performance.now() - Math.max(began, this.lastAckAt) >= ACK_EVERY_MS) this.ackNow();
        } catch (err) {
          const first = batch[0]!;
          this.hub.logger.error({ err, agent: this.name, seq: first.seq, kind: first.item.kind, runId: first.item.runId }, 'could not commit an agent report; the agent will re-send it');
          this.ackNow();
          this.close(CLOSE.serverError, 'report not stored; reconnect and re-send');
          break;
        }
      } finally {
        this.hub.pacer.leave();
        for (const b of batch) if (b.item.kind === 'output') this.pendingBytes -= b.item.data.length;
      }
      if (offense !== null) {
        this.ackNow(); // what was committed before it stays committed
        this.offend(offense.reason, offense.seq);
        break;
      }
      if (this.paused && this.inbox.length < this.hub.config.maxPendingReports / 2 && this.pendingBytes < MAX_PENDING_BYTES / 2) {
        this.paused = false;
        this.ws.resume();
      }
    }
    this.ackSoon();
    if (this.state !== 'ready') {
      this.inbox.length = 0; // not acknowledged: the agent re-sends them after reconnecting
      this.pendingBytes = 0;
    }
  }

  /**
   * Protocol 3: the agent's queue is fsynced up to `seq`. Reports are committed as they arrive, but acknowledged
   * and recorded as taken (hub.setAcceptedSeq, which makes later sequences at or below it replays) only up to the
   * agent's durable watermark: a sequence number the agent could lose in a power failure is never one the server
   * would take a new report with that number for a replay of. The agent numbers on after its durable items, which
   * are at or above everything recorded here.
   */
  private onDurable(seq: number): void {
    if ((this.hello?.protocol ?? 1) < 3) return this.offend(`durable from an agent speaking protocol ${this.hello?.protocol}`, null);
    if (seq <= this.agentDurable) return;
    this.agentDurable = seq;
    const upTo = this.ackable();
    if (upTo > this.hub.acceptedSeq(this)) this.hub.setAcceptedSeq(this, upTo);
    this.ackSoon();
  }

  /** What may be acknowledged: committed, and (protocol 3) durable on the agent's disk. */
  private ackable(): number {
    return Math.min(this.committedSeq, this.agentDurable);
  }

  /** Acknowledges everything committed (and durable on the agent) so far (only ever after the commit: brief §12). */
  private ackNow(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    const upTo = this.ackable();
    if (upTo > this.ackedSeq) {
      this.send({ type: 'ack', seq: upTo });
      this.ackedSeq = upTo;
      this.lastAckAt = performance.now();
    }
  }

  /**
   * Acknowledges within ackDelayMs, together with whatever else is committed by then: an ack frame a report cost
   * both processes a send or a receive, a parse and the agent's queue bookkeeping each time (e2e-true: two a run).
   */
  private ackSoon(): void {
    if (this.ackable() <= this.ackedSeq || this.ackTimer !== undefined || this.state !== 'ready') return;
    this.ackTimer = setTimeout(() => this.ackNow(), this.hub.config.ackDelayMs);
  }

  /** One report, or a run of consecutive output chunks (bounded). */
  private takeBatch(): { seq: number; item: Received }[] {
    if (this.inbox[0]!.item.kind !== 'output') return this.inbox.splice(0, 1);
    let n = 0;
    let bytes = 0;
    while (n < this.inbox.length && n < MAX_BATCH_ITEMS && bytes < MAX_BATCH_BYTES) {
      const it = this.inbox[n]!.item;
      if (it.kind !== 'output') break;
      bytes += it.data.length;
      n++;
    }
    return this.inbox.splice(0, n);
  }

  /**
   * Commits a batch; `upTo` is the last sequence number committed (or committed before a reconnect), `offense`
   * why a report breaks the protocol (nothing from it on is stored).
   */
  private async commit(batch: { seq: number; item: Received }[]): Promise<{ upTo: number; offense: Offense | null }> {
    const accepted = this.hub.acceptedSeq(this);
    let upTo = 0;
    let offense: Offense | null = null;
    const chunks: OutputReport[] = [];
    for (const { seq, item } of batch) {
      if (seq <= accepted) {
        upTo = seq; // committed before a reconnect: acknowledge again, store nothing
        continue;
      }
      const own = await this.owns(item);
      if (typeof own === 'object') {
        offense = { reason: own.offense, seq };
        break;
      }
      if (own === 'stale') this.hub.logger.info({ agent: this.name, runId: item.runId, attempt: item.attempt, kind: item.kind }, 'late report of an earlier attempt ignored');
      else if (item.kind === 'output') chunks.push({ runId: item.runId, stream: item.stream, seq: item.chunk, at: item.at, data: item.data });
      else await this.hub.deliver(this, item);
      upTo = seq;
    }
    // What came before an offending report is committed and acknowledged; nothing from the offending one.
    if (chunks.length) await this.hub.deliverOutput(this, chunks);
    // Recorded only up to what the agent has on disk (protocol 3, onDurable): the rest follows its `durable`.
    const taken = Math.min(upTo, this.agentDurable);
    if (taken > accepted) this.hub.setAcceptedSeq(this, taken);
    return { upTo, offense };
  }

  /** Whether the run's attempt belongs to this agent; reports for anything else are hostile (brief §8). */
  private async owns(item: Received): Promise<Ownership> {
    const key = `${item.runId}:${item.attempt}`;
    const cached = this.ownership.get(key);
    if (cached) return cached;
    // The engine wrote the dispatch and keeps the run until it ends: the usual case needs no store read.
    const holder = this.hub.holderOf(item.runId);
    if (holder && holder.agent === this.name && holder.attempt === item.attempt) {
      this.ownership.set(key, 'ok');
      return 'ok';
    }
    const run = await this.hub.store.getRun(item.runId);
    let verdict: Ownership;
    if (!run) verdict = { offense: `run ${item.runId} does not exist` };
    else if (item.attempt > run.attempt) verdict = { offense: `run ${item.runId} has no attempt ${item.attempt}` };
    else if (run.agentName === this.name && item.attempt === run.attempt && run.state !== 'waiting') verdict = 'ok';
    else if (await this.hub.wasDispatchedTo(item.runId, this.name)) verdict = 'stale';
    else verdict = { offense: `run ${item.runId} is not dispatched to agent ${this.name}` };
    this.ownership.set(key, verdict);
    return verdict;
  }

  /**
   * Sends a frame and waits for its answer (accepted/rejected, kill-result). A request whose key is already waiting
   * (a second kill of the same run while the first is unanswered) sends nothing and gets the first one's answer: the
   * agent answers each frame, and a second frame's answer found no waiter once the first answer had taken the only
   * one, which closed the connection as a protocol violation.
   */
  request<T>(key: string, m: ServerMessage, timeoutMs: number): Promise<T> {
    if (this.state !== 'ready') return Promise.reject(new Error(`agent ${this.name} is not connected`));
    const pending = this.waits.get(key);
    if (pending) return pending.answer as Promise<T>; // the frame is out already: share its answer (and its time-out)
    let settle!: Pick<Wait, 'resolve' | 'reject'>;
    const answer = new Promise<unknown>((resolve, reject) => (settle = { resolve, reject }));
    answer.catch(() => undefined); // callers get the rejection; this only keeps one nobody awaits from being unhandled
    const timer = setTimeout(() => {
      const w = this.waits.get(key);
      this.waits.delete(key);
      this.expired.delete(key);
      this.expired.add(key);
      if (this.expired.size > 1000) this.expired.delete(this.expired.values().next().value!);
      w?.reject(new Error(`agent ${this.name} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    this.waits.set(key, { ...settle, timer, answer });
    this.send(m);
    return answer as Promise<T>;
  }

  private takeList(ids: number[]): void {
    this.activeRuns = new Set(ids);
    this.activeRunsCut = ids.length >= MAX_ACTIVE_RUNS;
    this.listVersion = ++listsReceived;
  }

  /** An answer to a request that timed out: logged and dropped, once per request. */
  private lateAnswer(key: string): boolean {
    if (!this.expired.delete(key)) return false;
    this.hub.logger.info({ agent: this.name, request: key }, 'late answer from the agent to a request that timed out; ignored');
    return true;
  }

  /** Resolves when every report received so far is committed (or failed). */
  settled(): Promise<void> {
    return this.chain;
  }

  private onClose(code: number, reason: string): void {
    const wasReady = this.connectedAt > 0;
    this.state = 'closed';
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.ackTimer);
    for (const w of this.waits.values()) {
      clearTimeout(w.timer);
      w.reject(new Error(`connection to agent ${this.name} closed`));
    }
    this.waits.clear();
    if (wasReady) this.hub.offline(this, `connection closed (${code}${reason ? ` ${reason}` : ''})`);
  }
}
