import { describe, it } from 'vitest';
import { openStore } from '@batchalyzer/store';
import { freshPgUrl, pgAvailable } from '../../../test/support/pg.js';
import { storeConformance } from './conformance.js';

if (pgAvailable()) {
  const config = { kind: 'postgres' as const, url: freshPgUrl() };
  storeConformance('PostgreSQL', () => openStore(config), () => openStore(config));
} else {
  describe.skip('store conformance: PostgreSQL (BATCHALYZER_TEST_PG_URL not set)', () => {
    it('skipped', () => {});
  });
}
