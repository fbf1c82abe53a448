// A mixed fleet on the dashboard: a burn trainer and a Python (NumPy) trainer train the same
// experiment, and the dashboard page marks each contributor of a head with its runtime.
// Python trainers run `$BONFIRE_PYTHON -m bonfire_worker` (set by `cargo xtask`).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launchBrowser, requireEnv, startNetwork } from '../lib/network.mjs';

test('the dashboard marks native-burn and native-python contributors of one head', { timeout: 300_000 }, async () => {
  requireEnv('BONFIRE_PYTHON');
  const net = await startNetwork({ trainers: 1, extraArgs: ['--python-trainers', '1'] });
  let browser;
  try {
    browser = await launchBrowser();
    const page = await browser.newPage();
    await page.goto(`${net.url}/dashboard`, { timeout: 60_000 });
    // One head row that lists both runtimes: their updates were merged into the same head.
    const mixed = page
      .locator('#heads tr.head-row')
      .filter({ has: page.locator('span.contributor[data-runtime="native-python"]') })
      .filter({ has: page.locator('span.contributor[data-runtime="native-burn"]') });
    await mixed.first().waitFor({ state: 'attached', timeout: 120_000 });
    const row = mixed.first();
    const round = Number(await row.getAttribute('data-round'));
    assert.ok(round >= 1, `a promoted round, not ${round}`);
    const python = row.locator('span.contributor[data-runtime="native-python"]').first();
    assert.match((await python.textContent()) ?? '', /native-python/, 'the runtime is written out, not only coloured');
    console.log(`round ${round} merged a native-burn and a native-python update`);
  } catch (e) {
    console.error(`--- bonfire up output (tail) ---\n${net.tail()}`);
    throw e;
  } finally {
    await browser?.close();
    await net.stop();
  }
});
