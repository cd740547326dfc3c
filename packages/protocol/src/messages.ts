import { z } from 'zod';

/**
 * The wire protocol between server and agent (brief §8), one definition for both sides. Every frame is one
 * JSON object with a `type`; `parseAgentMessage`/`parseServerMessage` validate a frame and never throw.
 * Version rules: see docs/protocol.md. Bump PROTOCOL_VERSION on any incompatible change; the server accepts
 * agents speaking MIN_PROTOCOL_VERSION…PROTOCOL_VERSION.
 */
export const PROTOCOL_VERSION: number = 3;
export const MIN_PROTOCOL_VERSION: number = 1;
/** Largest frame either side accepts (ws maxPayload). An output chunk (binary, 512 KiB) fits with room to spare. */
export const MAX_FRAME_BYTES = 1024 * 1024;
/** Largest raw output chunk in a version-1 (JSON, base64) `report` frame. */
export const MAX_CHUNK_BYTES = 64 * 1024;
/**
 * Largest raw output chunk in a version-2 binary `output` frame. Bulk output travels in few large chunks (one
 * store row, one frame each); interactive output is still flushed on the agent's interval, whatever its size.
 */
export const MAX_BINARY_CHUNK_BYTES = 512 * 1024;
/** WebSocket path on the server. */
export const AGENT_PATH = '/api/v1/agent';

const runId = z.number().int().positive();
const attempt = z.number().int().min(1);
const at = z.number().int().nonnegative();
const text = (max: number) => z.string().max(max);
const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/);

export const capabilities = z.strictObject({
  command: z.boolean(),
  shell: z.boolean(),
  node: z.boolean(),
  checks: z.strictObject({ builtin: z.boolean(), plugin: z.boolean(), node: z.boolean() }),
});
export type Capabilities = z.output<typeof capabilities>;

export const hostFacts = z.record(z.string().max(64), z.union([z.string().max(1024), z.number(), z.boolean(), z.null()]));
export type HostFacts = z.output<typeof hostFacts>;

// ── Items of the agent's outbound queue: each travels in a `report` frame with a queue sequence number ──

export const startedItem = z.strictObject({ kind: z.literal('started'), runId, attempt, at, pid: z.number().int().optional() });
export const outputItem = z.strictObject({
  kind: z.literal('output'), runId, attempt, at,
  stream: z.enum(['stdout', 'stderr']),
  /** Per run and stream, from 1: the store keeps each (run, stream, chunk) once. */
  chunk: z.number().int().positive(),
  /** Raw bytes, base64. */
  data: z.string().max(Math.ceil(MAX_CHUNK_BYTES / 3) * 4 + 4).regex(/^[A-Za-z0-9+/]*={0,2}$/),
});
export const truncatedItem = z.strictObject({ kind: z.literal('truncated'), runId, attempt, at, droppedBytes: z.number().int().nonnegative() });
export const stepItem = z.strictObject({
  kind: z.literal('step'), runId, attempt, at,
  /** Per run, from 1. */
  step: z.number().int().positive(),
  stepKind: z.enum(['progress', 'message']),
  text: text(4096),
  data: z.unknown().optional(),
});
export const finishedItem = z.strictObject({
  kind: z.literal('finished'), runId, attempt, at,
  exitCode: z.number().int().min(0).max(255).nullable(),
  signal: z.string().max(16).nullable(),
  timedOut: z.boolean(),
  error: text(2048).optional(),
  result: z.unknown().optional(),
});
export const lostItem = z.strictObject({ kind: z.literal('lost'), runId, attempt, at, reason: text(1024) });

/**
 * Protocol 2: an output item travels as a binary frame (see binary.ts) whose header is this object, followed by
 * the raw bytes, so that bulk output is neither base64-encoded nor parsed as JSON text.
 */
export const outputHeader = z.strictObject({
  type: z.literal('output'), seq: z.number().int().positive(), runId, attempt, at,
  stream: z.enum(['stdout', 'stderr']),
  chunk: z.number().int().positive(),
});
export type OutputHeader = z.output<typeof outputHeader>;

export const queueItem = z.discriminatedUnion('kind', [startedItem, outputItem, truncatedItem, stepItem, finishedItem, lostItem]);
export type QueueItem = z.output<typeof queueItem>;

// ── Agent → server ──

/** The most runs an agent lists in hello and heartbeats; a list of this length may be cut, so it proves no absence. */
export const MAX_ACTIVE_RUNS = 10_000;

export const helloMessage = z.strictObject({
  type: z.literal('hello'),
  protocol: z.number().int(),
  agent: name,
  version: text(64),
  /** The agent's clock (epoch ms) when it sent hello: the server derives the clock offset. */
  clock: at,
  facts: hostFacts,
  capabilities,
  /** Identifies the agent's queue; sequence numbers are unique per queue (a wiped data dir starts a new one). */
  queueId: z.string().regex(/^[A-Za-z0-9-]{8,64}$/),
  /**
   * Runs the agent holds (running, or with reports still queued): the server does not declare them lost, and a
   * complete list (shorter than MAX_ACTIVE_RUNS) lets it declare lost a run the agent no longer has.
   */
  activeRuns: z.array(runId).max(MAX_ACTIVE_RUNS),
  draining: z.boolean(),
});
export const authMessage = z.strictObject({ type: z.literal('auth'), signature: z.string().max(256).regex(/^[A-Za-z0-9+/]*={0,2}$/) });
export const heartbeatMessage = z.strictObject({ type: z.literal('heartbeat'), at, activeRuns: z.array(runId).max(MAX_ACTIVE_RUNS), load1: z.number().optional() });
export const reportMessage = z.strictObject({ type: z.literal('report'), seq: z.number().int().positive(), item: queueItem });
export const acceptedMessage = z.strictObject({ type: z.literal('accepted'), runId, attempt });
export const rejectedMessage = z.strictObject({ type: z.literal('rejected'), runId, attempt, reason: text(1024) });
export const killResultMessage = z.strictObject({ type: z.literal('kill-result'), runId, found: z.boolean() });
export const drainingMessage = z.strictObject({ type: z.literal('draining') });
/**
 * Protocol 3: every queue item up to `seq` is on the agent's disk (fsynced). The agent sends items before their
 * fsync; the server acknowledges (and records as the agent's acknowledged sequence) only up to this watermark,
 * so that a host crash cannot make the agent reuse a sequence number the server already holds (docs/protocol.md).
 */
export const durableMessage = z.strictObject({ type: z.literal('durable'), seq: z.number().int().nonnegative() });

export const agentMessage = z.discriminatedUnion('type', [
  helloMessage, authMessage, heartbeatMessage, reportMessage, acceptedMessage, rejectedMessage, killResultMessage, drainingMessage, durableMessage,
]);
export type AgentMessage = z.output<typeof agentMessage>;
export type HelloMessage = z.output<typeof helloMessage>;

// ── Server → agent ──

export const REFUSALS = ['unknown-agent', 'wrong-key', 'disabled', 'incompatible-version', 'duplicate-connection', 'bad-handshake'] as const;
export type RefusalReason = (typeof REFUSALS)[number];

export const dispatchPayload = z.strictObject({
  runId, attempt,
  jobName: text(256),
  planDate: z.string().regex(/^\d{4}-\d{2}-\d{2}$/),
  nominalAt: at.nullable(),
  run: z.union([
    z.strictObject({ command: z.array(z.string()).min(1) }),
    z.strictObject({ shell: z.string().min(1) }),
    z.strictObject({ node: z.string().min(1), config: z.unknown().optional(), args: z.array(z.string()).optional() }),
  ]),
  env: z.record(z.string(), z.string()),
  secrets: z.array(z.string()),
  cwd: z.string().optional(),
  runAs: z.strictObject({ user: z.string(), group: z.string().optional() }).optional(),
  timeoutMs: z.number().int().positive().optional(),
  killGraceMs: z.number().int().nonnegative(),
  maxOutputBytes: z.number().int().positive(),
});
export type DispatchPayloadMessage = z.output<typeof dispatchPayload>;

export const challengeMessage = z.strictObject({ type: z.literal('challenge'), nonce: z.string().min(16).max(128), serverTime: at });
export const welcomeMessage = z.strictObject({ type: z.literal('welcome'), serverTime: at, heartbeatMs: z.number().int().positive() });
export const refusedMessage = z.strictObject({ type: z.literal('refused'), reason: z.enum(REFUSALS), message: text(1024) });
export const dispatchMessage = z.strictObject({ type: z.literal('dispatch'), payload: dispatchPayload });
export const killMessage = z.strictObject({ type: z.literal('kill'), runId });
/** Cumulative: every item with a sequence number up to `seq` is committed on the server. */
export const ackMessage = z.strictObject({ type: z.literal('ack'), seq: z.number().int().nonnegative() });

export const serverMessage = z.discriminatedUnion('type', [challengeMessage, welcomeMessage, refusedMessage, dispatchMessage, killMessage, ackMessage]);
export type ServerMessage = z.output<typeof serverMessage>;

/** WebSocket close codes; the close reason text says why in words. */
export const CLOSE = {
  /** The server is stopping (standard "going away"). */
  goingAway: 1001,
  /** A frame larger than MAX_FRAME_BYTES (sent by `ws` itself). */
  tooLarge: 1009,
  /** The server could not commit a report; the agent reconnects and re-sends it. */
  serverError: 1011,
  /** Handshake refused; a `refused` frame with the reason precedes it. */
  refused: 4001,
  /** The peer broke the protocol (invalid frame, unexpected message, run of another agent, sequence replay). */
  protocolError: 4002,
  /** The connection was silent for too long or replaced. */
  timeout: 4003,
} as const;
