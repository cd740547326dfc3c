import { randomBytes } from 'node:crypto';

/**
 * PostgreSQL for tests: `.ci/run` sets BATCHALYZER_TEST_PG_URL; without it, PostgreSQL tests skip with a notice.
 * Each call gives a fresh schema, so concurrent test runs never collide.
 */
export const PG_URL = process.env.BATCHALYZER_TEST_PG_URL;

let noticed = false;
export function pgAvailable(): boolean {
  if (!PG_URL && !noticed) {
    noticed = true;
    console.warn('NOTICE: BATCHALYZER_TEST_PG_URL is not set; PostgreSQL tests are skipped (CI sets it).');
  }
  return Boolean(PG_URL);
}

export function freshPgUrl(): string {
  const url = new URL(PG_URL!);
  url.searchParams.set('schema', `t_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`);
  return url.toString();
}
