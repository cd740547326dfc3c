import type { ApplyPlan, Definitions, JobSpec } from '@batchalyzer/core';
import type { MigrationReport } from './migrate.js';

/**
 * The store port: every persistent operation batchalyzer performs, named by what it means. Each method is
 * one transaction; operations that must be atomic (finishing a run, dispatching it with its resources) are a
 * single call. Both adapters (SQLite, PostgreSQL) pass the same conformance suite (test/conformance.ts).
 */

export const RUN_STATES = [
  'waiting', 'dispatched', 'running', 'succeeded', 'warning', 'failed', 'timed-out', 'cancelled', 'lost', 'skipped',
] as const;
export type RunState = (typeof RUN_STATES)[number];
export const ACTIVE_STATES: readonly RunState[] = ['waiting', 'dispatched', 'running'];
export const END_STATES: readonly RunState[] = ['succeeded', 'warning', 'failed', 'timed-out', 'cancelled', 'lost', 'skipped'];
export type EndState = Exclude<RunState, 'waiting' | 'dispatched' | 'running'>;

export type RunOrigin = 'schedule' | 'manual' | 'rerun' | 'order' | 'catch-up';

export interface NewRun {
  jobName: string;
  planDate: string;
  nominalAt: number | null;
  dueAt: number;
  origin: RunOrigin;
  priority: number;
  targetAgent?: string | null;
  spec: JobSpec;
  rerunOf?: number | null;
  held?: boolean;
  /** Record the occurrence as skipped (ended at once) with this reason instead of waiting. */
  skipped?: string;
}

export interface PlanDayRecord {
  planDate: string;
  timezone: string;
  startsAt: number;
  endsAt: number;
  loadedAt: number;
}

export interface PlanEntryRecord {
  planDate: string;
  jobName: string;
  nextDueAt: number | null;
  lastNominalAt: number | null;
  jobRevision: number;
}

export interface RunRecord {
  id: number;
  jobName: string;
  planDate: string;
  nominalAt: number | null;
  dueAt: number;
  origin: RunOrigin;
  state: RunState;
  held: boolean;
  attempt: number;
  priority: number;
  targetAgent: string | null;
  agentName: string | null;
  waitReason: unknown;
  rerunOf: number | null;
  spec: JobSpec;
  createdAt: number;
  /**
   * When the row last changed state, hold, attempt or agent (wait reasons and output counters do not count):
   * equal to createdAt for a run nothing has touched since it was made (see the engine's runs created ahead).
   */
  updatedAt: number;
  dispatchedAt: number | null;
  startedAt: number | null;
  endedAt: number | null;
  exitCode: number | null;
  signal: string | null;
  endReason: string | null;
  result: unknown;
  outputBytes: number;
  outputTruncated: boolean;
}

export interface RunEvent {
  at: number;
  fromState: RunState | null;
  toState: RunState;
  actor: string;
  detail: unknown;
}

export interface ConditionRef {
  name: string;
  planDate: string;
}

export interface ConditionRecord extends ConditionRef {
  postedAt: number;
  runId: number | null;
  actor: string;
}

export interface PoolTake {
  resource: string;
  units: number;
  capacity: number;
}
export interface RateTake {
  resource: string;
  capacity: number;
  windowMs: number;
}

export type DispatchResult =
  /** The engine holds the run and applies the change itself (no row comes back: it cost a parse of the spec a dispatch). */
  | { ok: true }
  | { ok: false; reason: 'not-waiting' | 'held' | 'pool-full' | 'rate-exhausted'; resource?: string };

export interface FinishRun {
  runId: number;
  state: EndState;
  at: number;
  actor: string;
  exitCode?: number | null;
  signal?: string | null;
  reason?: string | null;
  result?: unknown;
  /** Conditions to post in the same transaction (brief §6). */
  post?: ConditionRef[];
  /** End the run only if it is in one of these states (e.g. cancel: only while waiting); otherwise nothing changes. */
  onlyFrom?: RunState[];
}

export interface FinishResult {
  run: RunRecord;
  /** False when the run had already ended: nothing was changed (finishing is idempotent). */
  changed: boolean;
  posted: ConditionRef[];
}

export interface OutputChunk {
  runId: number;
  stream: 'stdout' | 'stderr';
  seq: number;
  at: number;
  data: Buffer;
}

export interface RunFilter {
  state?: RunState[];
  job?: string;
  planDate?: string;
  agent?: string;
}

export interface Page<T> {
  items: T[];
  /** Pass as `before` to get the next (older) page; absent on the last page. */
  next?: number;
}

export interface AgentRecord {
  name: string;
  enabled: boolean;
  draining: boolean;
  status: string;
  version: string | null;
  facts: unknown;
  capabilities: unknown;
  ackedSeq: number;
  lastSeenAt: number | null;
  connectedAt: number | null;
  createdAt: number;
}

export interface AgentLinkUpdate {
  status?: 'connected' | 'stale' | 'missing' | 'disconnected';
  lastSeenAt?: number;
  connectedAt?: number | null;
  version?: string | null;
  facts?: unknown;
  capabilities?: unknown;
  draining?: boolean;
}

export interface RunStep {
  runId: number;
  seq: number;
  at: number;
  kind: 'progress' | 'message' | 'result';
  text: string;
  data?: unknown;
}

export type Severity = 'info' | 'warning' | 'critical';
export type MessageStatus = 'open' | 'acknowledged' | 'deferred' | 'resolved';

export interface RaiseMessage {
  key: string;
  severity: Severity;
  source: 'job' | 'run' | 'check' | 'agent' | 'system';
  text: string;
  at: number;
  actor: string;
  sourceRef?: string | null;
  agentName?: string | null;
  jobName?: string | null;
}

export interface MessageRecord {
  id: number;
  key: string;
  severity: Severity;
  source: RaiseMessage['source'];
  sourceRef: string | null;
  agentName: string | null;
  jobName: string | null;
  text: string;
  status: MessageStatus;
  count: number;
  firstAt: number;
  lastAt: number;
  deferredUntil: number | null;
  resolvedAt: number | null;
}

export interface MessageEvent {
  at: number;
  actor: string;
  action: string;
  detail: unknown;
}

export type Role = 'viewer' | 'operator' | 'admin';

export interface TokenRecord {
  id: number;
  name: string;
  role: Role;
  createdBy: string;
  createdAt: number;
  expiresAt: number | null;
  lastUsedAt: number | null;
  revoked: boolean;
}

export interface CheckValue {
  checkName: string;
  agentName: string;
  series: string;
  at: number;
  value: number;
  state?: string | null;
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  /** A human description (file path or redacted URL). */
  readonly location: string;
  migrate(): Promise<MigrationReport>;
  schemaVersion(): Promise<number>;
  ping(): Promise<void>;
  close(): Promise<void>;

  // Definitions (jobs-as-code)
  loadDefinitions(): Promise<Definitions>;
  /** Writes exactly the plan's changes, with an audit entry each, in one transaction. */
  applyDefinitions(plan: ApplyPlan, actor: string, at: number): Promise<void>;
  /**
   * Grows whenever definitions change (also from another process, e.g. the CLI next to a running server); other
   * audited actions (token revokes) leave it as it is.
   */
  definitionsVersion(): Promise<number>;

  // Agents
  registerAgent(name: string, keyHash: string, at: number): Promise<AgentRecord>;
  getAgent(name: string): Promise<AgentRecord | undefined>;
  /** The stored key hash, for authentication only (never returned by listings). */
  getAgentKeyHash(name: string): Promise<string | undefined>;
  listAgents(): Promise<AgentRecord[]>;
  setAgentKeyHash(name: string, keyHash: string): Promise<void>;
  /** Records what the agent link learned: connection state, version, host facts, capabilities, draining. */
  updateAgentLink(name: string, link: AgentLinkUpdate): Promise<void>;
  setAgentEnabled(name: string, enabled: boolean): Promise<void>;
  removeAgent(name: string): Promise<void>;

  // Runs
  createRuns(runs: NewRun[], actor: string, at: number): Promise<RunRecord[]>;
  getRun(id: number): Promise<RunRecord | undefined>;
  listRuns(filter: RunFilter, page: { limit: number; before?: number }): Promise<Page<RunRecord>>;
  runEvents(id: number): Promise<RunEvent[]>;
  /** Moves a waiting run to an agent, taking all its resources or none, never beyond capacity. */
  dispatchRun(input: { runId: number; agent: string; at: number; actor: string; pools: PoolTake[]; rates: RateTake[] }): Promise<DispatchResult>;
  /** Moves a dispatched run to running; false when it is not dispatched (any more) or does not exist. */
  startRun(runId: number, at: number): Promise<boolean>;
  /** Ends a run: state, exit details, posted conditions, released resources: all or nothing. */
  finishRun(input: FinishRun): Promise<FinishResult>;
  /** Puts a failed attempt back to waiting for another attempt at `dueAt`, releasing its resources. */
  retryRun(input: { runId: number; at: number; dueAt: number; actor: string; reason: string; exitCode?: number | null; signal?: string | null }): Promise<RunRecord | undefined>;
  setRunHeld(runId: number, held: boolean, actor: string, at: number): Promise<RunRecord | undefined>;
  /** Puts a dispatched run that never reached its agent back to waiting (same attempt), releasing its pool units. */
  requeueRun(input: { runId: number; at: number; actor: string; reason: string }): Promise<RunRecord | undefined>;
  /** Units of each pool currently held, derived from the holders. */
  resourceUsage(): Promise<Record<string, number>>;
  resourceHolders(resource: string): Promise<{ runId: number; units: number }[]>;
  rateTakesSince(resource: string, since: number): Promise<number>;

  // Plan days (brief §4)
  /** Creates a plan day with its entries unless it exists; returns whether it was created. */
  createPlanDay(day: PlanDayRecord, entries: PlanEntryRecord[]): Promise<boolean>;
  planDays(): Promise<PlanDayRecord[]>;
  /** Entries that still have an occurrence to come (next_due_at set), over all plan days. */
  pendingPlanEntries(): Promise<PlanEntryRecord[]>;
  planEntries(planDate: string): Promise<PlanEntryRecord[]>;
  upsertPlanEntries(entries: PlanEntryRecord[]): Promise<void>;
  /** Creates the runs of due occurrences and moves their entries on, in one transaction (no loss, no duplicate). */
  advancePlan(entries: PlanEntryRecord[], runs: NewRun[], actor: string, at: number): Promise<RunRecord[]>;
  /**
   * Takes back runs the engine created ahead of their due time (docs/scheduling.md, "Runs created ahead") and
   * moves their plan entries, in one transaction: every listed run must still be untouched (waiting, not held,
   * origin schedule, attempt 1, updatedAt === createdAt, createdAt < nominalAt), or nothing changes and
   * EarlyRunTouchedError is thrown (an operator held, a dispatch or retry touched, or something ended one meanwhile).
   * A run with any event besides its creation is refused too, whatever its timestamps say.
   */
  withdrawEarlyRuns(runIds: number[], entries: PlanEntryRecord[]): Promise<void>;
  /**
   * The latest nominal time of a job's scheduled occurrences on a plan date that have a run (origin schedule or
   * catch-up, in any state, ended ones included), leaving out the runs `except`; null if there is none.
   */
  lastOccurrenceAt(planDate: string, jobName: string, except: number[]): Promise<number | null>;
  /** Runs that have not ended: waiting, dispatched or running. */
  activeRuns(): Promise<RunRecord[]>;
  setWaitReasons(items: { runId: number; reason: unknown }[]): Promise<void>;
  allResourceHolds(): Promise<{ runId: number; resource: string; units: number }[]>;
  rateTakesAfter(since: number): Promise<{ resource: string; at: number }[]>;
  /** Retention: deletes ended runs (with their output) that ended before `before`, and old plan days and conditions. */
  pruneBefore(before: number, planDateBefore: string): Promise<{ runs: number }>;

  // Output
  /** Stores chunks once each (idempotent by run, stream and sequence); returns how many were new. */
  appendOutput(chunks: OutputChunk[]): Promise<number>;
  readOutput(runId: number, stream: 'stdout' | 'stderr'): Promise<Buffer>;
  /** Marks that older output was dropped to respect the run's output cap. */
  markOutputTruncated(runId: number): Promise<void>;
  /** Progress steps and messages from node scripts; idempotent by run and sequence. */
  appendRunSteps(steps: RunStep[]): Promise<number>;
  runSteps(runId: number): Promise<RunStep[]>;

  // Conditions
  postCondition(c: ConditionRef & { actor: string; at: number; runId?: number | null }): Promise<boolean>;
  removeCondition(c: ConditionRef & { actor: string; at: number }): Promise<boolean>;
  listConditions(filter: { planDate?: string; name?: string }): Promise<ConditionRecord[]>;

  // Messages
  raiseMessage(m: RaiseMessage): Promise<{ message: MessageRecord; created: boolean }>;
  resolveMessage(key: string, actor: string, at: number, why?: string): Promise<MessageRecord | undefined>;
  setMessageStatus(id: number, status: Exclude<MessageStatus, 'resolved'> | 'resolved', actor: string, at: number, until?: number | null): Promise<MessageRecord | undefined>;
  listMessages(filter: { status?: MessageStatus[] }, page: { limit: number; before?: number }): Promise<Page<MessageRecord>>;
  messageEvents(id: number): Promise<MessageEvent[]>;

  // Checks
  recordCheckValues(values: CheckValue[]): Promise<void>;
  checkValues(checkName: string, agentName: string, series: string, since: number): Promise<{ at: number; value: number }[]>;

  // Auth
  createToken(t: { name: string; tokenHash: string; role: Role; createdBy: string; at: number; expiresAt?: number | null }): Promise<TokenRecord>;
  findTokenByHash(hash: string): Promise<TokenRecord | undefined>;
  listTokens(): Promise<TokenRecord[]>;
  revokeToken(id: number, actor: string, at: number): Promise<boolean>;
  upsertUser(u: { name: string; passwordHash: string; role: Role; at: number }): Promise<void>;
  getUser(name: string): Promise<{ name: string; passwordHash: string; role: Role; disabled: boolean } | undefined>;
}
