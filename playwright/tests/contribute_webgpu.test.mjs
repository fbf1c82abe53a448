// A browser tab trains with the WebGPU backend (SwiftShader in headless Chromium without a GPU:
// about a second per step, hence the longer waits); its update shows up on a promoted head.
import { test } from 'node:test';
import { contributeScenario } from '../lib/contribute.mjs';

test('a tab contributes with the WebGPU backend', { timeout: 900_000 }, async () => {
  await contributeScenario({ backend: 'webgpu', acceptTimeoutMs: 300_000, dashboardTimeoutMs: 300_000 });
});
