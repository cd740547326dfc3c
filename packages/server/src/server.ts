import { pino, type Logger } from 'pino';
import type { ServerConfig } from '@batchalyzer/core';
import { openStore, type Store } from '@batchalyzer/store';
import { DEFAULT_ENGINE_OPTIONS, Engine, type Clock, type EngineOptions } from './engine/engine.js';
import { OperatorActions } from './engine/actions.js';
import { engineReports } from './engine/reports.js';
import { EventBus } from './events.js';
import type { RunReports } from './link.js';
import { type AgentHub, type AgentHubConfig, createAgentHub } from './agents/index.js';
import { buildHttp } from './http/app.js';
import type { Service } from './lifecycle.js';

/**
 * Composition root: the one place where the server's parts are created, started in order and stopped in
 * reverse. Later capabilities (scheduler, agent link, notifier) are added to `services` here.
 */
export interface BatchalyzerServer extends Service {
  readonly events: EventBus;
  readonly store: Store;
  readonly engine: Engine;
  readonly actions: OperatorActions;
  /** Where the agent link delivers what agents report. */
  readonly reports: RunReports;
  /** The agent link: WebSocket endpoint /api/v1/agent. */
  readonly agents: AgentHub;
  /** Base URL once listening, e.g. http://127.0.0.1:8080 */
  url(): string;
}

export interface ServerParts {
  logger?: Logger;
  store?: Store;
  /** Injected in tests; the real clock otherwise. */
  clock?: Clock;
  engine?: Partial<EngineOptions>;
  agents?: Partial<AgentHubConfig>;
}

export async function createServer(config: ServerConfig, opts: ServerParts = {}): Promise<BatchalyzerServer> {
  const logger = opts.logger ?? pino({ level: config.logLevel, base: undefined });
  // The server's event loop must not wait for WAL checkpoints (dispatch-latency, docs/performance.md).
  // Store trouble it works around (an output file it cannot write: that output goes into the database) is logged.
  const store = opts.store ?? (await openStore(config.store, { backgroundCheckpoints: true, onWarning: (w) => logger.warn({ code: w.code, path: w.path }, w.message) }));
  const events = new EventBus();
  // Uptime is measured on the monotonic clock: a step of the wall clock (brief §4) is no uptime.
  const startedMono = performance.now();
  let ready = false;
  let url = '';
  const http = buildHttp({ store, logger, isReady: () => ready, startedMono });
  const clock = opts.clock ?? { now: () => Date.now() };
  const engine = new Engine(store, events, logger, clock, { ...DEFAULT_ENGINE_OPTIONS, timezone: config.timezone, ...opts.engine });
  const reports = engineReports(engine);
  const actions = new OperatorActions(engine);
  const agents = createAgentHub({ store, events, logger, reports, ...(opts.agents ? { config: opts.agents } : {}) });
  engine.attachLink(agents);
  agents.attach(http.server);
  // Started in order, stopped in reverse: the agent link stops taking reports before the engine stops.
  const services: Service[] = [engine, agents];

  return {
    name: 'server',
    events,
    store,
    engine,
    actions,
    reports,
    agents,
    url: () => url,
    async start() {
      await http.listen({ host: config.listen.host, port: config.listen.port });
      const addr = http.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : config.listen.port;
      const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
      url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
      for (const s of services) await s.start();
      ready = true;
      logger.info({ url, store: store.kind }, 'batchalyzer server ready');
      events.emit('server:ready', { url });
    },
    async stop() {
      ready = false;
      events.emit('server:stopping', {});
      for (const s of [...services].reverse()) await s.stop();
      await http.close();
      await store.close();
    },
  };
}
