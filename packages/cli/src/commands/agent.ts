import { writeFileSync } from 'node:fs';
import { emptyDefinitions, planApply } from '@batchalyzer/core';
import { generateAgentKey } from '@batchalyzer/protocol';
import type { Store } from '@batchalyzer/store';

/**
 * Agent administration (brief §8): register, rotate-key, enable/disable, remove, list. They work on the store
 * directly, like `apply`. Only the public half of a key is stored; the key itself is shown once.
 */

export interface KeyOutput {
  /** Write the key to this file (mode 0600) instead of printing it. */
  keyFile?: string | undefined;
}

function deliverKey(name: string, key: string, opts: KeyOutput): string[] {
  if (opts.keyFile) {
    writeFileSync(opts.keyFile, `${key}\n`, { mode: 0o600 });
    return [`key written to ${opts.keyFile} (mode 0600); it is not shown again`];
  }
  return [
    `key: ${key}`,
    `This key is shown once: the server keeps only its public half. Put it in the agent's key file (mode 0600) and run`,
    `  batchalyzer agent --server URL --name ${name} --key-file FILE`,
  ];
}

export async function registerAgent(store: Store, name: string, opts: KeyOutput & { groups: string[]; actor: string; defaultTimezone: string }): Promise<string[]> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(name)) {
    throw new Error(`"${name}" is not a valid agent name; use letters, digits, ".", "_" and "-" (at most 128, starting with a letter or digit)`);
  }
  const { key, publicKey } = generateAgentKey();
  await store.registerAgent(name, publicKey, Date.now());
  const lines = [`registered agent ${name}`, ...deliverKey(name, key, opts)];
  if (opts.groups.length) lines.push(...(await addToGroups(store, name, opts.groups, opts.actor, opts.defaultTimezone)));
  return lines;
}

/**
 * Group membership lives in the definitions (brief §8: kept on the server, so a host cannot promote itself).
 * Registration adds the agent to the groups through the same validated, audited path as `apply`.
 */
async function addToGroups(store: Store, name: string, groups: string[], actor: string, defaultTimezone: string): Promise<string[]> {
  const current = await store.loadDefinitions();
  const desired = emptyDefinitions();
  for (const g of groups) desired.groups[g] = [...new Set([...(current.groups[g] ?? []), name])];
  const plan = planApply(current, desired, { defaultTimezone });
  if (plan.changes.length) await store.applyDefinitions(plan, actor, Date.now());
  return [
    `added ${name} to group(s) ${groups.join(', ')}`,
    `note: groups are jobs-as-code definitions; list ${name} under these groups in your YAML file, or the next \`apply\` of that file sets the members it lists`,
  ];
}

export async function rotateAgentKey(store: Store, name: string, opts: KeyOutput): Promise<string[]> {
  const { key, publicKey } = generateAgentKey();
  await store.setAgentKeyHash(name, publicKey);
  return [`new key for agent ${name}; the old key no longer authenticates (a connected agent keeps its connection until it reconnects)`, ...deliverKey(name, key, opts)];
}

export async function setAgentEnabled(store: Store, name: string, enabled: boolean): Promise<string[]> {
  await store.setAgentEnabled(name, enabled);
  return [enabled ? `agent ${name} enabled` : `agent ${name} disabled: its next connection attempt is refused (a live connection ends when it reconnects)`];
}

export async function removeAgent(store: Store, name: string): Promise<string[]> {
  await store.removeAgent(name);
  return [`agent ${name} removed`];
}

export async function listAgents(store: Store): Promise<string[]> {
  const agents = await store.listAgents();
  if (agents.length === 0) return ['no agents registered; register one with `batchalyzer agent register NAME`'];
  const rows = agents.map((a) => [
    a.name, a.enabled ? 'yes' : 'no', a.status + (a.draining ? ' (draining)' : ''), a.version ?? '-',
    a.lastSeenAt ? new Date(a.lastSeenAt).toISOString() : '-',
  ]);
  const head = ['NAME', 'ENABLED', 'STATUS', 'VERSION', 'LAST SEEN'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [fmt(head), ...rows.map(fmt)];
}
