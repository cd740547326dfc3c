import { appendFileSync, closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import {
  CLOSE, type DispatchPayloadMessage, encode, encodeOutputFrame, fitCloseReason, type HelloMessage, MAX_FRAME_BYTES, parseRejectionReason, parseServerMessage, type QueueItem,
  type ServerMessage, signChallenge,
} from '@batchalyzer/protocol';
import type { AgentConfig } from './config.js';
import type { Log } from './log.js';
import type { AgentItem, DiskQueue } from './queue.js';

/** What the link asks of the agent. */
export interface LinkHandlers {
  hello(): Omit<HelloMessage, 'type' | 'clock'>;
  /** Returns null when accepted, or the reason for rejecting the dispatch. */
  dispatch(payload: DispatchPayloadMessage): string | null;
  kill(runId: number): boolean;
  activeRuns(): number[];
}

/**
 * Protocol 3: the durable watermark is reported at most this often (a frame each side per sync round was ~2 frames
 * a run more, e2e-true); it only lets the server acknowledge, which frees the queue, and sending never waits for it.
 */
const DURABLE_REPORT_MS = 10;

/**
 * A connection that stayed up this long proved the server works: the reconnect back-off starts over. A welcome alone
 * does not (see scheduleReconnect).
 */
export const STABLE_LINK_MS = 5_000;

/** Bytes sent and not yet written to the socket; acks (after the server's commit) do not gate sending. */
const MAX_IN_FLIGHT = 8 * 1024 * 1024;

/**
 * The agent's side of the connection (brief §8): connects out, proves its key over the server's challenge,
 * sends queued items in order from the first unacknowledged one, and reconnects with exponential back-off
 * and jitter, trying the server URLs in turn. Refusals are logged with their reason and retried, never fatal.
 */
/** Named rejections a minute that may restart the reconnect back-off (fastRetryAllowed). */
const FAST_RETRIES = 10;

export class ServerLink {
  private ws: WebSocket | undefined;
  private urlIndex = 0;
  private failures = 0;
  private ready = false;
  private stopped = false;
  private cursor = 0;
  private inFlight = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private fastRetries: number[] = [];
  private lastFrameAt = 0;
  private heartbeatMs = 10_000;
  private connectedOnce = false;
  /** When the current connection was welcomed, by performance.now() (monotonic: a wall-clock step is no uptime). */
  private welcomedAt = 0;
  /** Rejections (4002 closes) charged to each queued item, by sequence number; three and it is skipped. */
  private readonly rejections = new Map<number, number>();
  /**
   * Items moved to rejected.log and not acknowledged yet: never sent again, and acknowledged here once they are the
   * head of the queue (settleSkipped), unless the server's ack of a later item passes them first.
   */
  private readonly skipped = new Set<number>();
  /** Memory of binary frames handed to ws and not yet written (or failed): how many sends each. */
  private readonly held = new WeakMap<ArrayBufferLike, number>();
  /** The durable watermark last reported on this connection (protocol 3). */
  private durableSent = -1;
  private pumpScheduled = false;
  private durableTimer: NodeJS.Timeout | undefined;

  constructor(private readonly config: AgentConfig, private readonly queue: DiskQueue, private readonly handlers: LinkHandlers, private readonly log: Log) {
    if (this.sendsAhead) {
      // Protocol 3: items go out as soon as they are appended, before their fsync; the server acknowledges only up
      // to the durable watermark reported here, so the fsync no longer delays sending (docs/protocol.md).
      queue.on('appended', () => this.pumpSoon());
      queue.on('durable', () => {
        this.durableTimer ??= setTimeout(() => {
          this.durableTimer = undefined;
          this.reportDurable();
        }, DURABLE_REPORT_MS).unref();
      });
    } else {
      queue.on('durable', () => this.pump());
    }
    queue.on('durable', () => this.settleSkipped());
    // Items skipped before a restart stay skipped: rejected.log names them (each logged once it was on disk, so its
    // number cannot have gone to another item of this queue; lines of another queue, or of earlier versions without
    // the queue's id, are not trusted). Sent again, a known-bad report cost three more rejections.
    for (const seq of loggedRejections(join(config.dataDir, 'queue', 'rejected.log'), queue.queueId)) {
      if (seq > queue.acked && seq <= queue.lastSeq) this.skipped.add(seq);
    }
  }

  /** Whether items are sent before they are durable (protocol 3 and later). */
  private get sendsAhead(): boolean {
    return this.config.protocolVersion >= 3;
  }

  /** What may be sent: every appended item in protocol 3, only durable ones before. */
  private get sendLimit(): number {
    return this.sendsAhead ? this.queue.lastSeq : this.queue.durableSeq;
  }

  get connected(): boolean {
    return this.ready;
  }

  start(): void {
    this.stopped = false;
    this.settleSkipped();
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    clearTimeout(this.durableTimer);
    this.durableTimer = undefined;
    clearInterval(this.heartbeat);
    this.ws?.close(CLOSE.goingAway, 'agent stopping');
  }

  send(message: Parameters<typeof encode>[0]): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(encode(message));
  }

  private connect(): void {
    if (this.stopped) return;
    const url = this.config.servers[this.urlIndex % this.config.servers.length]!;
    this.log.debug(`connecting to ${url}`);
    const ws = new WebSocket(url, { maxPayload: MAX_FRAME_BYTES, handshakeTimeout: 10_000, ...maskOption(url) });
    this.ws = ws;
    let refusal: string | undefined;
    /** This side started the close (a frame it could not read): the 4002 that ws hands back is no rejection. */
    let closedHere = false;
    ws.on('open', () => {
      this.lastFrameAt = performance.now();
      ws.send(encode({ type: 'hello', ...this.handlers.hello(), clock: Date.now() }));
    });
    ws.on('message', (data: Buffer) => {
      // Closing over an unreadable frame: what follows is not acted on (a kill or dispatch whose answer could not go).
      if (closedHere) return;
      this.lastFrameAt = performance.now();
      const r = parseServerMessage(data);
      if (!r.ok) {
        this.log.warn(`invalid frame from ${url}: ${r.error.message}`);
        closedHere = true;
        try {
          // At most 123 bytes of UTF-8 (close.ts): the message can quote the server's multi-byte text, and a longer
          // reason makes ws throw here, inside the listener, which killed the agent.
          ws.close(CLOSE.protocolError, fitCloseReason(r.error.message));
        } catch {
          ws.terminate();
        }
        return;
      }
      const m = r.message;
      if (m.type === 'refused') {
        refusal = `${m.reason}: ${m.message}`;
        return;
      }
      this.onMessage(ws, url, m);
    });
    ws.on('error', (err) => this.log.debug(`connection to ${url}: ${err.message}`));
    ws.on('close', (code, reason) => {
      const wasReady = this.ready && this.ws === ws;
      if (this.ws === ws) {
        this.ready = false;
        clearInterval(this.heartbeat);
        if (wasReady && performance.now() - this.welcomedAt >= STABLE_LINK_MS) this.failures = 0;
      }
      // A 4002 over an item the queue holds proves the server works (it read, checked and looked up the report):
      // the back-off starts over, or each rejected item of a run of them waited up to --reconnect-max.
      if (code === CLOSE.protocolError && wasReady && !closedHere && this.onRejected(reason.toString()) && this.ws === ws && this.fastRetryAllowed()) this.failures = 0;
      if (refusal) this.log.warn(`refused by ${url}: ${refusal}; retrying with back-off`);
      else if (wasReady) this.log.warn(`disconnected from ${url} (${code}${reason.length ? ` ${reason.toString()}` : ''}); reconnecting`);
      if (this.ws === ws) this.scheduleReconnect();
    });
  }

  private onMessage(ws: WebSocket, url: string, m: ServerMessage): void {
    switch (m.type) {
      case 'challenge':
        ws.send(encode({ type: 'auth', signature: signChallenge(this.config.key, m.nonce, this.config.name, this.config.protocolVersion) }));
        return;
      case 'welcome':
        this.ready = true;
        this.welcomedAt = performance.now();
        this.heartbeatMs = m.heartbeatMs;
        this.cursor = this.queue.firstUnacked();
        this.inFlight = 0;
        this.durableSent = -1;
        this.log.info(`${this.connectedOnce ? 'reconnected' : 'connected'} to ${url} as ${this.config.name}`, { clockOffsetMs: m.serverTime - Date.now(), queued: this.queue.length });
        this.connectedOnce = true;
        clearInterval(this.heartbeat);
        this.heartbeat = setInterval(() => this.beat(ws), this.heartbeatMs);
        if (this.sendsAhead) this.reportDurable(); // what became durable while disconnected (or before a restart)
        this.pump();
        return;
      case 'ack': {
        const before = this.queue.acked;
        this.queue.ack(m.seq);
        if (this.queue.acked > before) this.failures = 0; // the server commits again: back-off starts over
        this.settleSkipped();
        this.pump();
        return;
      }
      case 'dispatch': {
        const why = this.handlers.dispatch(m.payload);
        const { runId, attempt } = m.payload;
        ws.send(encode(why === null ? { type: 'accepted', runId, attempt } : { type: 'rejected', runId, attempt, reason: why }));
        return;
      }
      case 'kill':
        ws.send(encode({ type: 'kill-result', runId: m.runId, found: this.handlers.kill(m.runId) }));
        return;
      default:
        return;
    }
  }

  private beat(ws: WebSocket): void {
    // A server silent for three heartbeats is gone (half-open TCP): drop the socket and reconnect. Monotonic time:
    // a wall-clock step (NTP) must not drop a healthy link.
    if (performance.now() - this.lastFrameAt > 3 * this.heartbeatMs) {
      this.log.warn('no answer from the server for three heartbeats; reconnecting');
      ws.terminate();
      return;
    }
    ws.send(encode({ type: 'heartbeat', at: Date.now(), activeRuns: this.handlers.activeRuns() }));
  }

  /** Protocol 3: tells the server how far the queue is on disk (it acknowledges nothing beyond). */
  private reportDurable(): void {
    const seq = this.queue.durableSeq;
    if (!this.ready || seq <= this.durableSent || this.ws?.readyState !== WebSocket.OPEN) return;
    this.durableSent = seq;
    this.ws.send(encode({ type: 'durable', seq }));
  }

  /** Items appended in one turn of the event loop leave together (one cork, one write). */
  private pumpSoon(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Sends sendable items (see sendLimit) in sequence order while the socket's buffer has room. */
  private pump(): void {
    const ws = this.ws;
    if (!this.ready || !ws || ws.readyState !== WebSocket.OPEN) return;
    // The frames of one group commit leave in one write (ws corks and uncorks per frame; the outer cork holds
    // them until the loop is done): one system call on each side instead of one per report.
    const socket = (ws as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
    socket?.cork();
    try {
      this.pumpFrames(ws);
    } finally {
      socket?.uncork();
    }
  }

  private pumpFrames(ws: WebSocket): void {
    const limit = this.sendLimit;
    while (this.inFlight < MAX_IN_FLIGHT && this.cursor <= limit) {
      const seq = this.queue.nextAtOrAfter(this.cursor, limit);
      if (seq === undefined) break;
      this.cursor = seq + 1;
      if (this.skipped.has(seq)) continue; // rejected three times (onRejected); the server does not need sequences without gaps
      const entry = this.queue.get(seq, limit);
      if (!entry) continue;
      const frame = this.frame(seq, entry.item);
      this.queue.release(seq); // the frame holds the bytes now; a re-send after a reconnect reads them back
      this.inFlight += frame.length;
      // A binary frame is a view of the item's buffer: counted until ws is done with it (see sending()).
      const held = typeof frame === 'string' ? undefined : frame.buffer;
      if (held) this.held.set(held, (this.held.get(held) ?? 0) + 1);
      ws.send(frame, { binary: typeof frame !== 'string' }, () => {
        if (held) {
          const n = this.held.get(held)! - 1;
          if (n) this.held.set(held, n);
          else this.held.delete(held);
        }
        this.inFlight -= frame.length;
        if (this.inFlight < MAX_IN_FLIGHT / 2) this.pump();
      });
    }
  }

  /** Whether a frame over these bytes was handed to ws and its write has not completed (or failed) yet. */
  sending(data: Buffer): boolean {
    return this.held.has(data.buffer);
  }

  /** Protocol 2 sends output bytes raw in a binary frame; protocol 1 as base64 in a JSON report. */
  private frame(seq: number, item: AgentItem): string | Buffer {
    if (item.kind !== 'output') return encode({ type: 'report', seq, item });
    const { data, kind, ...header } = item;
    if (this.config.protocolVersion >= 2) return encodeOutputFrame({ type: 'output', seq, ...header }, data);
    return encode({ type: 'report', seq, item: { kind, ...header, data: data.toString('base64') } as QueueItem });
  }

  /**
   * The server closed the connection with 4002. A server of this release names the report it rejected (`[seq N] …`,
   * protocol close.ts); that item is charged. Under protocol 3 the server acknowledges only up to min(committed, our
   * durable watermark), and it closes on an invalid frame before it commits the reports received before it, so the
   * first unacknowledged item is often a good one: charging it would move good reports (a run's `finished`) to
   * rejected.log while the bad one is sent again forever. `[seq -] …` (a violation that is no queued report's fault:
   * a second or late answer, a replay) charges nothing. A reason without a prefix (a server of an earlier release)
   * keeps the old rule: the first unacknowledged item. A 4002 this agent started itself (a server frame it could not
   * read; ws hands the code back) is never a rejection and does not get here. A named item that is not on disk yet
   * is not charged: a crash could give its number to another item, and rejected.log would name the wrong report.
   *
   * Returns true when the server named an item the queue holds: it read and checked the report, so it works, and
   * the reconnect back-off starts over (a run of rejected items no longer waits up to --reconnect-max each).
   *
   * An item rejected three times is appended to DATA/queue/rejected.log and skipped, also when it is not the head:
   * - the items before it are not touched: they are sent again after the reconnect as usual, and acknowledged when
   *   committed;
   * - the server only requires that sequence numbers increase on a connection (a repeat is a replay), never that
   *   they are consecutive, so a connection that goes ..., N-1, N+1 is accepted; its cumulative ack for N+1 or later
   *   covers N too, and the queue forgets N with it;
   * - if nothing after N is acknowledged first, N is acknowledged here once it is the head and on disk
   *   (settleSkipped), which is what the old rule did at once: the queue's `acked` never passes an unacknowledged
   *   item before N, and never passes the durable watermark.
   * Numbering is the agent's and never reused, so a gap cannot make the server take a new report for a replay. The
   * skip survives a restart: the constructor reloads what rejected.log names for this queue (its id is in each line).
   */
  private onRejected(text: string): boolean {
    const { seq: named, reason, noItem } = parseRejectionReason(text);
    const head = this.queue.firstUnacked();
    for (const s of this.rejections.keys()) if (s < head) this.rejections.delete(s);
    if (noItem) {
      this.log.warn(`the server closed the connection over a protocol violation that is no queued report's fault (${reason}); nothing is charged`);
      return false;
    }
    let seq: number;
    if (named === undefined) {
      if (head > this.queue.durableSeq) return false;
      seq = head;
    } else if (named < head || named > this.queue.lastSeq || this.skipped.has(named) || this.queue.nextAtOrAfter(named, this.queue.lastSeq) !== named) {
      // (The index answers whether the queue holds it; get() would read the whole record back from disk.)
      this.log.warn(`the server rejected report ${named}, which is not in the queue (first unacknowledged ${head}); nothing is charged`);
      return false;
    } else if (named > this.queue.durableSeq) {
      // Not on disk yet: a crash now could give its number to another item after the restart, and rejected.log would
      // name a sequence that is not the rejected report's. It is sent again after the reconnect, when it is on disk;
      // meanwhile the back-off grows (a disk whose fsync hangs must not make the agent reconnect every 200 ms).
      this.log.warn(`the server rejected report ${named}, which is not on disk yet; it is charged once it is`);
      return false;
    } else seq = named;
    const count = (this.rejections.get(seq) ?? 0) + 1;
    this.rejections.set(seq, count);
    if (count < 3) return named !== undefined;
    this.rejections.delete(seq);
    const entry = this.queue.get(seq, this.queue.lastSeq);
    const item = entry?.item.kind === 'output' ? { ...entry.item, data: entry.item.data.toString('base64') } : entry?.item;
    // `queue` and `seq` before the item: a restart reloads them (loggedRejections) without the item mattering.
    appendFileSync(join(this.config.dataDir, 'queue', 'rejected.log'), `${JSON.stringify({ at: new Date().toISOString(), queue: this.queue.queueId, seq, reason, item })}\n`);
    this.skipped.add(seq);
    this.settleSkipped();
    this.log.error(`the server rejected queued report ${seq} three times (${reason}); it was moved to rejected.log and skipped`);
    return named !== undefined;
  }

  /**
   * A named rejection restarts the back-off at most FAST_RETRIES times a minute: a stream of bad reports (output of
   * a run the server pruned while the agent was away, thousands of chunks) then costs 3 reconnects an item at the
   * 200 ms step for the first few and the normal back-off after, not a reconnect storm for as long as it lasts.
   */
  private fastRetryAllowed(): boolean {
    const now = performance.now();
    this.fastRetries = this.fastRetries.filter((t) => now - t < 60_000);
    if (this.fastRetries.length >= FAST_RETRIES) return false;
    this.fastRetries.push(now);
    return true;
  }

  /** Acknowledges skipped items that are the head of the queue and on disk (see onRejected). */
  private settleSkipped(): void {
    if (this.skipped.size === 0) return;
    for (const s of this.skipped) if (s <= this.queue.acked) this.skipped.delete(s);
    for (;;) {
      const head = this.queue.firstUnacked();
      if (!this.skipped.has(head) || head > this.queue.durableSeq) return;
      this.queue.ack(head);
      this.skipped.delete(head);
    }
  }

  /**
   * Exponential back-off with jitter in [50%, 100%] of the step, capped. It starts over only once a connection proved
   * useful: the server acknowledged something new, or the connection stayed up STABLE_LINK_MS. A welcome alone does
   * not: a server whose store fails welcomes the agent and closes with 1011 at its first report, and resetting on
   * the welcome had every agent reconnect (and re-send its queue) every 200 ms for as long as the store was down.
   */
  private scheduleReconnect(): void {
    if (this.stopped) return;
    this.urlIndex++;
    const step = Math.min(this.config.reconnect.maxMs, this.config.reconnect.minMs * 2 ** Math.min(this.failures, 20));
    this.failures++;
    const delay = Math.round(step * (0.5 + Math.random() * 0.5));
    this.retry = setTimeout(() => this.connect(), delay);
  }
}

/**
 * Whether frames to `url` may go out with an all-zero masking key. With it, `ws` neither masks nor copies the
 * payload (a random key made it copy every output byte into a new frame buffer and XOR it: ~0.1 s of agent CPU
 * per 256 MB, and as much garbage), and the server's `ws` does not unmask either. That departs from RFC 6455 §5.3,
 * which says the key MUST be unpredictable: masking keeps a client from choosing the bytes on the wire, against
 * cache poisoning of an intermediary that misreads them (§10.3), and job output can carry bytes a third party
 * chose. So the zero key is used only where no intermediary can read the frames: `wss://` (an `https://` server
 * URL; a forward proxy sees only TLS, and a TLS-terminating reverse proxy has already done the Upgrade and passes
 * frames through) and a loopback host (127.0.0.0/8, ::1, localhost: nothing sits in between). Any
 * other `ws://` URL gets `ws`'s random key.
 */
export function zeroMaskAllowed(url: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  if (u.protocol === 'wss:') return true;
  if (u.protocol !== 'ws:') return false;
  const host = u.hostname.toLowerCase();
  return host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

const maskOption = (url: string) => (zeroMaskAllowed(url) ? { generateMask: zeroMask } : {});

function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

/** The sequence numbers rejected.log names for this queue (its last 4 MiB: the file only grows by bad reports). */
function loggedRejections(path: string, queueId: string): number[] {
  let text: string;
  try {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      const n = Math.min(size, 4 * 1024 * 1024);
      const buf = Buffer.alloc(n);
      readSync(fd, buf, 0, n, size - n);
      text = buf.toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return []; // none yet
  }
  const seqs: number[] = [];
  for (const line of text.split('\n')) {
    try {
      const { queue, seq } = JSON.parse(line) as { queue?: unknown; seq?: unknown };
      if (queue === queueId && typeof seq === 'number' && Number.isSafeInteger(seq) && seq > 0) seqs.push(seq);
    } catch {
      /* the cut first line of the tail, or a line torn by a crash */
    }
  }
  return seqs;
}
