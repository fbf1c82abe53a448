// `?backend=auto` with a WebGPU adapter (SwiftShader in headless Chromium without a GPU): the
// worker measures both backends on its first lease, shows the numbers, trains on the faster one
// and still delivers that lease's update.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ROUNDS_WAIT_FOR_TAB, pageState, waitFor, withTab } from '../lib/network.mjs';

test('the tab measures WebGPU against the CPU and keeps the faster', { timeout: 900_000 }, async () => {
  // Rounds wait for the tab, whose first window includes the measurement.
  await withTab({ extraArgs: ROUNDS_WAIT_FOR_TAB }, async ({ net, page, describe }) => {
    await page.goto(`${net.url}/?backend=auto`, { timeout: 60_000 });
    await page.locator('#contribute').click({ timeout: 60_000 });
    const measured = await waitFor(
      'the calibration numbers on the page',
      async () => (await pageState(page)).calibration,
      { timeoutMs: 400_000, intervalMs: 1_000, describe },
    );
    console.log(`calibration: ${JSON.stringify(measured)}`);
    assert.ok(measured.cpu > 0 && measured.webgpu > 0, 'both backends were measured');
    assert.equal(measured.chosen, measured.webgpu > measured.cpu ? 'webgpu' : 'cpu', 'the faster backend is kept');
    const done = await waitFor(
      'an accepted update after the measurement',
      async () => {
        const s = await pageState(page);
        return s.accepted >= 1 ? s : null;
      },
      { timeoutMs: 400_000, intervalMs: 1_000, describe },
    );
    assert.equal(done.backend, measured.chosen, 'the worker trains on the backend it kept');
  });
});
