import { afterEach, describe, expect, it } from 'vitest';
import { cli, tempDir } from './support/cli.js';
import { FAST_HUB, openTestStore, registerAgent, serverWithAgent, TestAgent, TestServer, until } from './support/agent.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});

describe('handshake refusals (brief §8)', () => {
  it('refuses wrong key, unknown name, disabled agent, old protocol and a duplicate connection, each with its reason; refused agents keep retrying', async () => {
    const data = tempDir();
    const keyA1 = await registerAgent(data, 'a1');
    await registerAgent(data, 'a2');
    await registerAgent(data, 'off');
    expect((await cli(['agent', 'disable', 'off', '--data', data])).code).toBe(0);
    const server = await new TestServer(data, FAST_HUB).start();
    cleanup.push(() => server.stop());
    const a1 = new TestAgent({ name: 'a1', url: server.url, keyFile: keyA1 }).start();
    cleanup.push(() => a1.kill9());
    await server.event('agent:connected', (e) => e.name === 'a1');

    const cases = [
      { name: 'a2', key: keyA1, args: [], reason: 'wrong-key', text: /the key does not match agent "a2"/ },
      { name: 'ghost', key: keyA1, args: [], reason: 'unknown-agent', text: /agent "ghost" is not registered/ },
      { name: 'off', key: keyA1, args: [], reason: 'wrong-key', text: /the key does not match agent "off"/ },
      { name: 'a1', key: keyA1, args: ['--protocol-version', '0'], reason: 'incompatible-version', text: /agent a1 speaks protocol 0; this server speaks 1/ },
      { name: 'a1', key: keyA1, args: [], reason: 'duplicate-connection', text: /agent "a1" is already connected from .* the existing connection wins/ },
    ];
    for (const c of cases) {
      const from = server.events.length;
      const agent = new TestAgent({ name: c.name, url: server.url, keyFile: c.key, args: c.args }).start();
      cleanup.push(() => agent.kill9());
      await server.event('agent:refused', (e) => e.name === c.name && e.reason === c.reason, 20_000, from);
      await agent.waitOutput(new RegExp(`refused by ws://\\S+: ${c.reason}: ${c.text.source}`));
      // It does not exit: it retries with back-off and is refused again.
      await until('a second refusal', () => server.events.slice(from).filter((e) => e.event === 'agent:refused' && e.name === c.name && e.reason === c.reason).length >= 2);
      expect(agent.alive).toBe(true);
      await agent.kill9();
    }
    // A disabled agent with its own key is refused as disabled.
    const offKey = tempDir();
    expect((await cli(['agent', 'rotate-key', 'off', '--data', data, '--key-file', `${offKey}/k`])).code).toBe(0);
    const off = new TestAgent({ name: 'off', url: server.url, keyFile: `${offKey}/k` }).start();
    cleanup.push(() => off.kill9());
    await server.event('agent:refused', (e) => e.name === 'off' && e.reason === 'disabled');
    await off.waitOutput(/refused by \S+: disabled: agent "off" is disabled; enable it with `batchalyzer agent enable off`/);
    // The existing connection won: a1 never lost its link.
    expect(server.events.filter((e) => e.event === 'agent:disconnected')).toHaveLength(0);
    // Once the duplicate's rival is gone, a retrying agent gets in.
    const dup = new TestAgent({ name: 'a1', url: server.url, keyFile: keyA1 }).start();
    cleanup.push(() => dup.kill9());
    await server.event('agent:refused', (e) => e.name === 'a1' && e.reason === 'duplicate-connection', 20_000, server.events.length);
    const from = server.events.length;
    await a1.kill9();
    await server.event('agent:connected', (e) => e.name === 'a1', 20_000, from);
    await dup.waitOutput(/connected to \S+ as a1/);
  });
});

describe('refused work (brief §8)', () => {
  it('an executable outside the allow list and a refused kind fail with the reason; the agent keeps running', async () => {
    const { server, agent, store } = await serverWithAgent('a1', ['--allow', '/usr/bin/echo', '--allow', '/bin/echo', '--refuse', 'node']);
    cleanup.push(() => server.stop(), () => agent.kill9(), () => store.close());
    const ended = async (id: number) => until(`run ${id} ended`, async () => {
      const r = await store.getRun(id);
      return r && !['dispatched', 'running'].includes(r.state) ? r : undefined;
    });
    const refused = await ended(await server.run('a1', { command: [process.execPath, '-e', 'console.log(1)'] }));
    expect(refused.state).toBe('failed');
    expect(refused.endReason).toBe(`refused: ${process.execPath} is not in the allow list of agent a1 (/usr/bin/echo, /bin/echo)`);
    const shell = await ended(await server.run('a1', { shell: 'echo hi' }));
    expect(shell.endReason).toMatch(/^refused: \/bin\/sh is not in the allow list/);
    const node = await ended(await server.run('a1', { node: '/tmp/x.js' }));
    expect(node.endReason).toBe('refused: node jobs are disabled on agent a1 (--refuse node)');
    const missing = await ended(await server.run('a1', { command: ['no-such-command-here'] }));
    expect(missing.endReason).toMatch(/^cannot start: no-such-command-here not found on PATH/);

    expect(agent.alive).toBe(true);
    const ok = await ended(await server.run('a1', { command: ['echo', 'still', 'here'] }));
    expect(ok.state).toBe('succeeded');
    expect((await store.readOutput(ok.id, 'stdout')).toString()).toBe('still here\n');
    const s2 = await openTestStore(server.data);
    cleanup.push(() => s2.close());
    expect((await s2.getAgent('a1'))!.capabilities).toMatchObject({ command: true, shell: true, node: false });
  });
});
