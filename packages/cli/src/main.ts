#!/usr/bin/env node
import { userInfo } from 'node:os';
import { Command, Option } from 'commander';
import { BatchalyzerError, type RawOptions, VERSION } from '@batchalyzer/core';
import { LATEST_SCHEMA_VERSION, openStore } from '@batchalyzer/store';
import { loadConfig, type StoreFlags } from './config.js';
import { applyFile, exportDefinitions } from './commands/definitions.js';
import { addAgentCommands } from './commands/agent-cli.js';
import { type PreviewFlags, previewCommand } from './commands/preview.js';

const program = new Command('batchalyzer')
  .description('cron, an enterprise workload scheduler and Nagios in one')
  .version(VERSION, '-V, --version')
  .showHelpAfterError('(run with --help for usage)');

const storeOptions = (cmd: Command) =>
  cmd
    .addOption(new Option('--data <dir>', 'data directory for the embedded SQLite store (default ./data; env BATCHALYZER_DATA)'))
    .addOption(new Option('--db <url>', 'PostgreSQL URL, postgres://USER@HOST:PORT/DB (env BATCHALYZER_DB); overrides --data'))
    .addOption(new Option('--config <file>', 'YAML config file with options such as data, db, listen, timezone (env BATCHALYZER_CONFIG)'));

const actor = () => `cli:${userInfo().username}`;

storeOptions(
  program
    .command('server')
    .description('run the batchalyzer server (HTTP API with /api/v1/health; applies --apply FILE at start)')
    .addOption(new Option('--listen <addr>', 'HTTP listen address HOST:PORT (default 127.0.0.1:8080; env BATCHALYZER_LISTEN)'))
    .addOption(new Option('--timezone <zone>', 'default IANA zone for schedules and plan days (default: the host zone)'))
    .addOption(new Option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent (default info)'))
    .addOption(new Option('--apply <file>', 'apply this jobs-as-code file at start (create/update only)')),
).action(async (opts: StoreFlags & RawOptions & { apply?: string }) => {
  // Loaded on demand: the HTTP framework and the engine are not needed by the other commands.
  const { runServer } = await import('./commands/server.js');
  await runServer(loadConfig(opts), { apply: opts.apply, actor: actor() });
});

storeOptions(
  program
    .command('apply')
    .description('make the stored definitions match a jobs-as-code YAML file (all or nothing)')
    .requiredOption('-f, --file <file>', 'the YAML file (see docs/jobs-as-code.md)')
    .option('--prune', 'also delete definitions that the file does not contain', false)
    .option('--dry-run', 'print the changes without applying them', false),
).action(async (opts: StoreFlags & { file: string; prune: boolean; dryRun: boolean }) => {
  const config = loadConfig(opts);
  const store = await openStore(config.store);
  try {
    const r = await applyFile(store, opts.file, { prune: opts.prune, dryRun: opts.dryRun, actor: actor(), defaultTimezone: config.timezone });
    for (const w of r.warnings) process.stderr.write(`warning: ${w.path}: ${w.message}\n`);
    if (r.changed === 0) process.stdout.write('no changes\n');
    else {
      process.stdout.write(`${r.lines.join('\n')}\n`);
      process.stdout.write(opts.dryRun ? `dry run: ${r.changed} change(s) not applied\n` : `applied ${r.changed} change(s)\n`);
    }
  } finally {
    await store.close();
  }
});

storeOptions(
  program
    .command('export')
    .description('write the stored definitions as a jobs-as-code YAML file (export → apply changes nothing)')
    .option('-o, --output <file>', 'write to this file instead of standard output'),
).action(async (opts: StoreFlags & { output?: string }) => {
  const store = await openStore(loadConfig(opts).store);
  try {
    const text = await exportDefinitions(store, opts.output);
    if (!opts.output) process.stdout.write(text);
  } finally {
    await store.close();
  }
});

storeOptions(
  program
    .command('migrate')
    .description('apply pending database migrations and report the schema version')
    .option('--status', 'only report the schema version; change nothing', false),
).action(async (opts: StoreFlags & { status: boolean }) => {
  const config = loadConfig(opts);
  const store = await openStore(config.store, { migrate: !opts.status });
  try {
    if (opts.status) {
      process.stdout.write(`schema version ${await store.schemaVersion()} (this release: ${LATEST_SCHEMA_VERSION}) in ${store.location}\n`);
    } else {
      const v = await store.schemaVersion();
      process.stdout.write(`schema version ${v} (this release: ${LATEST_SCHEMA_VERSION}) in ${store.location}; up to date\n`);
    }
  } finally {
    await store.close();
  }
});

storeOptions(
  program
    .command('preview')
    .description('print the next run instants of a schedule, one per line in UTC (DST notes on stderr)')
    .option('--cron <expr>', 'a cron expression (5 or 6 fields, or @daily …)')
    .option('--every <duration>', 'an interval; with --cron, the interval inside the cron window')
    .option('--offset <hh:mm>', 'with --every alone: offset of the grid from the plan day start')
    .option('--at <datetime>', 'a one-off date-time, e.g. 2026-12-01T14:30')
    .option('--job <name>', 'a stored job (uses --data/--db)')
    .option('--tz <zone>', 'IANA time zone (default: the plan zone)')
    .option('--from <iso>', 'start after this instant (default: now)')
    .option('--count <n>', 'how many instants', '10')
    .option('--new-day-at <hh:mm>', 'plan day start, which anchors --every grids (default 00:00)'),
).action(async (opts: StoreFlags & PreviewFlags) => {
  const config = loadConfig({ ...(opts.data ? { data: opts.data } : {}), ...(opts.db ? { db: opts.db } : {}), ...(opts.config ? { config: opts.config } : {}) });
  const r = await previewCommand(opts, () => openStore(config.store), config.timezone);
  for (const n of r.notes) process.stderr.write(`note: ${n}\n`);
  if (r.instants.length) process.stdout.write(`${r.instants.join('\n')}\n`);
});

addAgentCommands(program, storeOptions, actor);

program
  .command('version')
  .description('print the version of batchalyzer')
  .action(() => {
    process.stdout.write(`batchalyzer ${VERSION} (node ${process.versions.node}, schema ${LATEST_SCHEMA_VERSION})\n`);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof BatchalyzerError) process.stderr.write(`error: ${err.message}\n`);
  else process.stderr.write(`error: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
