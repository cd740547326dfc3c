import type { Logger } from 'pino';
import type { QueueItem } from '@batchalyzer/protocol';
import type { Store } from '@batchalyzer/store';
import type { EventBus } from '../events.js';
import type { OutputReport } from '../link.js';
import type { AgentHubConfig } from './config.js';
import type { Pacer } from './pacer.js';
import type { AgentSession } from './session.js';

/** What a session needs from the hub: shared state and the side effects of its lifecycle. */
export interface HubContext {
  readonly store: Store;
  readonly events: EventBus;
  readonly logger: Logger;
  readonly config: AgentHubConfig;
  /** Gives report commits their share of each event-loop turn. */
  readonly pacer: Pacer;
  /** Milliseconds on a clock that never steps, for measuring silence (the wall clock may jump, brief §4). */
  monotonic(): number;
  /** Registers an authenticated session under its name; returns the refusal text when another live one holds it. */
  claim(session: AgentSession): string | null;
  online(session: AgentSession): Promise<void>;
  offline(session: AgentSession, reason: string): void;
  draining(session: AgentSession): void;
  seen(session: AgentSession): void;
  /** Highest committed sequence of the session's agent queue. */
  acceptedSeq(session: AgentSession): number;
  setAcceptedSeq(session: AgentSession, seq: number): void;
  wasDispatchedTo(runId: number, agent: string): Promise<boolean>;
  /** Who holds a dispatched or running run, from the engine's memory; undefined when it does not know. */
  holderOf(runId: number): { agent: string; attempt: number } | undefined;
  /** Hands a validated report to RunReports; resolves after it is committed. */
  deliver(session: AgentSession, item: Exclude<QueueItem, { kind: 'output' }>): Promise<void>;
  /** Hands a batch of validated output chunks to RunReports (one commit); resolves after it is committed. */
  deliverOutput(session: AgentSession, chunks: OutputReport[]): Promise<void>;
}
