import { readFileSync } from 'node:fs';
import { compileConfig, ConfigError, type RawOptions, type ServerConfig } from '@batchalyzer/core';

/** The CLI's only contact with the environment: flags + process.env + config file → ServerConfig. */
export interface StoreFlags {
  data?: string;
  db?: string;
  config?: string;
}

export function loadConfig(flags: StoreFlags & RawOptions): ServerConfig {
  let file: { path: string; text: string } | undefined;
  const path = flags.config ?? process.env.BATCHALYZER_CONFIG;
  if (path) {
    try {
      file = { path, text: readFileSync(path, 'utf8') };
    } catch (err) {
      throw new ConfigError(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; check the --config path`);
    }
  }
  const { config: _c, ...raw } = flags;
  return compileConfig({
    flags: raw,
    env: process.env,
    cwd: process.cwd(),
    hostTimezone: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC',
    ...(file ? { file } : {}),
  });
}
