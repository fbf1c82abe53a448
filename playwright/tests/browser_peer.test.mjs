// The tab as a libp2p peer: with the edge's HTTP update route switched off (`--no-http-updates`),
// the worker dials the seed over WebSocket (the first address `GET /api/network` offers), learns
// heads by gossip, announces its signed update by gossip, the seed fetches the delta from the tab
// over the same connection, and the update is merged. The page shows the transport from the
// swarm's own events, the dashboard lists the tab as a browser peer on that transport, and the
// page's frame loop keeps running while the worker trains. The second test does the same over
// the experimental WebRTC-direct transport (`?transport=webrtc`: the page holds the peer
// connection, the worker runs libp2p over the data channels it hands over). Rounds wait for the
// tab, so its update is in each.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frameStats, startFrameProbe } from '../lib/frames.mjs';
import { ROUNDS_WAIT_FOR_TAB, findContribution, pageState, waitFor, withTab } from '../lib/network.mjs';

test('a tab contributes as a WebSocket peer with the HTTP update route off', { timeout: 600_000 }, async () => {
  await withTab({ extraArgs: ['--no-http-updates', ...ROUNDS_WAIT_FOR_TAB] }, async ({ net, browser, page, describe }) => {
    const network = await (await fetch(`${net.url}/api/network`)).json();
    assert.equal(network.browser_addrs.length, 2, `WebSocket and WebRTC-direct: ${network.browser_addrs}`);
    assert.match(network.browser_addrs[0], /\/ws\/p2p\//);
    assert.match(network.browser_addrs[1], /\/udp\/\d+\/webrtc-direct\/certhash\/[\w-]+\/p2p\//);
    await contributesOver('websocket', 'auto', { net, browser, page, describe });
  });
});

test('with ?transport=webrtc a tab contributes over WebRTC-direct with the HTTP update route off', { timeout: 600_000 }, async () => {
  await withTab({ extraArgs: ['--no-http-updates', ...ROUNDS_WAIT_FOR_TAB] }, async ({ net, browser, page, describe }) => {
    await contributesOver('webrtc-direct', 'webrtc', { net, browser, page, describe });
  });
});

/** Opens the page, contributes, and checks every sign that `transport` carried it; returns the
 * page state once linked. */
async function contributesOver(transport, choice, { net, browser, page, describe }) {
  {
    await page.goto(`${net.url}/?backend=cpu&transport=${choice}`, { timeout: 60_000 });
    await startFrameProbe(page);
    await page.locator('#contribute').click({ timeout: 60_000 });

    const linked = await waitFor(
      `the worker connected to the seed over ${transport}`,
      async () => {
        const s = await pageState(page);
        return s.link === transport && s.linkPeers.some((p) => p.role === 'seed' && p.transport === transport) ? s : null;
      },
      { timeoutMs: 120_000, intervalMs: 500, describe },
    );
    console.log(`linked: ${JSON.stringify(linked.linkPeers)}, set-up ${linked.connectMs}`);

    const accepted = await waitFor(
      'an update merged after its gossip announcement',
      async () => {
        const s = await pageState(page);
        return s.accepted >= 1 && s.lastVia === transport ? s : null;
      },
      { timeoutMs: 240_000, intervalMs: 1_000, describe },
    );
    assert.equal(accepted.rejected, 0, `no update was rejected: ${accepted.lastRejection}`);

    const gossip = await waitFor(
      'a head learned by gossip',
      async () => {
        const s = await pageState(page);
        return s.headHeard.via === 'gossip' ? s.headHeard : null;
      },
      { timeoutMs: 120_000, intervalMs: 500, describe },
    );
    assert.ok(Number.isFinite(gossip.latencyMs) && gossip.latencyMs >= 0, 'the gossip latency is measured');
    console.log(`head ${gossip.round} by gossip, ${gossip.latencyMs} ms after promotion`);

    const frames = await frameStats(page);
    console.log(`frame loop while training: ${JSON.stringify(frames)}`);
    // Liveness, not speed: the page kept drawing frames while the worker trained.
    assert.ok(frames.frames > 10, `the page drew frames while the worker trained: ${JSON.stringify(frames)}`);

    const peerId = accepted.peerId;
    const snapshot = await net.dashboard();
    const me = (snapshot.peers ?? []).find((p) => p.peer_id === peerId);
    assert.ok(me, `the dashboard lists the tab ${peerId} among its peers: ${JSON.stringify(snapshot.peers)}`);
    assert.equal(me.role, 'browser');
    assert.equal(me.transport, transport);
    const found = findContribution(snapshot, peerId);
    assert.ok(found, 'a head merged the tab’s update');
    assert.equal(found.contributor.runtime, 'browser');

    const dashboard = await browser.newPage();
    await dashboard.goto(`${net.url}/dashboard`, { timeout: 60_000 });
    const row = dashboard.locator(`#peers tr.peer-row[data-peer-id="${peerId}"]`);
    await row.waitFor({ state: 'attached', timeout: 30_000 });
    assert.equal(await row.getAttribute('data-transport'), transport);
    return linked;
  }
}
