import { describe, expect, it } from 'vitest';
import { compileConfig, ConfigError, parseListen, redactUrl, type ConfigInput } from '@batchalyzer/core';

/** Configuration: flags > environment > config file > defaults, compiled once into a resolved object. */

const base = (over: Partial<ConfigInput> = {}): ConfigInput => ({ flags: {}, env: {}, cwd: '/srv/app', hostTimezone: 'Europe/Berlin', ...over });
const file = (text: string) => ({ path: '/etc/batchalyzer.yaml', text });
const fails = (input: ConfigInput, message: RegExp) => {
  let err: unknown;
  try {
    compileConfig(input);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as ConfigError).code).toBe('config_invalid');
  expect((err as Error).message).toMatch(message);
};

describe('compileConfig defaults', () => {
  it('SQLite under ./data, 127.0.0.1:8080, the host zone, info', () => {
    const c = compileConfig(base());
    expect(c).toEqual({
      dataDir: '/srv/app/data',
      store: { kind: 'sqlite', path: '/srv/app/data/batchalyzer.db' },
      listen: { host: '127.0.0.1', port: 8080 },
      timezone: 'Europe/Berlin',
      logLevel: 'info',
      sources: [],
    });
  });

  it('an empty config file changes nothing', () => {
    expect(compileConfig(base({ file: file('') }))).toEqual(compileConfig(base()));
    expect(compileConfig(base({ file: file('# only a comment\n') }))).toEqual(compileConfig(base()));
  });
});

describe('compileConfig precedence: flags > environment > file > defaults', () => {
  const all = base({
    flags: { listen: '0.0.0.0:1111', timezone: 'UTC' },
    env: { BATCHALYZER_LISTEN: '0.0.0.0:2222', BATCHALYZER_TIMEZONE: 'Asia/Tokyo', BATCHALYZER_DATA: 'env-data', BATCHALYZER_LOG_LEVEL: 'debug' },
    file: file('listen: "0.0.0.0:3333"\ntimezone: America/New_York\ndata: file-data\nlogLevel: warn\n'),
  });

  it('each option comes from the highest source that sets it', () => {
    const c = compileConfig(all);
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 1111 }); // flag
    expect(c.timezone).toBe('UTC'); // flag
    expect(c.dataDir).toBe('/srv/app/env-data'); // environment beats file
    expect(c.logLevel).toBe('debug'); // environment
    expect(c.store).toEqual({ kind: 'sqlite', path: '/srv/app/env-data/batchalyzer.db' });
    expect(c.sources).toEqual(['BATCHALYZER_DATA', '--listen', '--timezone', 'BATCHALYZER_LOG_LEVEL']);
  });

  it('the file applies where neither flag nor environment speaks', () => {
    const c = compileConfig(base({ env: { BATCHALYZER_LISTEN: '9000' }, file: file('listen: "0.0.0.0:3333"\ntimezone: America/New_York\nlogLevel: warn\n') }));
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 9000 });
    expect(c.timezone).toBe('America/New_York');
    expect(c.logLevel).toBe('warn');
    expect(c.sources).toContain('/etc/batchalyzer.yaml: timezone');
  });

  it('an empty environment variable counts as unset', () => {
    const c = compileConfig(base({ env: { BATCHALYZER_TIMEZONE: '' }, file: file('timezone: Asia/Tokyo') }));
    expect(c.timezone).toBe('Asia/Tokyo');
  });

  it('a file value given as a number is taken as text', () => {
    expect(compileConfig(base({ file: file('listen: 9090') })).listen).toEqual({ host: '127.0.0.1', port: 9090 });
  });

  it('absolute paths stay, relative ones resolve against cwd', () => {
    expect(compileConfig(base({ flags: { data: '/var/lib/batchalyzer' } })).dataDir).toBe('/var/lib/batchalyzer');
    expect(compileConfig(base({ flags: { data: '../state' } })).dataDir).toBe('/srv/state');
  });
});

describe('compileConfig stores', () => {
  it('a postgres:// or postgresql:// URL selects PostgreSQL', () => {
    for (const url of ['postgres://app:secret@db.example.com:5432/batchalyzer', 'postgresql://app@localhost/b']) {
      const c = compileConfig(base({ env: { BATCHALYZER_DB: url } }));
      expect(c.store).toEqual({ kind: 'postgres', url });
      expect(c.sources).toContain('BATCHALYZER_DB');
    }
  });

  it('a sqlite: URL names the database file', () => {
    expect(compileConfig(base({ flags: { db: 'sqlite:///tmp/x.db' } })).store).toEqual({ kind: 'sqlite', path: '/tmp/x.db' });
    expect(compileConfig(base({ flags: { db: 'sqlite:local.db' } })).store).toEqual({ kind: 'sqlite', path: '/srv/app/local.db' });
  });

  it('anything else is refused with the expected forms', () => {
    fails(base({ flags: { db: 'mysql://x@y/z' } }), /--db: "mysql:\/\/x@y\/z" is not a database URL; use postgres:\/\//);
  });

  it('redacts passwords for logs', () => {
    expect(redactUrl('postgres://app:s3cret@db:5432/b')).toBe('postgres://app:***@db:5432/b');
    expect(redactUrl('postgres://app@db/b')).toBe('postgres://app@db/b');
  });
});

describe('compileConfig rejects bad values, naming where they came from', () => {
  it.each(['localhost', 'host:port', '127.0.0.1:70000', '127.0.0.1:', ':::'])('listen %j', (listen) => {
    fails(base({ flags: { listen } }), /--listen: ".*" is not a listen address; write HOST:PORT \(e.g. 127.0.0.1:8080\) or a port/);
  });

  it('a bad listen address from the environment names the variable', () => {
    fails(base({ env: { BATCHALYZER_LISTEN: 'nope' } }), /^BATCHALYZER_LISTEN: "nope" is not a listen address/);
  });

  it('an unknown time zone', () => {
    fails(base({ flags: { timezone: 'Europe/Berln' } }), /--timezone: unknown time zone "Europe\/Berln"; use an IANA zone name/);
    fails(base({ file: file('timezone: Mars/Olympus') }), /\/etc\/batchalyzer.yaml: timezone: unknown time zone "Mars\/Olympus"/);
    fails(base({ hostTimezone: 'Nowhere/Land' }), /^host: unknown time zone "Nowhere\/Land"/);
  });

  it('an unknown config-file key, listing the known ones', () => {
    fails(base({ file: file('listen: "8080"\nport: 8080\n') }), /config file \/etc\/batchalyzer.yaml: unknown option "port"; known options are data, db, listen, timezone, logLevel/);
  });

  it('a config file that is not a mapping, or not YAML', () => {
    fails(base({ file: file('- a\n- b\n') }), /must be a mapping of option: value/);
    fails(base({ file: file('listen: [\n') }), /is not valid YAML/);
    fails(base({ file: file('listen: { host: x }\n') }), /option "listen" must be text/);
  });

  it('an unknown log level', () => {
    fails(base({ flags: { logLevel: 'verbose' } }), /--log-level: log level "verbose" is not one of fatal, error, warn, info, debug, trace, silent/);
  });
});

describe('parseListen', () => {
  it('reads HOST:PORT, [IPv6]:PORT, :PORT and a bare port', () => {
    expect(parseListen('0.0.0.0:80', 'x')).toEqual({ host: '0.0.0.0', port: 80 });
    expect(parseListen('[::1]:9000', 'x')).toEqual({ host: '::1', port: 9000 });
    expect(parseListen(':9000', 'x')).toEqual({ host: '127.0.0.1', port: 9000 });
    expect(parseListen('8080', 'x')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseListen('example.com:0', 'x')).toEqual({ host: 'example.com', port: 0 });
  });
});
