/**
 * 0001: the whole data model of brief §2–§12. Written once for both dialects; the tokens
 * {{ID}}, {{BLOB}} are replaced per dialect (see ../migrate.ts). Times are epoch milliseconds (BIGINT),
 * JSON is TEXT, booleans are 0/1 INTEGER on both dialects, so one query codebase serves both.
 * Append-only: never edit a released migration; add 0002_….ts instead.
 */
export const name = 'initial';
export const sql = `
CREATE TABLE settings (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  updated_at BIGINT NOT NULL
);

CREATE TABLE audit_log (
  id {{ID}},
  at BIGINT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  detail TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);

-- Definitions (jobs-as-code). spec holds the canonical definition as JSON.
CREATE TABLE agent_groups (
  name TEXT PRIMARY KEY,
  members TEXT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE resources (
  name TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('pool', 'rate')),
  capacity INTEGER NOT NULL CHECK (capacity >= 1),
  window_ms BIGINT,
  spec TEXT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE jobs (
  name TEXT PRIMARY KEY,
  spec TEXT NOT NULL,
  enabled INTEGER NOT NULL DEFAULT 1,
  revision INTEGER NOT NULL DEFAULT 1,
  updated_at BIGINT NOT NULL
);
CREATE TABLE checks (
  name TEXT PRIMARY KEY,
  spec TEXT NOT NULL,
  enabled INTEGER NOT NULL DEFAULT 1,
  updated_at BIGINT NOT NULL
);
CREATE TABLE notify_rules (
  name TEXT PRIMARY KEY,
  spec TEXT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE secrets (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  updated_at BIGINT NOT NULL
);

-- Agents (brief §8). Only a hash of the key is kept.
CREATE TABLE agents (
  name TEXT PRIMARY KEY,
  key_hash TEXT NOT NULL,
  enabled INTEGER NOT NULL DEFAULT 1,
  draining INTEGER NOT NULL DEFAULT 0,
  status TEXT NOT NULL DEFAULT 'never',
  version TEXT,
  facts TEXT,
  capabilities TEXT,
  acked_seq BIGINT NOT NULL DEFAULT 0,
  last_seen_at BIGINT,
  connected_at BIGINT,
  created_at BIGINT NOT NULL
);

-- Plan days and their entries (brief §4): one entry per job per day, not one row per occurrence.
CREATE TABLE plan_days (
  plan_date TEXT PRIMARY KEY,
  timezone TEXT NOT NULL,
  starts_at BIGINT NOT NULL,
  ends_at BIGINT NOT NULL,
  loaded_at BIGINT NOT NULL,
  status TEXT NOT NULL DEFAULT 'open'
);
CREATE TABLE plan_entries (
  plan_date TEXT NOT NULL,
  job_name TEXT NOT NULL,
  next_due_at BIGINT,
  last_nominal_at BIGINT,
  job_revision INTEGER NOT NULL,
  PRIMARY KEY (plan_date, job_name)
);
CREATE INDEX plan_entries_due ON plan_entries (next_due_at);

-- Runs (brief §2 "run", §4 lifecycle). spec is the job definition as it was when the run was created.
CREATE TABLE runs (
  id {{ID}},
  job_name TEXT NOT NULL,
  plan_date TEXT NOT NULL,
  nominal_at BIGINT,
  due_at BIGINT NOT NULL,
  origin TEXT NOT NULL,
  state TEXT NOT NULL,
  held INTEGER NOT NULL DEFAULT 0,
  attempt INTEGER NOT NULL DEFAULT 1,
  priority INTEGER NOT NULL DEFAULT 0,
  target_agent TEXT,
  agent_name TEXT,
  wait_reason TEXT,
  rerun_of BIGINT,
  spec TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  dispatched_at BIGINT,
  started_at BIGINT,
  ended_at BIGINT,
  exit_code INTEGER,
  signal TEXT,
  end_reason TEXT,
  result TEXT,
  load_at_start REAL,
  output_bytes BIGINT NOT NULL DEFAULT 0,
  output_truncated INTEGER NOT NULL DEFAULT 0,
  updated_at BIGINT NOT NULL
);
CREATE INDEX runs_state_due ON runs (state, due_at);
CREATE INDEX runs_job_date ON runs (job_name, plan_date, id);
CREATE INDEX runs_date_state ON runs (plan_date, state, id);
CREATE INDEX runs_agent_state ON runs (agent_name, state);
CREATE INDEX runs_ended ON runs (ended_at);

CREATE TABLE run_events (
  id {{ID}},
  run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  at BIGINT NOT NULL,
  from_state TEXT,
  to_state TEXT NOT NULL,
  actor TEXT NOT NULL,
  detail TEXT
);
CREATE INDEX run_events_run ON run_events (run_id, id);

CREATE TABLE run_steps (
  run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  at BIGINT NOT NULL,
  kind TEXT NOT NULL,
  text TEXT NOT NULL,
  data TEXT,
  PRIMARY KEY (run_id, seq)
);

CREATE TABLE run_output (
  run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  stream TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr')),
  seq INTEGER NOT NULL,
  at BIGINT NOT NULL,
  data {{BLOB}} NOT NULL,
  PRIMARY KEY (run_id, stream, seq)
);

-- Conditions (brief §6), scoped to a plan date, with an audit trail.
CREATE TABLE conditions (
  name TEXT NOT NULL,
  plan_date TEXT NOT NULL,
  posted_at BIGINT NOT NULL,
  run_id BIGINT,
  actor TEXT NOT NULL,
  PRIMARY KEY (name, plan_date)
);
CREATE TABLE condition_events (
  id {{ID}},
  name TEXT NOT NULL,
  plan_date TEXT NOT NULL,
  action TEXT NOT NULL CHECK (action IN ('post', 'remove')),
  at BIGINT NOT NULL,
  actor TEXT NOT NULL,
  run_id BIGINT
);
CREATE INDEX condition_events_name ON condition_events (name, plan_date);

-- Resources in use (brief §7): usage is the sum over holders, never a counter that can drift.
CREATE TABLE resource_holds (
  run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  resource TEXT NOT NULL,
  units INTEGER NOT NULL CHECK (units >= 1),
  acquired_at BIGINT NOT NULL,
  PRIMARY KEY (run_id, resource)
);
CREATE INDEX resource_holds_resource ON resource_holds (resource);
CREATE TABLE rate_takes (
  id {{ID}},
  resource TEXT NOT NULL,
  at BIGINT NOT NULL,
  run_id BIGINT NOT NULL
);
CREATE INDEX rate_takes_resource_at ON rate_takes (resource, at);

-- Checks (brief §9): current state per check and agent, raw values, and rollups.
CREATE TABLE check_states (
  check_name TEXT NOT NULL,
  agent_name TEXT NOT NULL,
  soft_state TEXT NOT NULL,
  hard_state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  text TEXT,
  last_at BIGINT NOT NULL,
  hard_since BIGINT NOT NULL,
  PRIMARY KEY (check_name, agent_name)
);
CREATE TABLE check_values (
  check_name TEXT NOT NULL,
  agent_name TEXT NOT NULL,
  series TEXT NOT NULL,
  at BIGINT NOT NULL,
  value DOUBLE PRECISION NOT NULL,
  state TEXT
);
CREATE INDEX check_values_series ON check_values (check_name, agent_name, series, at);
CREATE INDEX check_values_at ON check_values (at);
CREATE TABLE check_rollups (
  check_name TEXT NOT NULL,
  agent_name TEXT NOT NULL,
  series TEXT NOT NULL,
  resolution_ms BIGINT NOT NULL,
  bucket_at BIGINT NOT NULL,
  count INTEGER NOT NULL,
  sum DOUBLE PRECISION NOT NULL,
  min DOUBLE PRECISION NOT NULL,
  max DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (check_name, agent_name, series, resolution_ms, bucket_at)
);

-- Messages (brief §10): one open message per key; repeats raise its count.
CREATE TABLE messages (
  id {{ID}},
  key TEXT NOT NULL,
  severity TEXT NOT NULL,
  source TEXT NOT NULL,
  source_ref TEXT,
  agent_name TEXT,
  job_name TEXT,
  text TEXT NOT NULL,
  status TEXT NOT NULL,
  count INTEGER NOT NULL DEFAULT 1,
  parent_id BIGINT,
  first_at BIGINT NOT NULL,
  last_at BIGINT NOT NULL,
  deferred_until BIGINT,
  resolved_at BIGINT
);
CREATE UNIQUE INDEX messages_one_live_per_key ON messages (key) WHERE status <> 'resolved';
CREATE INDEX messages_status ON messages (status, last_at);
CREATE TABLE message_events (
  id {{ID}},
  message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
  at BIGINT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  detail TEXT
);
CREATE INDEX message_events_message ON message_events (message_id, id);
CREATE TABLE notifications (
  id {{ID}},
  message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
  rule_name TEXT NOT NULL,
  channel TEXT NOT NULL,
  change TEXT NOT NULL,
  change_key TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at BIGINT NOT NULL,
  last_error TEXT,
  created_at BIGINT NOT NULL,
  sent_at BIGINT
);
CREATE UNIQUE INDEX notifications_once ON notifications (message_id, rule_name, channel, change_key);
CREATE INDEX notifications_due ON notifications (status, next_at);

-- People and tokens (brief §11). Passwords and tokens are stored as hashes only.
CREATE TABLE users (
  name TEXT PRIMARY KEY,
  password_hash TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
  disabled INTEGER NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL
);
CREATE TABLE api_tokens (
  id {{ID}},
  name TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
  created_by TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT,
  last_used_at BIGINT,
  revoked INTEGER NOT NULL DEFAULT 0
);

-- Leadership among several servers (brief §12, PostgreSQL).
CREATE TABLE leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at BIGINT NOT NULL
);
`;
