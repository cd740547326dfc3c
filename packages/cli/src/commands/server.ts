import type { ServerConfig } from '@batchalyzer/core';
import { createServer } from '@batchalyzer/server';
import { applyFile } from './definitions.js';

/** `batchalyzer server`: starts everything, applies `--apply FILE` first, stops cleanly on SIGTERM/SIGINT. */
export async function runServer(config: ServerConfig, opts: { apply?: string | undefined; actor: string }): Promise<void> {
  const server = await createServer(config);
  if (opts.apply) {
    const r = await applyFile(server.store, opts.apply, { prune: false, dryRun: false, actor: opts.actor, defaultTimezone: config.timezone });
    process.stdout.write(r.changed ? `applied ${opts.apply}: ${r.changed} change(s)\n` : `applied ${opts.apply}: no changes\n`);
  }
  await server.start();
  process.stdout.write(`batchalyzer server listening on ${server.url()} (store: ${server.store.kind} ${server.store.location})\n`);
  process.stdout.write(`health: ${server.url()}/api/v1/health\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    process.stdout.write(`${signal}: stopping\n`);
    server.stop().then(() => process.exit(0), (err) => {
      process.stderr.write(`error while stopping: ${(err as Error).message}\n`);
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
