import { MAX_FRAME_BYTES } from '@batchalyzer/protocol';

/** The server side of the agent link, configured by the composition root (brief §8). */
export interface AgentHubConfig {
  /** How often agents send a heartbeat (told to them in `welcome`). */
  heartbeatMs: number;
  /** No frame for this long: the agent is stale (still connected, maybe busy or slow). */
  staleAfterMs: number;
  /** No frame for this long: the agent is missing; a connection that is still open is dropped. */
  missingAfterMs: number;
  /** A run on an agent that stays missing this long after it went missing is reported lost. */
  lostRunLeaseMs: number;
  /** An agent must complete hello + auth within this time. */
  handshakeTimeoutMs: number;
  /** A dispatch not accepted by the agent within this time fails (the engine puts the run back). */
  dispatchTimeoutMs: number;
  maxFrameBytes: number;
  /** How often liveness is evaluated. */
  tickMs: number;
  /** Reports waiting to be committed per connection before the socket is paused (server-side backpressure). */
  maxPendingReports: number;
  /**
   * Time per event-loop turn spent committing agents' reports (all agents together) when the loop has nothing
   * else to do; when it has, reports get as much as the other work took (up to 50 ms). Accepting connections,
   * handshakes and engine passes keep their turn while reports flood in (e.g. after a restart).
   */
  reportSliceMs: number;
  /**
   * How long the ack after a drain of reports waits to cover later commits too. Acks only free the agent's queue
   * (sending never waits for them), so one for several reports saves a frame each way per report (e2e-true).
   */
  ackDelayMs: number;
}

export const DEFAULT_AGENT_HUB_CONFIG: AgentHubConfig = {
  heartbeatMs: 10_000,
  staleAfterMs: 30_000,
  missingAfterMs: 90_000,
  lostRunLeaseMs: 5 * 60_000,
  handshakeTimeoutMs: 10_000,
  dispatchTimeoutMs: 15_000,
  maxFrameBytes: MAX_FRAME_BYTES,
  tickMs: 1_000,
  maxPendingReports: 256,
  reportSliceMs: 20,
  ackDelayMs: 10,
};
