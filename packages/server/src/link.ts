/**
 * The contract between the scheduling engine (engine/) and the agent link (agents/). The engine decides and
 * calls `AgentLink`; the link authenticates agents, carries messages, and hands every validated report from an
 * agent to `RunReports`, acknowledging it to the agent only after the returned promise resolved (i.e. after the
 * store committed it). Neither side imports the other's implementation.
 */

/** What one connected, authenticated agent can do right now. */
export interface ConnectedAgent {
  name: string;
  connectedAt: number;
  draining: boolean;
  version: string;
  /** Kinds of work the agent accepts; a kind it refuses is never dispatched to it. */
  capabilities: AgentCapabilities;
  /**
   * Runs the agent lists as its own (running, or with reports still queued; hello and every heartbeat, plus
   * dispatches it accepted since). The link's live set, not a copy: read it, never change it.
   */
  activeRuns: ReadonlySet<number>;
  /** The agent's last list was at the protocol's limit (MAX_ACTIVE_RUNS), so it may be cut: it proves no absence. */
  activeRunsCut: boolean;
  /** Increases with every list the agent sends, across connections: a newer list is a fresh statement. */
  listVersion: number;
}

export interface AgentCapabilities {
  command: boolean;
  shell: boolean;
  node: boolean;
  checks: { builtin: boolean; plugin: boolean; node: boolean };
}

/** Everything the agent needs to execute one attempt of a run. */
export interface DispatchPayload {
  runId: number;
  attempt: number;
  jobName: string;
  planDate: string;
  nominalAt: number | null;
  run: { command: string[] } | { shell: string } | { node: string; config?: unknown; args?: string[] };
  /** Job environment (secrets already resolved); the agent adds its base env and the BATCHALYZER_* variables. */
  env: Record<string, string>;
  /** Values to mask as `***` in stored output (resolved secrets). */
  secrets: string[];
  cwd?: string;
  runAs?: { user: string; group?: string };
  timeoutMs?: number;
  killGraceMs: number;
  maxOutputBytes: number;
}

export interface AgentLink {
  connected(): ConnectedAgent[];
  /** Sends a run to an agent and resolves once the agent acknowledged it; rejects when it cannot be delivered. */
  dispatch(agent: string, payload: DispatchPayload): Promise<void>;
  /** Asks the agent to terminate the run's whole process group (SIGTERM, then SIGKILL after the grace period). */
  kill(agent: string, runId: number): Promise<void>;
}

/** How an attempt ended on the agent. The engine maps this onto run states using the job's outcome rules. */
export interface FinishReport {
  runId: number;
  attempt: number;
  at: number;
  exitCode: number | null;
  /** Signal name when the process died by a signal (`SIGKILL`). */
  signal: string | null;
  timedOut: boolean;
  /** Set when the agent refused or could not start the work (not allowed, command not found, …). */
  error?: string;
  /** A node script's result object. */
  result?: unknown;
}

export interface OutputReport {
  runId: number;
  stream: 'stdout' | 'stderr';
  seq: number;
  at: number;
  data: Buffer;
}

export interface StepReport {
  runId: number;
  seq: number;
  at: number;
  kind: 'progress' | 'message';
  text: string;
  data?: unknown;
}

export interface RunReports {
  started(agent: string, runId: number, attempt: number, at: number): Promise<void>;
  output(agent: string, chunks: OutputReport[]): Promise<void>;
  truncated(agent: string, runId: number): Promise<void>;
  steps(agent: string, steps: StepReport[]): Promise<void>;
  finished(agent: string, report: FinishReport): Promise<void>;
  /** The agent came back without the run (it restarted): the run is lost on that agent. */
  lost(agent: string, runId: number, reason: string): Promise<void>;
  /**
   * The agent and attempt that a dispatched or running run belongs to, from the engine's memory (it writes every
   * dispatch), so that checking a report's ownership costs no store read; undefined when the engine does not
   * hold the run (ended, unknown): the link then asks the store.
   */
  holder?(runId: number): { agent: string; attempt: number } | undefined;
}
