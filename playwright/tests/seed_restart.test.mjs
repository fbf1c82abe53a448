// The seed restarts and the tab reconnects by itself: a tab contributes over WebSocket, the whole
// local network stops (the page sees its peer connection close and falls back), then starts again
// from the same data directory on the same HTTP port; the worker dials the seed's new address
// (from GET /api/network) with backoff, and contributes again over WebSocket.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort, launchBrowser, pageState, reportFailure, startNetwork, waitFor } from '../lib/network.mjs';

test('the tab reconnects after the seed restarts', { timeout: 600_000 }, async () => {
  const port = await freePort();
  const dataDir = await mkdtemp(join(tmpdir(), 'bonfire-restart-'));
  let net = await startNetwork({ port, dataDir });
  let browser;
  const describe = async () => JSON.stringify(await pageState(page));
  let page;
  try {
    browser = await launchBrowser();
    page = await browser.newPage();
    await page.goto(`${net.url}/?backend=cpu`, { timeout: 60_000 });
    await page.locator('#contribute').click({ timeout: 60_000 });
    const first = await waitFor(
      'an update merged over WebSocket',
      async () => {
        const s = await pageState(page);
        return s.accepted >= 1 && s.lastVia === 'websocket' ? s : null;
      },
      { timeoutMs: 240_000, intervalMs: 1_000, describe },
    );

    await net.stop({ keepData: true });
    const down = await waitFor(
      'the page to see the peer connection close',
      async () => {
        const s = await pageState(page);
        return s.link === 'http-fallback' && s.linkPeers.length === 0 ? s : null;
      },
      { timeoutMs: 60_000, intervalMs: 250, describe },
    );
    console.log(`seed down; the page says: ${down.link}`);

    const restartedAt = Date.now();
    net = await startNetwork({ port, dataDir });
    await waitFor(
      'the worker to reconnect over WebSocket',
      async () => {
        const s = await pageState(page);
        return s.link === 'websocket' && s.linkPeers.some((p) => p.role === 'seed') ? s : null;
      },
      { timeoutMs: 120_000, intervalMs: 250, describe },
    );
    console.log(`reconnected ${((Date.now() - restartedAt) / 1000).toFixed(1)} s after the restart began`);
    const again = await waitFor(
      'another update merged after the restart',
      async () => {
        const s = await pageState(page);
        return s.accepted > first.accepted && s.lastVia === 'websocket' ? s : null;
      },
      { timeoutMs: 240_000, intervalMs: 1_000, describe },
    );
    assert.ok(again.accepted > first.accepted);
  } catch (e) {
    reportFailure(browser, net);
    throw e;
  } finally {
    await browser?.close();
    await net.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
});
