import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { emptyDefinitions, planApplyFromYaml, ValidationError } from '@batchalyzer/core';

/**
 * Every file in test/fixtures/invalid is invalid for exactly the reason in its name. Its `# expect: PATH` lines
 * list every path the validator must report; each message must say what is wrong and how to fix it.
 */
const DIR = fileURLToPath(new URL('../../../test/fixtures/invalid/', import.meta.url));
const fixtures = readdirSync(DIR).filter((f) => f.endsWith('.yaml')).sort();

function validate(text: string, file: string): ValidationError {
  try {
    planApplyFromYaml(emptyDefinitions(), text, file, { defaultTimezone: 'UTC' });
  } catch (err) {
    if (err instanceof ValidationError) return err;
    throw err;
  }
  throw new Error(`${file} was accepted`);
}

describe('invalid jobs-as-code fixtures', () => {
  it('has at least 18 fixtures, named NN-short-name.yaml', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(18);
    for (const f of fixtures) expect(f).toMatch(/^\d{2}-[a-z0-9-]+\.yaml$/);
    expect(new Set(fixtures.map((f) => f.slice(0, 2))).size).toBe(fixtures.length);
  });

  it.each(fixtures)('%s', (file) => {
    const text = readFileSync(DIR + file, 'utf8');
    const expected = [...text.matchAll(/^# expect: (.+)$/gm)].map((m) => m[1]!.trim());
    expect(expected.length, 'the file starts with # expect: lines').toBeGreaterThan(0);
    expect(text.startsWith('# expect: ')).toBe(true);

    const err = validate(text, file);
    expect(new Set(err.issues.map((i) => i.path))).toEqual(new Set(expected));
    for (const issue of err.issues) {
      expect(issue.message.length, `${issue.path}: ${issue.message}`).toBeGreaterThanOrEqual(20);
      expect(issue.message).not.toMatch(/^Invalid|Invalid input|Invalid key in record|expected .* received/);
    }
    expect(err.message).toMatch(new RegExp(`^${file.replace(/\./g, '\\.')} is invalid \\(\\d+ errors?\\); nothing was changed:\\n`));
    for (const path of expected) expect(err.message).toContain(`\n  ${path}: `);
  });

  it('suggests the key that was meant', () => {
    const msg = (file: string) => validate(readFileSync(DIR + file, 'utf8'), file).issues[0]!.message;
    expect(msg('01-unknown-key.yaml')).toContain('(did you mean "schedule"?)');
    expect(msg('02-unknown-top-level-key.yaml')).toContain('(did you mean "jobs"?)');
    expect(msg('32-check-key-typo.yaml')).toContain('(did you mean "crit"?)');
  });

  it('lists every error of a file with several broken entries', () => {
    const err = validate(readFileSync(DIR + '23-several-errors.yaml', 'utf8'), '23-several-errors.yaml');
    expect(err.issues).toHaveLength(4);
  });

  it('points at {agent} quoting for the flow-mapping pitfall', () => {
    const err = validate(readFileSync(DIR + '30-unquoted-agent-in-flow.yaml', 'utf8'), 'f');
    for (const i of err.issues) expect(i.message).toContain('quote names that contain {agent}');
  });
});
