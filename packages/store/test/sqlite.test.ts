import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '@batchalyzer/store';
import { storeConformance } from './conformance.js';

const dir = mkdtempSync(join(tmpdir(), 'batchalyzer-store-'));
const config = { kind: 'sqlite' as const, path: join(dir, 'test.db') };
storeConformance('SQLite', () => openStore(config), () => openStore(config));
storeConformance('SQLite in memory (output in blobs)', () => openStore({ kind: 'sqlite', path: ':memory:' }));
