// Nothing lost on reload: a tab trains an update that cannot be delivered (the edge's update
// route is blocked for this page), so it waits in IndexedDB; the page is reloaded, the worker
// finds it there and delivers it while its round is still open (the round waits for the tab:
// --min-updates 3 with two native trainers), and that same update is accepted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ROUNDS_WAIT_FOR_TAB, pageState, waitFor, withTab } from '../lib/network.mjs';

test('an update trained before a reload is delivered after it', { timeout: 600_000 }, async () => {
  await withTab({ extraArgs: ROUNDS_WAIT_FOR_TAB }, async ({ net, browser, page, describe }) => {
    const blocked = '**/api/leases/*/update';
    await browser.context.route(blocked, (route) => route.abort('connectionrefused'));
    // HTTP only: the route above is the one way out for the update.
    await page.goto(`${net.url}/?backend=cpu&transport=http`, { timeout: 60_000 });
    await page.locator('#contribute').click({ timeout: 60_000 });

    const before = await waitFor(
      'a trained update waiting for delivery',
      async () => {
        const s = await pageState(page);
        return s.pending ? s : null;
      },
      { timeoutMs: 240_000, intervalMs: 500, describe },
    );
    const updateId = before.pending;
    // The blocked delivery failed (so the update is still only in the tab) before the reload.
    await waitFor(
      'the blocked delivery to fail',
      async () => ((await page.textContent('#worker-log')) ?? '').includes('edge unreachable'),
      { timeoutMs: 60_000, intervalMs: 250, describe },
    );
    console.log(`pending before the reload: ${updateId} (accepted ${before.accepted})`);
    assert.equal(before.accepted, 0);

    await browser.context.unroute(blocked);
    await page.reload({ timeout: 60_000 });
    await page.locator('#contribute').click({ timeout: 60_000 });
    const after = await waitFor(
      'the same update accepted after the reload',
      async () => {
        const s = await pageState(page);
        const log = (await page.textContent('#worker-log')) ?? '';
        return s.accepted >= 1 && log.includes(`update ${updateId.slice(0, 8)} accepted`) ? s : null;
      },
      { timeoutMs: 180_000, intervalMs: 500, describe },
    );
    console.log(`after the reload: ${JSON.stringify({ accepted: after.accepted, pending: after.pending })}`);
    assert.equal(after.pending, null, 'nothing is pending once it was accepted');
    const log = (await page.textContent('#worker-log')) ?? '';
    assert.ok(log.includes('from before the reload is still pending'), 'the worker says it restored the update');
  });
});
