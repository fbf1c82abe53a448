// The "a tab contributes" scenario shared by the CPU and WebGPU tests: open the contribute page
// with a forced backend, press Contribute, wait until an update of this tab is accepted, then see
// the tab's peer id among a head's contributors on the dashboard page and in the dashboard JSON.

import assert from 'node:assert/strict';
import { findContribution, launchBrowser, pageState, reportFailure, startNetwork, waitFor } from './network.mjs';

/**
 * @param {object} o
 * @param {'cpu'|'webgpu'} o.backend  forced with `?backend=`
 * @param {number} o.acceptTimeoutMs  until `#accepted[data-count]` ≥ 1
 * @param {number} o.dashboardTimeoutMs  until the peer id shows up on a head
 * @param {string[]} [o.networkArgs]  extra `bonfire up` flags
 */
export async function contributeScenario({ backend, acceptTimeoutMs, dashboardTimeoutMs, networkArgs = [] }) {
  const net = await startNetwork({ extraArgs: networkArgs });
  let browser;
  try {
    browser = await launchBrowser();
    const page = await browser.newPage();
    await page.goto(`${net.url}/?backend=${backend}`, { timeout: 60_000 });

    const contribute = page.locator('#contribute');
    await contribute.waitFor({ state: 'visible', timeout: 60_000 });
    await contribute.click({ timeout: 60_000 });
    const clickedAt = Date.now();

    const accepted = await waitFor(
      'an accepted update (#accepted[data-count] >= 1)',
      async () => {
        const s = await pageState(page);
        return s.accepted >= 1 ? s : null;
      },
      {
        timeoutMs: acceptTimeoutMs,
        intervalMs: 1_000,
        describe: async () => JSON.stringify(await pageState(page)),
      },
    );
    console.log(
      `update accepted ${((Date.now() - clickedAt) / 1000).toFixed(1)} s after Contribute: ` +
        JSON.stringify(accepted),
    );

    const peerId = ((await page.textContent('#peer-id', { timeout: 10_000 })) ?? '').trim();
    assert.ok(peerId.length > 0, '#peer-id is empty');
    assert.equal(
      await page.getAttribute('#backend', 'data-backend', { timeout: 10_000 }),
      backend,
      `#backend[data-backend] should be the forced backend ${backend}`,
    );

    // The dashboard page shows the tab among a head's contributors once a head includes it.
    const dashboard = await browser.newPage();
    await dashboard.goto(`${net.url}/dashboard`, { timeout: 60_000 });
    const mine = dashboard.locator(`#heads tr.head-row span.contributor[data-peer-id="${peerId}"]`);
    await mine.first().waitFor({ state: 'attached', timeout: dashboardTimeoutMs });
    assert.equal(await mine.first().getAttribute('data-runtime'), 'browser');

    // …and so does the JSON the dashboard is drawn from.
    const found = await waitFor(
      `a head with contributor ${peerId} in the dashboard JSON`,
      async () => findContribution(await net.dashboard(), peerId),
      { timeoutMs: 30_000, intervalMs: 1_000 },
    );
    assert.equal(found.contributor.runtime, 'browser');
    assert.ok(found.contributor.examples > 0, 'a contribution is weighted by its leased examples');
    console.log(
      `head round ${found.head.round} (val_accuracy ${found.head.metrics?.val_accuracy}) ` +
        `includes ${peerId} (${found.contributor.examples} examples)`,
    );
  } catch (e) {
    reportFailure(browser, net);
    throw e;
  } finally {
    await browser?.close();
    await net.stop();
  }
}
