import { parseArgs } from 'node:util';
import { Agent } from './agent.js';
import { type AgentFlags, AgentConfigError, compileAgentConfig } from './config.js';
import { createLog } from './log.js';

export const AGENT_USAGE = `usage: batchalyzer agent --server URL [--server URL…] --name NAME --key-file FILE [options]

  --server URL           server URL (http(s):// or ws(s)://); repeat for several servers, tried in turn
  --name NAME            the name the agent was registered under
  --key-file FILE        file holding the key printed by \`batchalyzer agent register NAME\`
  --data DIR             data directory for the outbound queue and running journal (default ./agent-data)
  --allow PATTERN        only run executables matching this glob (repeatable; e.g. /usr/local/bin/*)
  --deny PATTERN         never run executables matching this glob (repeatable; wins over --allow)
  --refuse KIND          refuse a kind of work: jobs, command, shell, node, checks, check-builtin, check-plugin, check-node
  --drain-timeout DUR    on SIGTERM, wait this long for running jobs (default 5m)
  --reconnect-max DUR    longest reconnect back-off (default 30s)
  --log-level LEVEL      debug, info, warn, error or silent (default info)
  --spawner KIND         auto (default), native or node: how jobs are started (docs/agent.md "Spawning")
  --config FILE          JSON file with any of these options (server, name, keyFile, data, allow, deny, refuse, …)

Environment: BATCHALYZER_AGENT_SERVER (comma-separated), BATCHALYZER_AGENT_NAME, BATCHALYZER_AGENT_KEY_FILE,
BATCHALYZER_AGENT_KEY, BATCHALYZER_AGENT_DATA, BATCHALYZER_AGENT_SPAWNER, BATCHALYZER_AGENT_CONFIG. See docs/agent.md.
`;

/** Parses the agent's command line (without the program name) into flags; throws AgentConfigError. */
export function parseAgentArgs(args: string[]): AgentFlags & { help?: boolean } {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        server: { type: 'string', multiple: true },
        name: { type: 'string' },
        'key-file': { type: 'string' },
        data: { type: 'string' },
        allow: { type: 'string', multiple: true },
        deny: { type: 'string', multiple: true },
        refuse: { type: 'string', multiple: true },
        'drain-timeout': { type: 'string' },
        'reconnect-max': { type: 'string' },
        'flush-interval': { type: 'string' },
        'log-level': { type: 'string' },
        spawner: { type: 'string' },
        'protocol-version': { type: 'string' },
        config: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw new AgentConfigError(`${(err as Error).message}\n\n${AGENT_USAGE}`);
  }
  const v = parsed.values;
  const flags: AgentFlags & { help?: boolean } = {};
  if (v.server) flags.server = v.server;
  if (v.name) flags.name = v.name;
  if (v['key-file']) flags.keyFile = v['key-file'];
  if (v.data) flags.data = v.data;
  if (v.allow) flags.allow = v.allow;
  if (v.deny) flags.deny = v.deny;
  if (v.refuse) flags.refuse = v.refuse.flatMap((r) => r.split(','));
  if (v['drain-timeout']) flags.drainTimeout = v['drain-timeout'];
  if (v['reconnect-max']) flags.reconnectMax = v['reconnect-max'];
  if (v['flush-interval']) flags.flushInterval = v['flush-interval'];
  if (v['log-level']) flags.logLevel = v['log-level'];
  if (v.spawner) flags.spawner = v.spawner;
  if (v['protocol-version']) flags.protocolVersion = v['protocol-version'];
  if (v.config) flags.config = v.config;
  if (v.help) flags.help = true;
  return flags;
}

/**
 * Runs the agent until it is drained: the one entry shared by `batchalyzer agent` and `batchalyzer-agent`.
 * The first SIGTERM/SIGINT drains (exit 0); a second one exits at once (exit 1; the queue stays on disk).
 */
export function runAgent(flags: AgentFlags, env: Record<string, string | undefined>, cwd: string): Agent {
  const config = compileAgentConfig({ flags, env, cwd });
  const log = createLog(config.logLevel);
  const agent = new Agent(config, log);
  agent.start();
  log.info(`agent ${config.name} started (pid ${process.pid}, data ${config.dataDir}, servers ${config.servers.join(' ')})`);
  let signals = 0;
  const onSignal = (sig: string) => {
    signals++;
    if (signals > 1) {
      log.warn(`${sig} again: exiting now; ${agent.queue.length} queued report(s) stay on disk`);
      process.exit(1);
    }
    log.info(`${sig}: draining`);
    agent.drain().then(() => {
      log.info('drained; exiting');
      process.exit(0);
    }, (err: unknown) => {
      log.error(`drain failed: ${(err as Error).message}`);
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  return agent;
}

export function agentMain(argv: string[], env: Record<string, string | undefined>, cwd: string): void {
  try {
    const flags = parseAgentArgs(argv);
    if (flags.help) {
      process.stdout.write(AGENT_USAGE);
      return;
    }
    runAgent(flags, env, cwd);
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n`);
    process.exit(2);
  }
}
