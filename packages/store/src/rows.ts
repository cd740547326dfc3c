import type { Selectable } from 'kysely';
import type { DB } from './db.js';
import type { AgentRecord, MessageRecord, Role, RunOrigin, RunRecord, RunState, Severity, TokenRecord } from './port.js';

/** Row ↔ record mapping: the only place that knows column spellings, 0/1 booleans and JSON text. */

const parse = (v: string | null): unknown => (v === null ? null : JSON.parse(v));

export function runFromRow(r: Selectable<DB['runs']>): RunRecord {
  return {
    id: r.id, jobName: r.job_name, planDate: r.plan_date, nominalAt: r.nominal_at, dueAt: r.due_at, origin: r.origin as RunOrigin,
    state: r.state as RunState, held: r.held === 1, attempt: r.attempt, priority: r.priority, targetAgent: r.target_agent,
    agentName: r.agent_name, waitReason: parse(r.wait_reason), rerunOf: r.rerun_of, spec: JSON.parse(r.spec), createdAt: r.created_at, updatedAt: r.updated_at,
    dispatchedAt: r.dispatched_at, startedAt: r.started_at, endedAt: r.ended_at, exitCode: r.exit_code, signal: r.signal,
    endReason: r.end_reason, result: parse(r.result), outputBytes: r.output_bytes, outputTruncated: r.output_truncated === 1,
  };
}

export function agentFromRow(r: Selectable<DB['agents']>): AgentRecord {
  return {
    name: r.name, enabled: r.enabled === 1, draining: r.draining === 1, status: r.status, version: r.version,
    facts: parse(r.facts), capabilities: parse(r.capabilities), ackedSeq: r.acked_seq, lastSeenAt: r.last_seen_at,
    connectedAt: r.connected_at, createdAt: r.created_at,
  };
}

export function messageFromRow(r: Selectable<DB['messages']>): MessageRecord {
  return {
    id: r.id, key: r.key, severity: r.severity as Severity, source: r.source as MessageRecord['source'], sourceRef: r.source_ref,
    agentName: r.agent_name, jobName: r.job_name, text: r.text, status: r.status as MessageRecord['status'], count: r.count,
    firstAt: r.first_at, lastAt: r.last_at, deferredUntil: r.deferred_until, resolvedAt: r.resolved_at,
  };
}

export function tokenFromRow(r: Selectable<DB['api_tokens']>): TokenRecord {
  return {
    id: r.id, name: r.name, role: r.role as Role, createdBy: r.created_by, createdAt: r.created_at, expiresAt: r.expires_at,
    lastUsedAt: r.last_used_at, revoked: r.revoked === 1,
  };
}
