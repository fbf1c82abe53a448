// A browser tab trains with the CPU backend; its accepted update shows up on a promoted head.
import { test } from 'node:test';
import { contributeScenario } from '../lib/contribute.mjs';

test('a tab contributes with the CPU backend', { timeout: 600_000 }, async () => {
  await contributeScenario({ backend: 'cpu', acceptTimeoutMs: 180_000, dashboardTimeoutMs: 180_000 });
});
