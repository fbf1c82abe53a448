// A browser tab trains with the WebGPU backend (SwiftShader in headless Chromium without a GPU:
// about a second per step, hence the longer waits); its update shows up on a promoted head.
// Rounds wait for the tab (three updates: two native trainers and the tab, with a deadline long
// enough for the first window's shader compilation), so its window is never too late however
// loaded the machine is.
import { test } from 'node:test';
import { contributeScenario } from '../lib/contribute.mjs';
import { ROUNDS_WAIT_FOR_TAB } from '../lib/network.mjs';

test('a tab contributes with the WebGPU backend', { timeout: 900_000 }, async () => {
  await contributeScenario({
    backend: 'webgpu',
    acceptTimeoutMs: 400_000,
    dashboardTimeoutMs: 300_000,
    networkArgs: ROUNDS_WAIT_FOR_TAB,
  });
});
