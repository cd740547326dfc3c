import type { Generated } from 'kysely';

/** Kysely's view of the schema (migrations/0001_initial.ts). Times are epoch ms; JSON is TEXT; booleans 0/1. */
type Id = Generated<number>;

export interface DB {
  schema_migrations: { version: number; name: string; checksum: string; applied_at: number };
  settings: { key: string; value: string; updated_at: number };
  audit_log: { id: Id; at: number; actor: string; action: string; target: string; detail: string | null };
  agent_groups: { name: string; members: string; updated_at: number };
  resources: { name: string; kind: 'pool' | 'rate'; capacity: number; window_ms: number | null; spec: string; updated_at: number };
  jobs: { name: string; spec: string; enabled: number; revision: Generated<number>; updated_at: number };
  checks: { name: string; spec: string; enabled: number; updated_at: number };
  notify_rules: { name: string; spec: string; updated_at: number };
  secrets: { name: string; value: string; updated_at: number };
  agents: {
    name: string; key_hash: string; enabled: Generated<number>; draining: Generated<number>; status: Generated<string>;
    version: string | null; facts: string | null; capabilities: string | null; acked_seq: Generated<number>;
    last_seen_at: number | null; connected_at: number | null; created_at: number;
  };
  plan_days: { plan_date: string; timezone: string; starts_at: number; ends_at: number; loaded_at: number; status: Generated<string> };
  plan_entries: { plan_date: string; job_name: string; next_due_at: number | null; last_nominal_at: number | null; job_revision: number };
  runs: {
    id: Id; job_name: string; plan_date: string; nominal_at: number | null; due_at: number; origin: string; state: string;
    held: Generated<number>; attempt: Generated<number>; priority: Generated<number>; target_agent: string | null;
    agent_name: string | null; wait_reason: string | null; rerun_of: number | null; spec: string; created_at: number;
    dispatched_at: number | null; started_at: number | null; ended_at: number | null; exit_code: number | null;
    signal: string | null; end_reason: string | null; result: string | null; load_at_start: number | null;
    output_bytes: Generated<number>; output_truncated: Generated<number>; updated_at: number;
  };
  run_events: { id: Id; run_id: number; at: number; from_state: string | null; to_state: string; actor: string; detail: string | null };
  run_steps: { run_id: number; seq: number; at: number; kind: string; text: string; data: string | null };
  run_output: { run_id: number; stream: 'stdout' | 'stderr'; seq: number; at: number; data: Buffer; file_offset: number | null; file_length: number | null };
  conditions: { name: string; plan_date: string; posted_at: number; run_id: number | null; actor: string };
  condition_events: { id: Id; name: string; plan_date: string; action: 'post' | 'remove'; at: number; actor: string; run_id: number | null };
  resource_holds: { run_id: number; resource: string; units: number; acquired_at: number };
  rate_takes: { id: Id; resource: string; at: number; run_id: number };
  check_states: {
    check_name: string; agent_name: string; soft_state: string; hard_state: string; attempts: number; text: string | null;
    last_at: number; hard_since: number;
  };
  check_values: { check_name: string; agent_name: string; series: string; at: number; value: number; state: string | null };
  check_rollups: {
    check_name: string; agent_name: string; series: string; resolution_ms: number; bucket_at: number;
    count: number; sum: number; min: number; max: number;
  };
  messages: {
    id: Id; key: string; severity: string; source: string; source_ref: string | null; agent_name: string | null;
    job_name: string | null; text: string; status: string; count: Generated<number>; parent_id: number | null;
    first_at: number; last_at: number; deferred_until: number | null; resolved_at: number | null;
  };
  message_events: { id: Id; message_id: number; at: number; actor: string; action: string; detail: string | null };
  notifications: {
    id: Id; message_id: number; rule_name: string; channel: string; change: string; change_key: string; status: string;
    attempts: Generated<number>; next_at: number; last_error: string | null; created_at: number; sent_at: number | null;
  };
  users: { name: string; password_hash: string; role: string; disabled: Generated<number>; created_at: number };
  api_tokens: {
    id: Id; name: string; token_hash: string; role: string; created_by: string; created_at: number;
    expires_at: number | null; last_used_at: number | null; revoked: Generated<number>;
  };
  leases: { name: string; holder: string; expires_at: number };
}
