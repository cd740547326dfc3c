import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { openStore } from '@batchalyzer/store';
import { storeConformance } from './conformance.js';

const fresh = () => join(mkdtempSync(join(tmpdir(), 'batchalyzer-ckpt-')), 'test.db');

describe('SQLite background checkpoints', () => {
  it('copies committed pages into the database file off the event loop, where a commit alone would leave them in the WAL', async () => {
    // The migration writes a few hundred pages: below SQLite's autocheckpoint, so without the worker they stay
    // in the WAL until the store closes.
    const plain = fresh();
    const store = await openStore({ kind: 'sqlite', path: plain });
    await new Promise((r) => setTimeout(r, 300));
    expect(statSync(plain).size).toBeLessThan(64 * 1024);
    await store.close();

    const path = fresh();
    const background = await openStore({ kind: 'sqlite', path }, { backgroundCheckpoints: true });
    await vi.waitFor(() => expect(statSync(path).size).toBeGreaterThan(64 * 1024), { timeout: 5_000 });
    await background.close();
  });

  it('is a no-op for an in-memory database', async () => {
    const store = await openStore({ kind: 'sqlite', path: ':memory:' }, { backgroundCheckpoints: true });
    await store.ping();
    await store.close();
  });
});

// The whole conformance suite with the checkpointer running next to the store's own connection.
const path = fresh();
storeConformance('SQLite with background checkpoints', () => openStore({ kind: 'sqlite', path }, { backgroundCheckpoints: true }), () => openStore({ kind: 'sqlite', path }, { backgroundCheckpoints: true }));
