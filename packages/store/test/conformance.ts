import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyDefinitions, type JobSpec, planApply } from '@batchalyzer/core';
import { type NewRun, type Store } from '@batchalyzer/store';

/**
 * The store conformance suite: every adapter must pass it unchanged (brief §12 "both pass the same test suite").
 * `open` returns a fresh, migrated store each time it is called for the same database.
 */
/** `reopen` is left out for a store that does not outlive its object (SQLite in memory). */
export function storeConformance(label: string, open: () => Promise<Store>, reopen?: () => Promise<Store>) {
  describe(`store conformance: ${label}`, () => {
    let store: Store;
    const DAY = 86_400_000;
    const bigOutput = Buffer.from(Array.from({ length: 1_200_000 }, (_, i) => (i * 7919) % 251));
    const T0 = Date.UTC(2026, 10, 28, 12, 0, 0);
    const spec: JobSpec = { run: { shell: 'true' }, on: { agent: 'a1' } } as JobSpec;
    const newRun = (over: Partial<NewRun> = {}): NewRun => ({
      jobName: 'j', planDate: '2026-11-28', nominalAt: T0, dueAt: T0, origin: 'schedule', priority: 0, spec, ...over,
    });

    beforeAll(async () => {
      store = await open();
    });
    afterAll(async () => {
      await store?.close();
    });

    it('migrates once and records the ledger', async () => {
      const v = await store.schemaVersion();
      expect(v).toBeGreaterThanOrEqual(1);
      const again = await store.migrate();
      expect(again.applied).toEqual([]);
      expect(again.from).toBe(v);
    });

    it('stores definitions exactly and applies only the planned changes', async () => {
      const desired = emptyDefinitions();
      desired.settings = { timezone: 'Europe/Berlin', newDayAt: '06:00' };
      desired.groups = { db: ['db1', 'db2'], all: ['db'] };
      desired.resources = { 'cpu-{agent}': { pool: 4 }, api: { rate: '10/1m' } };
      desired.jobs = {
        backup: { run: { command: ['/bin/echo', 'x'] }, on: { group: 'db' }, schedule: { cron: '30 2 * * *' }, resources: { 'cpu-{agent}': 2 }, posts: { success: ['done'] } } as JobSpec,
      };
      desired.checks = { disk: { on: { group: 'all' }, builtin: { disk: '/' }, warn: '~:80' } as never };
      desired.notify = { ops: { email: ['ops@example.com'] } as never };
      const plan = planApply(await store.loadDefinitions(), desired, { defaultTimezone: 'UTC' });
      await store.applyDefinitions(plan, 'test', T0);
      expect(await store.loadDefinitions()).toEqual(desired);
      const second = planApply(await store.loadDefinitions(), desired, { defaultTimezone: 'UTC' });
      expect(second.changes).toEqual([]);
      const pruned = planApply(await store.loadDefinitions(), { ...emptyDefinitions(), groups: { db: ['db1'] } }, { defaultTimezone: 'UTC', prune: true });
      await store.applyDefinitions(pruned, 'test', T0 + 1);
      const after = await store.loadDefinitions();
      expect(after.groups).toEqual({ db: ['db1'] });
      expect(after.jobs).toEqual({});
      expect(after.settings).toEqual(desired.settings);
    });

    it('registers agents with a key hash that listings never include', async () => {
      const a = await store.registerAgent('a1', 'hash-1', T0);
      expect(a.name).toBe('a1');
      expect(JSON.stringify(a)).not.toContain('hash-1');
      await expect(store.registerAgent('a1', 'x', T0)).rejects.toThrow(/already registered/);
      expect(await store.getAgentKeyHash('a1')).toBe('hash-1');
      await store.setAgentKeyHash('a1', 'hash-2');
      expect(await store.getAgentKeyHash('a1')).toBe('hash-2');
      await store.setAgentEnabled('a1', false);
      expect((await store.getAgent('a1'))?.enabled).toBe(false);
      expect(JSON.stringify(await store.listAgents())).not.toContain('hash-2');
      await expect(store.setAgentEnabled('nope', true)).rejects.toThrow(/does not exist/);
      await store.registerAgent('gone', 'h', T0);
      await store.removeAgent('gone');
      expect(await store.getAgent('gone')).toBeUndefined();
    });

    it('creates, dispatches, starts and finishes a run with its history', async () => {
      const [run] = await store.createRuns([newRun()], 'scheduler', T0);
      expect(run!.state).toBe('waiting');
      expect(run!.spec).toEqual(spec);
      const d = await store.dispatchRun({ runId: run!.id, agent: 'a1', at: T0 + 1, actor: 'scheduler', pools: [], rates: [] });
      expect(d.ok).toBe(true);
      expect((await store.dispatchRun({ runId: run!.id, agent: 'a1', at: T0 + 1, actor: 'scheduler', pools: [], rates: [] })).ok).toBe(false);
      expect(await store.startRun(run!.id, T0 + 2)).toBe(true);
      expect((await store.getRun(run!.id))?.state).toBe('running');
      const f = await store.finishRun({ runId: run!.id, state: 'succeeded', at: T0 + 3, actor: 'agent:a1', exitCode: 0, result: { rows: 3 } });
      expect(f.changed).toBe(true);
      expect(f.run).toMatchObject({ state: 'succeeded', exitCode: 0, endedAt: T0 + 3, result: { rows: 3 } });
      const again = await store.finishRun({ runId: run!.id, state: 'failed', at: T0 + 4, actor: 'x', exitCode: 1 });
      expect(again.changed).toBe(false);
      expect(again.run.state).toBe('succeeded');
      expect((await store.runEvents(run!.id)).map((e) => e.toState)).toEqual(['waiting', 'dispatched', 'running', 'succeeded']);
    });

    it('finishing posts conditions and releases resources in one step', async () => {
      const [run] = await store.createRuns([newRun({ jobName: 'poster' })], 's', T0);
      await store.dispatchRun({ runId: run!.id, agent: 'a1', at: T0, actor: 's', pools: [{ resource: 'pool-x', units: 2, capacity: 3 }], rates: [] });
      expect((await store.resourceUsage())['pool-x']).toBe(2);
      const f = await store.finishRun({
        runId: run!.id, state: 'succeeded', at: T0 + 5, actor: 'agent:a1', exitCode: 0,
        post: [{ name: 'ready', planDate: '2026-11-28' }, { name: 'ready2', planDate: '2026-11-28' }],
      });
      expect(f.posted).toHaveLength(2);
      expect((await store.resourceUsage())['pool-x']).toBeUndefined();
      const conds = await store.listConditions({ planDate: '2026-11-28' });
      expect(conds.map((c) => c.name)).toEqual(['ready', 'ready2']);
      expect(conds[0]!.runId).toBe(run!.id);
      expect(await store.listConditions({ planDate: '2026-11-29' })).toEqual([]);
    });

    it('never exceeds a pool, even with concurrent dispatches', async () => {
      const runs = await store.createRuns(Array.from({ length: 6 }, () => newRun({ jobName: 'pooled' })), 's', T0);
      const results = await Promise.all(runs.map((r) =>
        store.dispatchRun({ runId: r.id, agent: 'a1', at: T0, actor: 's', pools: [{ resource: 'pool-y', units: 1, capacity: 2 }], rates: [] })));
      expect(results.filter((r) => r.ok)).toHaveLength(2);
      expect(results.find((r) => !r.ok)).toMatchObject({ reason: 'pool-full', resource: 'pool-y' });
      expect((await store.resourceUsage())['pool-y']).toBe(2);
      expect((await store.resourceHolders('pool-y')).map((h) => h.units)).toEqual([1, 1]);
    });

    it('re-checks a rate in the dispatch and records its take; an end without conditions records what one with them does', async () => {
      const runs = await store.createRuns(Array.from({ length: 3 }, () => newRun({ jobName: 'rated' })), 's', T0);
      const rate = { resource: 'rate-z', capacity: 2, windowMs: 60_000 };
      const results = [];
      for (const r of runs) results.push(await store.dispatchRun({ runId: r.id, agent: 'a1', at: T0 + 1, actor: 's', pools: [{ resource: 'pool-z', units: 1, capacity: 5 }], rates: [rate] }));
      expect(results.map((r) => r.ok)).toEqual([true, true, false]);
      expect(results[2]).toEqual({ ok: false, reason: 'rate-exhausted', resource: 'rate-z' });
      expect((await store.getRun(runs[2]!.id))?.state).toBe('waiting'); // the refused claim was rolled back
      expect(await store.rateTakesSince('rate-z', T0)).toBe(2);
      expect((await store.resourceUsage())['pool-z']).toBe(2);
      const plain = await store.finishRun({ runId: runs[0]!.id, state: 'failed', at: T0 + 2, actor: 'agent:a1', exitCode: 3, signal: null, reason: 'exit code 3' });
      const posting = await store.finishRun({ runId: runs[1]!.id, state: 'failed', at: T0 + 2, actor: 'agent:a1', exitCode: 3, signal: null, reason: 'exit code 3', post: [{ name: 'rated-failed', planDate: '2026-11-30' }] });
      expect({ ...plain.run, id: 0, updatedAt: 0, dispatchedAt: 0 }).toEqual({ ...posting.run, id: 0, updatedAt: 0, dispatchedAt: 0 });
      expect(plain.run).toMatchObject({ state: 'failed', exitCode: 3, endReason: 'exit code 3', result: null, endedAt: T0 + 2 });
      const last = async (id: number) => (await store.runEvents(id)).at(-1);
      expect(await last(runs[0]!.id)).toEqual(await last(runs[1]!.id));
      expect((await store.resourceUsage())['pool-z']).toBeUndefined();
      await expect(store.finishRun({ runId: 999_999, state: 'failed', at: T0, actor: 'x' })).rejects.toThrow(/999999|not found|does not exist/i);
    });

    it('dispatches a run once when two decisions race for it', async () => {
      const [run] = await store.createRuns([newRun({ jobName: 'race' })], 's', T0);
      const both = await Promise.all([1, 2].map((n) =>
        store.dispatchRun({ runId: run!.id, agent: `a${n}`, at: T0, actor: 's', pools: [{ resource: 'race-pool', units: 1, capacity: 5 }], rates: [] })));
      expect(both.filter((r) => r.ok)).toHaveLength(1);
      expect(both.find((r) => !r.ok)).toMatchObject({ reason: 'not-waiting' });
      expect((await store.resourceHolders('race-pool'))).toHaveLength(1);
    });

    it('dispatches and starts a run without resources exactly as any other (the SQLite hot path), once under a race', async () => {
      const [run] = await store.createRuns([newRun({ jobName: 'plain-race' })], 's', T0);
      await store.setWaitReasons([{ runId: run!.id, reason: { code: 'no-agent' } }]);
      const both = await Promise.all([1, 2].map((n) => store.dispatchRun({ runId: run!.id, agent: `a${n}`, at: T0 + 1, actor: 'scheduler', pools: [], rates: [] })));
      expect(both.filter((r) => r.ok)).toHaveLength(1);
      expect(both.find((r) => !r.ok)).toEqual({ ok: false, reason: 'not-waiting' });
      expect(both.find((r) => r.ok)).toEqual({ ok: true });
      const dispatched = await store.getRun(run!.id);
      const agent = dispatched!.agentName!;
      expect(['a1', 'a2']).toContain(agent);
      expect(dispatched).toEqual({ ...run, state: 'dispatched', agentName: agent, dispatchedAt: T0 + 1, waitReason: null, updatedAt: T0 + 1 });
      expect(await store.startRun(run!.id, T0 + 2)).toBe(true);
      expect(await store.getRun(run!.id)).toEqual({ ...dispatched, state: 'running', startedAt: T0 + 2, updatedAt: T0 + 2 });
      expect(await store.startRun(run!.id, T0 + 3)).toBe(false); // not dispatched any more
      expect(await store.startRun(987_654_321, T0 + 3)).toBe(false);
      expect(await store.getRun(987_654_321)).toBeUndefined();
      expect((await store.runEvents(run!.id)).slice(1)).toEqual([
        { at: T0 + 1, fromState: 'waiting', toState: 'dispatched', actor: 'scheduler', detail: { agent } },
        { at: T0 + 2, fromState: 'dispatched', toState: 'running', actor: `agent:${agent}`, detail: null },
      ]);
      // A read next to a write transaction sees the run before or after it, never half-way.
      const [other] = await store.createRuns([newRun({ jobName: 'plain-race' })], 's', T0);
      const [, seen] = await Promise.all([
        store.dispatchRun({ runId: other!.id, agent: 'a1', at: T0 + 4, actor: 's', pools: [{ resource: 'plain-pool', units: 1, capacity: 1 }], rates: [] }),
        store.getRun(other!.id),
      ]);
      expect(['waiting', 'dispatched']).toContain(seen!.state);
      expect(await store.dispatchRun({ runId: other!.id, agent: 'a2', at: T0 + 5, actor: 's', pools: [], rates: [] })).toEqual({ ok: false, reason: 'not-waiting' });
    });

    it('takes all resources or none', async () => {
      const [blocker, run] = await store.createRuns([newRun({ jobName: 'b' }), newRun({ jobName: 'c' })], 's', T0);
      await store.dispatchRun({ runId: blocker!.id, agent: 'a1', at: T0, actor: 's', pools: [{ resource: 'pz', units: 1, capacity: 1 }], rates: [] });
      const r = await store.dispatchRun({
        runId: run!.id, agent: 'a1', at: T0, actor: 's',
        pools: [{ resource: 'pa', units: 1, capacity: 5 }, { resource: 'pz', units: 1, capacity: 1 }], rates: [],
      });
      expect(r).toMatchObject({ ok: false, resource: 'pz' });
      expect((await store.resourceUsage())['pa']).toBeUndefined();
      expect((await store.getRun(run!.id))?.state).toBe('waiting');
    });

    it('counts rate acquisitions in a sliding window', async () => {
      const runs = await store.createRuns(Array.from({ length: 4 }, () => newRun({ jobName: 'rated' })), 's', T0);
      const rate = { resource: 'api-r', capacity: 2, windowMs: 60_000 };
      const at = [T0, T0 + 10_000, T0 + 20_000, T0 + 60_001];
      const ok = [];
      for (let i = 0; i < 4; i++) ok.push((await store.dispatchRun({ runId: runs[i]!.id, agent: 'a1', at: at[i]!, actor: 's', pools: [], rates: [rate] })).ok);
      expect(ok).toEqual([true, true, false, true]);
      expect(await store.rateTakesSince('api-r', T0 + 60_001 - 60_000)).toBe(2);
    });

    it('retries an attempt and holds/releases waiting runs', async () => {
      const [run] = await store.createRuns([newRun({ jobName: 'retry' })], 's', T0);
      await store.dispatchRun({ runId: run!.id, agent: 'a1', at: T0, actor: 's', pools: [{ resource: 'pr', units: 1, capacity: 1 }], rates: [] });
      const r = await store.retryRun({ runId: run!.id, at: T0 + 1, dueAt: T0 + 60_000, actor: 's', reason: 'exit 1', exitCode: 1 });
      expect(r).toMatchObject({ state: 'waiting', attempt: 2, dueAt: T0 + 60_000, agentName: null });
      expect((await store.resourceUsage())['pr']).toBeUndefined();
      expect((await store.setRunHeld(run!.id, true, 'op', T0 + 2))?.held).toBe(true);
      expect((await store.dispatchRun({ runId: run!.id, agent: 'a1', at: T0, actor: 's', pools: [], rates: [] }))).toMatchObject({ ok: false, reason: 'held' });
      expect((await store.setRunHeld(run!.id, false, 'op', T0 + 3))?.held).toBe(false);
    });

    it('stores output chunks once each, in order', async () => {
      const [run] = await store.createRuns([newRun({ jobName: 'out' })], 's', T0);
      const chunk = (seq: number, text: string, stream: 'stdout' | 'stderr' = 'stdout') => ({ runId: run!.id, stream, seq, at: T0, data: Buffer.from(text) });
      expect(await store.appendOutput([chunk(1, 'b'), chunk(0, 'a'), chunk(0, 'e', 'stderr')])).toBe(3);
      expect(await store.appendOutput([chunk(1, 'b'), chunk(2, 'c\u00e9\u0000')])).toBe(1);
      expect((await store.readOutput(run!.id, 'stdout')).toString()).toBe('abc\u00e9\u0000');
      expect((await store.readOutput(run!.id, 'stderr')).toString()).toBe('e');
      expect((await store.getRun(run!.id))?.outputBytes).toBe(2 + 1 + Buffer.byteLength('c\u00e9\u0000'));
    });

    it('stores large chunks, arriving out of order and re-sent, byte for byte; pruning removes them', async () => {
      const [run] = await store.createRuns([newRun({ jobName: 'big-out' })], 's', T0);
      const parts = [0, 1, 2, 3].map((i) => bigOutput.subarray(i * 300_000, (i + 1) * 300_000));
      const chunk = (seq: number) => ({ runId: run!.id, stream: 'stdout' as const, seq, at: T0, data: parts[seq]! });
      expect(await store.appendOutput([chunk(1), chunk(0)])).toBe(2);
      expect(await store.appendOutput([chunk(1), chunk(3), chunk(2), chunk(3)])).toBe(2);
      expect((await store.readOutput(run!.id, 'stdout')).equals(bigOutput)).toBe(true);
      expect((await store.getRun(run!.id))?.outputBytes).toBe(bigOutput.length);
      await expect(store.appendOutput([{ ...chunk(0), runId: 999_999 }])).rejects.toThrow();
      const [gone] = await store.createRuns([newRun({ jobName: 'pruned-out' })], 's', T0);
      await store.appendOutput([{ ...chunk(0), runId: gone!.id }, { ...chunk(0), runId: gone!.id, stream: 'stderr' }]);
      await store.finishRun({ runId: gone!.id, state: 'succeeded', at: T0 - 2 * DAY, actor: 's' });
      expect((await store.pruneBefore(T0 - DAY, '2000-01-01')).runs).toBe(1);
      expect(await store.getRun(gone!.id)).toBeUndefined();
      expect((await store.readOutput(gone!.id, 'stdout')).length).toBe(0);
      expect((await store.readOutput(run!.id, 'stdout')).equals(bigOutput)).toBe(true);
    });

    it('records agent link state and run steps once each', async () => {
      await store.updateAgentLink('a1', { status: 'connected', connectedAt: T0, lastSeenAt: T0, version: '1.2.3', facts: { cpus: 2 }, capabilities: { jobs: true }, draining: true });
      expect(await store.getAgent('a1')).toMatchObject({ status: 'connected', version: '1.2.3', facts: { cpus: 2 }, capabilities: { jobs: true }, draining: true, connectedAt: T0 });
      await expect(store.updateAgentLink('ghost', { status: 'stale' })).rejects.toThrow(/does not exist/);
      const [run] = await store.createRuns([newRun({ jobName: 'steps' })], 's', T0);
      const steps = [
        { runId: run!.id, seq: 1, at: T0, kind: 'progress' as const, text: 'half', data: { pct: 50 } },
        { runId: run!.id, seq: 0, at: T0, kind: 'message' as const, text: 'hello' },
      ];
      expect(await store.appendRunSteps(steps)).toBe(2);
      expect(await store.appendRunSteps(steps)).toBe(0);
      expect((await store.runSteps(run!.id)).map((s) => s.text)).toEqual(['hello', 'half']);
      await store.markOutputTruncated(run!.id);
      expect((await store.getRun(run!.id))?.outputTruncated).toBe(true);
    });

    it('posts and removes conditions by hand with an audit trail', async () => {
      expect(await store.postCondition({ name: 'manual', planDate: '2026-11-27', actor: 'alice', at: T0 })).toBe(true);
      expect(await store.postCondition({ name: 'manual', planDate: '2026-11-27', actor: 'alice', at: T0 })).toBe(false);
      expect(await store.removeCondition({ name: 'manual', planDate: '2026-11-27', actor: 'bob', at: T0 + 1 })).toBe(true);
      expect(await store.removeCondition({ name: 'manual', planDate: '2026-11-27', actor: 'bob', at: T0 + 1 })).toBe(false);
      expect(await store.listConditions({ name: 'manual' })).toEqual([]);
    });

    it('de-duplicates messages by key and keeps their history', async () => {
      const m = { key: 'job:x:failed', severity: 'warning' as const, source: 'job' as const, text: 'x failed', actor: 'scheduler', jobName: 'x' };
      const a = await store.raiseMessage({ ...m, at: T0 });
      const b = await store.raiseMessage({ ...m, at: T0 + 1, severity: 'critical' });
      expect(a.created).toBe(true);
      expect(b.created).toBe(false);
      expect(b.message).toMatchObject({ id: a.message.id, count: 2, severity: 'critical', status: 'open' });
      await store.setMessageStatus(a.message.id, 'acknowledged', 'alice', T0 + 2);
      await expect(store.setMessageStatus(a.message.id, 'deferred', 'alice', T0 + 2)).rejects.toThrow(/until/);
      const resolved = await store.resolveMessage(m.key, 'scheduler', T0 + 3, 'job succeeded');
      expect(resolved?.status).toBe('resolved');
      const c = await store.raiseMessage({ ...m, at: T0 + 4 });
      expect(c.created).toBe(true);
      expect(c.message.id).not.toBe(a.message.id);
      expect((await store.messageEvents(a.message.id)).map((e) => e.action)).toEqual(['open', 'severity', 'acknowledged', 'resolved']);
      const page = await store.listMessages({ status: ['open'] }, { limit: 10 });
      expect(page.items.map((i) => i.id)).toContain(c.message.id);
    });

    it('pages through runs by filter', async () => {
      await store.createRuns(Array.from({ length: 25 }, (_, i) => newRun({ jobName: 'paged', planDate: i % 2 ? '2026-11-28' : '2026-11-29' })), 's', T0);
      const seen: number[] = [];
      let before: number | undefined;
      for (;;) {
        const page = await store.listRuns({ job: 'paged', state: ['waiting'] }, { limit: 10, ...(before ? { before } : {}) });
        seen.push(...page.items.map((r) => r.id));
        if (!page.next) break;
        before = page.next;
      }
      expect(seen).toHaveLength(25);
      expect([...seen].sort((a, b) => b - a)).toEqual(seen);
      expect((await store.listRuns({ job: 'paged', planDate: '2026-11-29' }, { limit: 100 })).items).toHaveLength(13);
    });

    it('lists by agent, job or plan date and state as runs change state (indexes without state, migration 0006)', async () => {
      await store.registerAgent('busy', 'h', T0);
      const runs = await store.createRuns(Array.from({ length: 6 }, (_, i) => newRun({ jobName: 'moving', planDate: i % 2 ? '2026-10-01' : '2026-10-02' })), 's', T0);
      const [r0, r1, r2, r3, r4, r5] = runs.map((r) => r.id) as [number, number, number, number, number, number];
      for (const id of [r0, r1, r2, r3, r4]) expect((await store.dispatchRun({ runId: id, agent: 'busy', at: T0 + 1, actor: 's', pools: [], rates: [] })).ok).toBe(true);
      await store.startRun(r1, T0 + 2);
      await store.startRun(r2, T0 + 2);
      await store.finishRun({ runId: r2, state: 'failed', at: T0 + 3, actor: 'agent:busy', exitCode: 1, signal: null, reason: 'exit code 1' });
      await store.retryRun({ runId: r3, at: T0 + 3, dueAt: T0 + 60_000, actor: 's', reason: 'exit 1', exitCode: 1 });
      await store.requeueRun({ runId: r4, at: T0 + 3, actor: 's', reason: 'not delivered' });
      const ids = async (filter: Parameters<typeof store.listRuns>[0]) => (await store.listRuns(filter, { limit: 100 })).items.map((r) => r.id);
      expect(await ids({ agent: 'busy', state: ['dispatched', 'running'] })).toEqual([r1, r0]);
      expect(await ids({ agent: 'busy', state: ['running'] })).toEqual([r1]);
      expect(await ids({ agent: 'busy', state: ['failed'] })).toEqual([r2]);
      expect(await ids({ agent: 'busy' })).toEqual([r2, r1, r0]);
      expect(await ids({ job: 'moving', state: ['waiting'] })).toEqual([r5, r4, r3]);
      expect(await ids({ job: 'moving', state: ['failed', 'running'] })).toEqual([r2, r1]);
      expect(await ids({ planDate: '2026-10-02', state: ['waiting', 'dispatched'] })).toEqual([r4, r0]);
      expect(await ids({ job: 'moving', planDate: '2026-10-01' })).toEqual([r5, r3, r1]);
      await expect(store.removeAgent('busy')).rejects.toThrow(/still has run/);
      await store.finishRun({ runId: r0, state: 'lost', at: T0 + 4, actor: 's', exitCode: null, signal: null, reason: 'lost' });
      await store.finishRun({ runId: r1, state: 'succeeded', at: T0 + 4, actor: 'agent:busy', exitCode: 0, signal: null, reason: null });
      expect(await ids({ agent: 'busy', state: ['dispatched', 'running'] })).toEqual([]);
      await store.removeAgent('busy');
    });

    it('stores tokens by hash only', async () => {
      const t = await store.createToken({ name: 'ci', tokenHash: 'sha-abc', role: 'operator', createdBy: 'admin', at: T0 });
      expect(JSON.stringify(t)).not.toContain('sha-abc');
      expect((await store.findTokenByHash('sha-abc'))?.id).toBe(t.id);
      expect(await store.revokeToken(t.id, 'admin', T0)).toBe(true);
      expect((await store.findTokenByHash('sha-abc'))?.revoked).toBe(true);
      await store.upsertUser({ name: 'admin', passwordHash: 'scrypt$x', role: 'admin', at: T0 });
      expect(await store.getUser('admin')).toMatchObject({ role: 'admin', disabled: false });
    });

    it('records check values in batches', async () => {
      const values = Array.from({ length: 2500 }, (_, i) => ({ checkName: 'load', agentName: 'a1', series: 'load1', at: T0 + i * 1000, value: i / 10 }));
      await store.recordCheckValues(values);
      const got = await store.checkValues('load', 'a1', 'load1', T0 + 2_000_000);
      expect(got).toHaveLength(500);
      expect(got[0]).toEqual({ at: T0 + 2_000_000, value: 200 });
    });

    it('keeps plan days with one entry per job and advances entries and runs together', async () => {
      const day = { planDate: '2026-11-28', timezone: 'UTC', startsAt: T0 - 12 * 3_600_000, endsAt: T0 + 12 * 3_600_000, loadedAt: T0 };
      const entry = { planDate: '2026-11-28', jobName: 'tick', nextDueAt: T0, lastNominalAt: null, jobRevision: 0 };
      expect(await store.createPlanDay(day, [entry])).toBe(true);
      expect(await store.createPlanDay(day, [{ ...entry, nextDueAt: 1 }])).toBe(false);
      expect(await store.planDays()).toContainEqual(day);
      expect(await store.pendingPlanEntries()).toContainEqual(entry);
      const created = await store.advancePlan([{ ...entry, nextDueAt: T0 + 600_000, lastNominalAt: T0 }], [
        newRun({ jobName: 'tick', nominalAt: T0 }),
        newRun({ jobName: 'tick', nominalAt: T0 - 600_000, skipped: 'missed' }),
      ], 'scheduler', T0);
      expect(created.map((r) => r.state)).toEqual(['waiting', 'skipped']);
      expect(created[1]).toMatchObject({ endReason: 'missed', endedAt: T0 });
      expect(await store.planEntries('2026-11-28')).toEqual([{ ...entry, nextDueAt: T0 + 600_000, lastNominalAt: T0 }]);
      await store.upsertPlanEntries([{ ...entry, nextDueAt: null, lastNominalAt: T0 }]);
      expect((await store.pendingPlanEntries()).find((e) => e.jobName === 'tick')).toBeUndefined();
      const active = await store.activeRuns();
      expect(active.some((r) => r.id === created[0]!.id)).toBe(true);
      expect(active.some((r) => r.id === created[1]!.id)).toBe(false);
      await store.setWaitReasons([{ runId: created[0]!.id, reason: { code: 'held' } }]);
      expect((await store.getRun(created[0]!.id))!.waitReason).toEqual({ code: 'held' });
    });

    it('withdraws untouched runs created ahead together with their entries, or nothing when one was touched', async () => {
      const date = '2026-11-27';
      const entry = { planDate: date, jobName: 'ahead', nextDueAt: null, lastNominalAt: T0 + 60_000, jobRevision: 0 };
      const [a, b, c] = await store.advancePlan([entry], [
        newRun({ jobName: 'ahead', planDate: date, nominalAt: T0 + 60_000, dueAt: T0 + 60_000 }),
        newRun({ jobName: 'ahead', planDate: date, nominalAt: T0 + 60_000, dueAt: T0 + 60_000 }),
        newRun({ jobName: 'ahead', planDate: date, nominalAt: T0 + 60_000, dueAt: T0 + 60_000 }),
      ], 'scheduler', T0);
      await store.setRunHeld(c!.id, true, 'alice', T0);
      const back = { ...entry, nextDueAt: T0 + 60_000, lastNominalAt: T0 };
      await expect(store.withdrawEarlyRuns([a!.id, c!.id], [back])).rejects.toThrow(/1 of 2 runs .* none was withdrawn/);
      expect(await store.getRun(a!.id)).toBeDefined();
      expect(await store.planEntries(date)).toEqual([entry]);
      await store.withdrawEarlyRuns([a!.id, b!.id], [back]);
      expect(await store.getRun(a!.id)).toBeUndefined();
      expect(await store.runEvents(b!.id)).toEqual([]);
      expect(await store.getRun(c!.id)).toMatchObject({ held: true, state: 'waiting' });
      expect(await store.planEntries(date)).toEqual([back]);
    });

    it('withdraws only runs nothing happened to: not one retried, put back after a dispatch, or made when due', async () => {
      const date = '2026-11-26';
      const entry = { planDate: date, jobName: 'touched', nextDueAt: null, lastNominalAt: T0 + 60_000, jobRevision: 0 };
      const due = T0 + 60_000;
      const [fresh, retried, requeued, whenDue] = await store.advancePlan([entry], [
        newRun({ jobName: 'touched', planDate: date, nominalAt: due, dueAt: due }),
        newRun({ jobName: 'touched', planDate: date, nominalAt: due, dueAt: due }),
        newRun({ jobName: 'touched', planDate: date, nominalAt: due, dueAt: due }),
        newRun({ jobName: 'touched', planDate: date, nominalAt: T0, dueAt: T0 }),
      ], 'scheduler', T0);
      expect(fresh).toMatchObject({ createdAt: T0, updatedAt: T0, attempt: 1 });
      // Wait reasons are written on every pass: they leave a run untouched (updatedAt stays createdAt).
      await store.setWaitReasons([fresh!, retried!, requeued!, whenDue!].map((r) => ({ runId: r.id, reason: { code: 'not-due', until: due } })));
      expect(await store.getRun(fresh!.id)).toMatchObject({ updatedAt: T0, createdAt: T0 });
      for (const r of [retried!, requeued!]) expect((await store.dispatchRun({ runId: r.id, agent: 'a1', at: due, actor: 'scheduler', pools: [], rates: [] })).ok).toBe(true);
      await store.startRun(retried!.id, due);
      const back = await store.retryRun({ runId: retried!.id, at: due + 1000, dueAt: due + 600_000, actor: 'scheduler', reason: 'exit 1', exitCode: 1 });
      expect(back).toMatchObject({ state: 'waiting', attempt: 2, updatedAt: due + 1000 });
      expect(await store.requeueRun({ runId: requeued!.id, at: due + 1000, actor: 'scheduler', reason: 'not delivered' })).toMatchObject({ state: 'waiting', updatedAt: due + 1000 });
      const moved = { ...entry, nextDueAt: due, lastNominalAt: T0 };
      for (const r of [retried!, requeued!, whenDue!]) {
        await expect(store.withdrawEarlyRuns([fresh!.id, r.id], [moved])).rejects.toThrow(/1 of 2 runs .* none was withdrawn/);
        expect((await store.runEvents(r.id)).length).toBeGreaterThan(0);
      }
      expect(await store.planEntries(date)).toEqual([entry]);
      await store.withdrawEarlyRuns([fresh!.id], [moved]);
      expect(await store.getRun(fresh!.id)).toBeUndefined();
    });

    it('refuses to withdraw a run held and released within its creation millisecond (its events say it was touched)', async () => {
      const date = '2026-11-25';
      const entry = { planDate: date, jobName: 'same-ms', nextDueAt: null, lastNominalAt: T0 + 60_000, jobRevision: 0 };
      const [touched, fresh] = await store.advancePlan([entry], [
        newRun({ jobName: 'same-ms', planDate: date, nominalAt: T0 + 60_000, dueAt: T0 + 60_000 }),
        newRun({ jobName: 'same-ms', planDate: date, nominalAt: T0 + 60_000, dueAt: T0 + 60_000 }),
      ], 'scheduler', T0);
      await store.setRunHeld(touched!.id, true, 'alice', T0);
      await store.setRunHeld(touched!.id, false, 'alice', T0);
      expect(await store.getRun(touched!.id)).toMatchObject({ held: false, state: 'waiting', createdAt: T0, updatedAt: T0, attempt: 1 });
      const back = { ...entry, nextDueAt: T0 + 60_000, lastNominalAt: T0 };
      await expect(store.withdrawEarlyRuns([fresh!.id, touched!.id], [back])).rejects.toThrow(/1 of 2 runs .* none was withdrawn/);
      await expect(store.withdrawEarlyRuns([fresh!.id, touched!.id], [back])).rejects.toMatchObject({ refused: [touched!.id] });
      expect((await store.runEvents(touched!.id)).length).toBe(3);
      await store.withdrawEarlyRuns([fresh!.id], [back]);
      expect(await store.getRun(fresh!.id)).toBeUndefined();
      expect(await store.getRun(touched!.id)).toBeDefined();
    });

    it('gives the latest occurrence of a job and plan date that has a run, ended ones included, leaving some runs out', async () => {
      const date = '2026-11-24';
      const entry = { planDate: date, jobName: 'occ', nextDueAt: null, lastNominalAt: T0 + 120_000, jobRevision: 0 };
      expect(await store.lastOccurrenceAt(date, 'occ', [])).toBeNull();
      const [first, cancelled, ahead] = await store.advancePlan([entry], [
        newRun({ jobName: 'occ', planDate: date, nominalAt: T0 - 60_000, dueAt: T0 - 60_000, origin: 'catch-up' }),
        newRun({ jobName: 'occ', planDate: date, nominalAt: T0 + 60_000, dueAt: T0 + 60_000 }),
        newRun({ jobName: 'occ', planDate: date, nominalAt: T0 + 120_000, dueAt: T0 + 120_000 }),
        newRun({ jobName: 'occ', planDate: date, nominalAt: T0 + 600_000, dueAt: T0 + 600_000, origin: 'manual' }),
        newRun({ jobName: 'occ', planDate: '2026-11-23', nominalAt: T0 + 900_000, dueAt: T0 + 900_000 }),
        newRun({ jobName: 'other', planDate: date, nominalAt: T0 + 900_000, dueAt: T0 + 900_000 }),
      ], 'scheduler', T0);
      expect((await store.finishRun({ runId: cancelled!.id, state: 'cancelled', at: T0, actor: 'alice' })).changed).toBe(true);
      expect(await store.lastOccurrenceAt(date, 'occ', [])).toBe(T0 + 120_000);
      expect(await store.lastOccurrenceAt(date, 'occ', [ahead!.id])).toBe(T0 + 60_000);
      expect(await store.lastOccurrenceAt(date, 'occ', [ahead!.id, cancelled!.id])).toBe(T0 - 60_000);
      expect(await store.lastOccurrenceAt(date, 'occ', [ahead!.id, cancelled!.id, first!.id])).toBeNull();
    });

    it('writes large batches of runs, entries and wait reasons in order (multi-row statements)', async () => {
      const date = '2026-11-20';
      const entries = Array.from({ length: 2300 }, (_, i) => ({ planDate: date, jobName: `bulk-${String(i).padStart(4, '0')}`, nextDueAt: T0 + i, lastNominalAt: null, jobRevision: 0 }));
      // A key given twice in one call: the last one wins.
      await store.upsertPlanEntries([...entries, { ...entries[5]!, nextDueAt: 7 }]);
      const stored = await store.planEntries(date);
      expect(stored).toHaveLength(2300);
      expect(stored[5]).toEqual({ ...entries[5], nextDueAt: 7 });
      expect(stored[2299]).toEqual(entries[2299]);
      // Twice within one statement's rows too.
      await store.upsertPlanEntries([{ ...entries[6]!, nextDueAt: 1 }, { ...entries[8]!, lastNominalAt: 2 }, { ...entries[6]!, nextDueAt: 9 }]);
      const again = await store.planEntries(date);
      expect([again[6], again[8]]).toEqual([{ ...entries[6], nextDueAt: 9 }, { ...entries[8], lastNominalAt: 2 }]);
      const other = { ...spec, priority: 3 } as JobSpec;
      const runs = Array.from({ length: 2300 }, (_, i) => newRun({
        jobName: `bulk-${i}`, planDate: date, ...(i % 500 === 7 ? { skipped: 'missed' } : {}),
        ...(i % 3 === 1 ? { spec: other, targetAgent: `a${i}`, nominalAt: null, held: true, priority: 5 } : {}),
      }));
      const created = await store.advancePlan(entries.slice(0, 3).map((e) => ({ ...e, nextDueAt: null })), runs, 'scheduler', T0);
      // The records handed back are what a later read finds (they are built in memory, not read back).
      for (const i of [0, 1, 7, 1234, 2299]) expect(await store.getRun(created[i]!.id)).toEqual(created[i]);
      expect(await store.runEvents(created[7]!.id)).toMatchObject([{ toState: 'skipped', detail: { origin: 'schedule', reason: 'missed' } }]);
      expect(created.map((r) => r.jobName)).toEqual(runs.map((r) => r.jobName));
      expect(created.map((r) => r.state)).toEqual(runs.map((r) => (r.skipped ? 'skipped' : 'waiting')));
      expect(new Set(created.map((r) => r.id)).size).toBe(2300);
      expect(await store.runEvents(created[2299]!.id)).toMatchObject([{ toState: 'waiting', actor: 'scheduler', detail: { origin: 'schedule' } }]);
      expect((await store.planEntries(date))[0]!.nextDueAt).toBeNull();
      await store.setWaitReasons(created.map((r, i) => ({ runId: r.id, reason: { code: 'not-due', until: i } })));
      expect((await store.getRun(created[1234]!.id))!.waitReason).toEqual(created[1234]!.state === 'waiting' ? { code: 'not-due', until: 1234 } : null);
      expect((await store.getRun(created[7]!.id))!.waitReason).toBeNull(); // skipped: not waiting, no reason
    });

    it('writes shared wait reasons over ranges of ids, only on waiting runs, the last one given winning', async () => {
      const created = await store.createRuns(Array.from({ length: 9 }, (_, i) => newRun({ jobName: `shared-${i}`, ...(i === 4 ? { skipped: 'overlap' } : {}) })), 'scheduler', T0);
      // Every run has exactly its creation event, built with its origin (and reason when skipped).
      for (const r of created) {
        expect(await store.runEvents(r.id)).toEqual([{ at: T0, fromState: null, toState: r.state, actor: 'scheduler', detail: r.state === 'skipped' ? { origin: 'schedule', reason: 'overlap' } : { origin: 'schedule' } }]);
      }
      const a = { code: 'no-agent', target: 'x' };
      const b = { code: 'held' };
      const ids = created.map((r) => r.id);
      // Runs 0–3 and 5–6 share `a` (run 4, between them, is skipped), run 7 has `b`, run 8 `a` then `b`.
      await store.setWaitReasons([...[0, 1, 2, 3, 4, 5, 6, 8].map((i) => ({ runId: ids[i]!, reason: a })), { runId: ids[7]!, reason: b }, { runId: ids[8]!, reason: b }]);
      const reasons = await Promise.all(ids.map(async (id) => (await store.getRun(id))!.waitReason));
      expect(reasons).toEqual([a, a, a, a, null, a, a, b, b]);
      // One reason over every id in order (a plan tick's new runs): the skipped run still gets none.
      const c = { code: 'no-agent', target: 'y' };
      await store.setWaitReasons(ids.map((runId) => ({ runId, reason: c })));
      expect(await Promise.all(ids.map(async (id) => (await store.getRun(id))!.waitReason))).toEqual([c, c, c, c, null, c, c, c, c]);
      // In order but the last differs, or an id repeated: each run keeps its own (last) reason.
      await store.setWaitReasons([...ids.slice(0, 8).map((runId) => ({ runId, reason: a })), { runId: ids[8]!, reason: b }]);
      await store.setWaitReasons([{ runId: ids[0]!, reason: c }, { runId: ids[1]!, reason: c }, { runId: ids[1]!, reason: b }]);
      expect(await Promise.all(ids.map(async (id) => (await store.getRun(id))!.waitReason))).toEqual([c, b, a, a, null, a, a, a, b]);
    });

    it('stores a run spec taken from loaded definitions as that spec', async () => {
      const desired = emptyDefinitions();
      desired.jobs = { loaded: { run: { command: ['/bin/echo', 'ü "q"'] }, on: { agent: 'a1' }, schedule: { cron: '0 1 * * *' }, priority: 2 } as JobSpec };
      await store.applyDefinitions(planApply(await store.loadDefinitions(), desired, { defaultTimezone: 'UTC' }), 'test', T0);
      const loaded = (await store.loadDefinitions()).jobs.loaded!;
      const [run] = await store.advancePlan([], [newRun({ jobName: 'loaded', spec: loaded })], 'scheduler', T0);
      expect((await store.getRun(run!.id))!.spec).toEqual(desired.jobs.loaded);
    });

    it('requeues a dispatched run that never reached its agent, and knows when definitions changed', async () => {
      const [run] = await store.createRuns([newRun({ jobName: 'requeue' })], 's', T0);
      await store.dispatchRun({ runId: run!.id, agent: 'a1', at: T0, actor: 's', pools: [{ resource: 'rq', units: 1, capacity: 1 }], rates: [] });
      const back = await store.requeueRun({ runId: run!.id, at: T0 + 1, actor: 's', reason: 'not delivered' });
      expect(back).toMatchObject({ state: 'waiting', attempt: 1, agentName: null });
      expect((await store.allResourceHolds()).some((h) => h.runId === run!.id)).toBe(false);
      expect(await store.requeueRun({ runId: run!.id, at: T0 + 1, actor: 's', reason: 'again' })).toBeUndefined();
      const v = await store.definitionsVersion();
      const plan = planApply(await store.loadDefinitions(), { ...emptyDefinitions(), groups: { extra: ['x'] } }, { defaultTimezone: 'UTC' });
      await store.applyDefinitions(plan, 'test', T0);
      const applied = await store.definitionsVersion();
      expect(applied).toBeGreaterThan(v);
      // A revoke is audited but is no definitions change: the engine must not reload everything for it.
      const t = await store.createToken({ name: 'not-a-definition', tokenHash: 'sha-version', role: 'viewer', createdBy: 'admin', at: T0 });
      expect(await store.revokeToken(t.id, 'admin', T0)).toBe(true);
      expect(await store.definitionsVersion()).toBe(applied);
      expect((await store.rateTakesAfter(T0 - 1)).length).toBeGreaterThan(0);
    });

    // An in-memory database has nothing to reopen: the test exists only where there is something to reopen.
    if (reopen) it('keeps everything across a reopen', async () => {
      const out = (await store.listRuns({ job: 'big-out' }, { limit: 1 })).items[0]!;
      await store.close();
      store = await reopen!();
      expect((await store.readOutput(out.id, 'stdout')).equals(bigOutput)).toBe(true);
      expect((await store.loadDefinitions()).groups).toEqual({ db: ['db1'], extra: ['x'] });
      expect((await store.listConditions({ planDate: '2026-11-28' })).map((c) => c.name)).toEqual(['ready', 'ready2']);
      expect((await store.resourceUsage())['pool-y']).toBe(2);
    });

    it('prunes ended runs and old plan days by age, never unfinished runs', async () => {
      const before = (await store.activeRuns()).length;
      const r = await store.pruneBefore(T0 + 10_000_000, '2026-11-29');
      expect(r.runs).toBeGreaterThan(0);
      expect((await store.activeRuns()).length).toBe(before);
      expect(await store.planDays()).toEqual([]);
      expect(await store.listConditions({ planDate: '2026-11-28' })).toEqual([]);
    });
  });
}
