import { type Command, Option } from 'commander';
import { AgentConfigError, type AgentFlags, runAgent } from '@batchalyzer/agent';
import { openStore, type Store } from '@batchalyzer/store';
import { loadConfig, type StoreFlags } from '../config.js';
import { listAgents, registerAgent, removeAgent, rotateAgentKey, setAgentEnabled } from './agent.js';

const collect = (v: string, acc: string[]) => [...acc, v];

/**
 * `batchalyzer agent …`: without a subcommand it runs the agent (the same code as `batchalyzer-agent`); the
 * subcommands administer agents in the store (docs/agent.md).
 */
export function addAgentCommands(program: Command, storeOptions: (cmd: Command) => Command, actor: () => string): void {
  // Positional options: `agent register X --data D` gives --data to `register`, not to the agent-run options.
  program.enablePositionalOptions();
  const agent = program
    .command('agent')
    .enablePositionalOptions()
    .description('run the batchalyzer agent on this host, or administer agents (register, rotate-key, enable, disable, remove, list)')
    .option('--server <url>', 'server URL, http(s):// or ws(s)://; repeat for several servers (env BATCHALYZER_AGENT_SERVER)', collect, [])
    .option('--name <name>', 'the name the agent was registered under (env BATCHALYZER_AGENT_NAME)')
    .option('--key-file <file>', 'file with the key printed by `agent register` (env BATCHALYZER_AGENT_KEY_FILE)')
    .option('--data <dir>', "the agent's data directory: outbound queue and running journal (default ./agent-data)")
    .option('--allow <glob>', 'only run executables whose path matches (repeatable)', collect, [])
    .option('--deny <glob>', 'never run executables whose path matches; wins over --allow (repeatable)', collect, [])
    .option('--refuse <kind>', 'refuse a kind of work: jobs, command, shell, node, checks, check-builtin, check-plugin, check-node (repeatable)', collect, [])
    .option('--drain-timeout <duration>', 'on SIGTERM, wait this long for running jobs (default 5m)')
    .option('--reconnect-max <duration>', 'longest reconnect back-off (default 30s)')
    .option('--log-level <level>', 'debug, info, warn, error or silent (default info)')
    .option('--spawner <kind>', 'how jobs are started: auto (default), native (posix_spawn) or node (child_process) (env BATCHALYZER_AGENT_SPAWNER)')
    .option('--config <file>', 'JSON file with any of these options (env BATCHALYZER_AGENT_CONFIG)')
    .addOption(new Option('--flush-interval <duration>').hideHelp())
    .addOption(new Option('--protocol-version <n>', 'speak this protocol version (testing only)').hideHelp())
    .action((opts: AgentFlags & { refuse: string[] }) => {
      try {
        runAgent({ ...opts, refuse: opts.refuse.flatMap((r) => r.split(',')) }, process.env, process.cwd());
      } catch (err) {
        if (err instanceof AgentConfigError) {
          process.stderr.write(`error: ${err.message}\n`);
          process.exit(2);
        }
        throw err;
      }
    });

  const withStore = (fn: (store: Store, config: ReturnType<typeof loadConfig>) => Promise<string[]>) => async (flags: StoreFlags) => {
    const config = loadConfig(flags);
    const store = await openStore(config.store);
    try {
      process.stdout.write(`${(await fn(store, config)).join('\n')}\n`);
    } finally {
      await store.close();
    }
  };

  storeOptions(
    agent
      .command('register <name>')
      .description('register an agent and print its key once (only the public half is stored)')
      .option('--group <group>', 'add the agent to this group (repeatable)', collect, [])
      .option('--key-file <file>', 'write the key to this file (mode 0600) instead of printing it'),
  ).action((name: string, opts: StoreFlags & { group: string[]; keyFile?: string }) =>
    withStore((store, config) => registerAgent(store, name, { groups: opts.group, keyFile: opts.keyFile, actor: actor(), defaultTimezone: config.timezone }))(opts));

  storeOptions(
    agent
      .command('rotate-key <name>')
      .description("replace an agent's key and print the new one once; the old key stops working")
      .option('--key-file <file>', 'write the key to this file (mode 0600) instead of printing it'),
  ).action((name: string, opts: StoreFlags & { keyFile?: string }) => withStore((store) => rotateAgentKey(store, name, { keyFile: opts.keyFile }))(opts));

  storeOptions(agent.command('disable <name>').description('refuse the agent\'s connections and dispatch nothing to it'))
    .action((name: string, opts: StoreFlags) => withStore((store) => setAgentEnabled(store, name, false))(opts));
  storeOptions(agent.command('enable <name>').description('accept the agent again'))
    .action((name: string, opts: StoreFlags) => withStore((store) => setAgentEnabled(store, name, true))(opts));
  storeOptions(agent.command('remove <name>').description('delete a registered agent (it must have no run in progress)'))
    .action((name: string, opts: StoreFlags) => withStore((store) => removeAgent(store, name))(opts));
  storeOptions(agent.command('list').description('list registered agents with their link status'))
    .action((opts: StoreFlags) => withStore((store) => listAgents(store))(opts));
}
