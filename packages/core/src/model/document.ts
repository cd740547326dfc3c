import { timeOfDay, timeZone } from './fields.js';

/** Top-level keys of a jobs-as-code file; sections are parsed entry by entry in yaml.ts. */
export const documentShape = {
  timezone: timeZone,
  newDayAt: timeOfDay,
  groups: null,
  resources: null,
  jobs: null,
  checks: null,
  notify: null,
} as const;
