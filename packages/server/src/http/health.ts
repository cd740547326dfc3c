import type { FastifyInstance } from 'fastify';
import { VERSION } from '@batchalyzer/core';
import type { Store } from '@batchalyzer/store';

/** GET /api/v1/health: for load balancers and probes. 200 when ready, 503 while starting or when the store fails. */
export function healthRoutes(app: FastifyInstance, deps: { store: Store; isReady: () => boolean; startedMono: number }): void {
  app.get('/api/v1/health', async (_req, reply) => {
    let storeOk = true;
    let storeError: string | undefined;
    try {
      await deps.store.ping();
    } catch (err) {
      storeOk = false;
      storeError = (err as Error).message;
    }
    const ready = deps.isReady() && storeOk;
    return reply.code(ready ? 200 : 503).send({
      status: ready ? 'ok' : 'unavailable',
      ready,
      version: VERSION,
      store: { kind: deps.store.kind, ok: storeOk, ...(storeError ? { error: storeError } : {}) },
      uptimeSeconds: Math.round((performance.now() - deps.startedMono) / 1000),
    });
  });
}
