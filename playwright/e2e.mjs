#!/usr/bin/env node
// End-to-end run, used by `cargo xtask e2e`: a local network (native trainers) plus one headless
// browser tab that contributes, until the newest head reaches round N (or 20 minutes pass).
// Writes OUT/summary.json (and OUT/bonfire.log, OUT/browser.log) and prints the summary.
//
//   node playwright/e2e.mjs --out DIR [--rounds 20] [--backend cpu|webgpu|auto] [--port 0]
//                           [--python-trainers 0] [--transport auto|webrtc|websocket|http]
//
// Needs BONFIRE_BIN, BONFIRE_DIST, BONFIRE_DATASET (see lib/network.mjs); Python trainers run
// `$BONFIRE_PYTHON -m bonfire_worker` (the NumPy workload).

import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { frameStats, startFrameProbe } from './lib/frames.mjs';
import { EXPERIMENT, getJson, launchBrowser, pageState, startNetwork, waitFor } from './lib/network.mjs';

const TIMEOUT_MS = 20 * 60_000;
const POLL_MS = 1_000;

const { values: opts } = parseArgs({
  options: {
    out: { type: 'string' },
    rounds: { type: 'string', default: '20' },
    backend: { type: 'string', default: 'cpu' },
    port: { type: 'string', default: '0' },
    'python-trainers': { type: 'string', default: '0' },
    transport: { type: 'string', default: 'auto' },
  },
});
if (!opts.out) fail('--out DIR is required');
const rounds = Number(opts.rounds);
const port = Number(opts.port);
const pythonTrainers = Number(opts['python-trainers']);
if (!Number.isInteger(pythonTrainers) || pythonTrainers < 0) {
  fail(`--python-trainers must be a whole number, not ${opts['python-trainers']}`);
}
if (!Number.isInteger(rounds) || rounds < 1) fail(`--rounds must be a positive integer, not ${opts.rounds}`);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port must be a port number, not ${opts.port}`);
if (!['cpu', 'webgpu', 'auto'].includes(opts.backend)) fail(`--backend must be cpu, webgpu or auto, not ${opts.backend}`);
if (!['auto', 'webrtc', 'websocket', 'http'].includes(opts.transport)) fail(`--transport must be auto, webrtc, websocket or http, not ${opts.transport}`);
const out = resolve(opts.out);

function fail(message) {
  console.error(`e2e: ${message}`);
  process.exit(2);
}

/** The first number in a text like "1,234.5 examples/s" (null if there is none). */
function firstNumber(text) {
  const m = /(\d[\d,]*(?:\.\d+)?|\.\d+)/.exec(text ?? '');
  return m ? Number(m[1].replace(/,/g, '')) : null;
}

/** Median and max time of the checkpoint fetches, with their size, path and throughput. */
function summarizeFetches(samples) {
  if (samples.length === 0) return null;
  const ms = samples.map((f) => f.ms).sort((a, b) => a - b);
  const median = ms[Math.floor(ms.length / 2)];
  const { bytes, via } = samples.at(-1);
  return { via, bytes, samples: ms.length, median_ms: median, max_ms: ms.at(-1), median_mb_per_s: Number((bytes / 1e3 / median).toFixed(2)) };
}

const secondsSince = (t) => Number(((performance.now() - t) / 1000).toFixed(2));

await mkdir(out, { recursive: true });
const started = performance.now();
// Rounds wait for the tab: a round closes once the two native trainers, the Python trainers
// *and* the browser have delivered (or its deadline passes), so every round measures the
// browser's part rather than the natives racing through 20 rounds before the tab has its first
// lease. The deadline and lease lifetime leave room for WebGPU on a software adapter (~40 s a
// window, more under load).
const net = await startNetwork({
  port,
  logFile: join(out, 'bonfire.log'),
  extraArgs: [
    '--min-updates',
    String(3 + pythonTrainers),
    '--round-deadline-secs',
    '180',
    '--lease-ttl-secs',
    '300',
    '--python-trainers',
    String(pythonTrainers),
  ],
});
let browser;
let exitCode = 0;
try {
  browser = await launchBrowser();
  const page = await browser.newPage();

  const t0 = performance.now();
  await page.goto(`${net.url}/?backend=${opts.backend}&transport=${opts.transport}`, { timeout: 60_000 });
  const contribute = page.locator('#contribute');
  await contribute.waitFor({ state: 'visible', timeout: 60_000 });
  await startFrameProbe(page);
  await contribute.click({ timeout: 60_000 });
  console.log(`contributing from ${net.url}/?backend=${opts.backend}; waiting for round ${rounds}`);

  // Heads by round, merged over every poll (a snapshot may list only the recent ones).
  const heads = new Map();
  let firstAccepted = null;
  let lastRound = -1;
  let state = {};
  let reached = false;
  // Head gossip latency (promotion → the tab knows), one sample per round heard by gossip.
  const gossipLatency = new Map();
  // Checkpoint fetches (ms), one sample per round the tab trained in.
  const fetches = new Map();
  const transports = new Set();
  try {
    await waitFor(
      `round ${rounds}`,
      async () => {
        state = await pageState(page).catch(() => state);
        if (state.headHeard?.via === 'gossip' && Number.isFinite(state.headHeard.latencyMs)) {
          gossipLatency.set(state.headHeard.round, state.headHeard.latencyMs);
        }
        if (state.lastVia) transports.add(state.lastVia);
        if (state.checkpointFetch && state.round) fetches.set(state.round, state.checkpointFetch);
        if (firstAccepted === null && state.accepted >= 1) {
          firstAccepted = secondsSince(t0);
          console.log(`first browser update accepted after ${firstAccepted} s`);
        }
        const snapshot = await net.dashboard();
        for (const h of snapshot.heads ?? []) heads.set(h.round, h);
        const newest = snapshot.heads?.[0];
        if (newest && newest.round !== lastRound) {
          lastRound = newest.round;
          const browserCount = (newest.contributors ?? []).filter((c) => c.runtime === 'browser').length;
          console.log(
            `[${secondsSince(started).toFixed(0).padStart(5)} s] round ${newest.round} · ` +
              `val_accuracy ${newest.metrics?.val_accuracy?.toFixed?.(4)} · ` +
              `contributors ${newest.contributors?.length ?? 0} (browser ${browserCount}) · ` +
              `tab accepted ${state.accepted} rejected ${state.rejected} · ${state.throughput ?? ''}`,
          );
        }
        return newest && newest.round >= rounds;
      },
      { timeoutMs: TIMEOUT_MS, intervalMs: POLL_MS },
    );
    reached = true;
  } catch (e) {
    console.error(`e2e: ${e.message}`);
  }
  state = await pageState(page).catch(() => state);

  const byRound = [...heads.values()].sort((a, b) => a.round - b.round);
  const count = (runtime) =>
    byRound.reduce((n, h) => n + (h.contributors ?? []).filter((c) => c.runtime === runtime).length, 0);
  const newest = byRound.at(-1);
  const experiment = await getJson(`${net.url}/api/experiments/${EXPERIMENT}`).catch(() => null);
  // The seed's verdicts on the reducer's proposals (its own aggregate against the reducer's).
  const metricsText = await fetch(`${net.url}/metrics`).then((r) => r.text()).catch(() => '');
  const reductions = Object.fromEntries(
    [...metricsText.matchAll(/^bonfire_reductions_total\{verdict="([^"]+)"\} (\S+)$/gm)].map((m) => [m[1], Number(m[2])]),
  );
  const frames = await frameStats(page).catch(() => null);
  const latencies = [...gossipLatency.values()].sort((a, b) => a - b);
  await browser.close();
  // Every promoted head, re-checked from the seed's data directory once the network is down.
  const heads_report = await net.verifyHeads().catch((e) => ({ problems: [e.message] }));
  const summary = {
    target_rounds: rounds,
    reached_target: reached,
    rounds_promoted: newest?.round ?? 0,
    browser_updates_accepted: count('browser'),
    native_updates_accepted: count('native-burn'),
    python_trainers: pythonTrainers,
    validator_quorum: experiment?.manifest?.body?.quorum ?? null,
    validators: experiment?.manifest?.body?.validators?.length ?? null,
    heads_promoted: heads_report.heads ?? null,
    heads_with_valid_certificate: heads_report.heads_with_valid_certificate ?? null,
    heads_problems: heads_report.problems ?? null,
    reducer_proposals_by_verdict: reductions,
    python_updates_accepted: count('native-python'),
    initial_val_accuracy: heads.get(0)?.metrics?.val_accuracy ?? null,
    final_val_accuracy: newest?.metrics?.val_accuracy ?? null,
    browser_backend_requested: opts.backend,
    browser_backend: state.backend ?? null,
    first_browser_update_accepted_s: firstAccepted,
    browser_examples_per_sec: firstNumber(state.throughput),
    browser_throughput_text: state.throughput ?? null,
    tab_accepted_count: Number.isFinite(state.accepted) ? state.accepted : null,
    tab_rejected_count: Number.isFinite(state.rejected) ? state.rejected : null,
    tab_last_rejection: state.lastRejection || null,
    browser_peer_id: state.peerId ?? null,
    browser_transport: state.link ?? null,
    browser_update_paths: [...transports],
    browser_connect_ms: state.connectMs ?? null,
    browser_checkpoint_fetch: summarizeFetches([...fetches.values()]),
    head_gossip_latency_ms: latencies.length
      ? { samples: latencies.length, median: latencies[Math.floor(latencies.length / 2)], max: latencies.at(-1) }
      : null,
    browser_calibration: state.calibration ?? null,
    page_frames_while_training: frames,
    wall_s: secondsSince(started),
    accuracy_by_round: byRound.map((h) => ({
      round: h.round,
      val_accuracy: h.metrics?.val_accuracy ?? null,
      val_loss: h.metrics?.val_loss ?? null,
      browser_contributors: (h.contributors ?? []).filter((c) => c.runtime === 'browser').length,
      native_contributors: (h.contributors ?? []).filter((c) => c.runtime === 'native-burn').length,
      python_contributors: (h.contributors ?? []).filter((c) => c.runtime === 'native-python').length,
      promoted_at: h.promoted_at ?? null,
    })),
  };
  const path = join(out, 'summary.json');
  await writeFile(path, JSON.stringify(summary, null, 2) + '\n');
  console.log(JSON.stringify(summary, null, 2));
  console.log(`wrote ${path}`);

  if (!reached) {
    console.error(`e2e: the network did not reach round ${rounds} in ${TIMEOUT_MS / 60_000} minutes`);
    exitCode = 1;
  } else if (firstAccepted === null) {
    console.error('e2e: no update of the browser tab was accepted');
    exitCode = 1;
  } else if ((heads_report.problems ?? []).length > 0) {
    console.error(`e2e: the promoted heads do not verify: ${heads_report.problems.join('; ')}`);
    exitCode = 1;
  }
} catch (e) {
  console.error(`e2e: ${e.stack ?? e}`);
  console.error(`--- browser console (tail) ---\n${browser?.consoleTail() ?? '(no browser)'}`);
  console.error(`--- bonfire up output (tail) ---\n${net.tail()}`);
  exitCode = 1;
} finally {
  if (browser) await writeFile(join(out, 'browser.log'), browser.consoleTail(100_000) + '\n').catch(() => {});
  await browser?.close();
  await net.stop();
}
process.exit(exitCode);
