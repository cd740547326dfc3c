import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Logger } from 'pino';
import { BatchalyzerError } from '@batchalyzer/core';
import type { Store } from '@batchalyzer/store';
import { healthRoutes } from './health.js';

/** The HTTP API (brief §11). Errors always come back as `{ error: { code, message } }` with a 4xx/5xx status. */
export function buildHttp(deps: { store: Store; logger: Logger; isReady: () => boolean; startedMono: number }): FastifyInstance {
  const app: FastifyInstance = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }), bodyLimit: 10 * 1024 * 1024 });
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : err instanceof BatchalyzerError ? 400 : 500;
    if (status >= 500) deps.logger.error({ err }, 'request failed');
    return reply.code(status).send({ error: { code: err.code ?? 'internal', message: status >= 500 ? 'internal error; see the server log' : err.message } });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: { code: 'not_found', message: `no route ${req.method} ${req.url}; the API lives under /api/v1` } }));
  healthRoutes(app, deps);
  return app;
}
