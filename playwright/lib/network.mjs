// Helpers for bonfire's browser tests: start a local network (`bonfire up`) on a free port, launch
// the system Chromium through playwright-core, poll the edge's JSON API.
//
// Environment (set by `cargo xtask test` / `cargo xtask e2e`):
//   BONFIRE_BIN       the built `bonfire` binary
//   BONFIRE_DIST      the web app built by Trunk (dist/)
//   BONFIRE_DATASET   a prepared dataset directory (`bonfire dataset prepare --out …`)
//   BONFIRE_CHROMIUM  the browser (default /usr/bin/chromium)
//   BONFIRE_LOG=1     echo the network's output live (it is always kept for failure reports)
//   BONFIRE_KEEP=1    keep the temporary data and profile directories

import { execFile, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

/** The experiment `bonfire up` runs. */
export const EXPERIMENT = 'mnist-mlp';

const TAIL_LINES = 300;

/** A required environment variable, or a clear error. */
export function requireEnv(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set; run the browser tests through \`cargo xtask test\``);
  }
  return value;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Polls `probe` (sync or async) until it returns a truthy value, and returns that value. Errors
 * thrown by `probe` count as "not yet" (unless they carry `fatal: true`); the last one is reported
 * on timeout. `describe` (optional)
 * adds the current state to the timeout message.
 */
export async function waitFor(what, probe, { timeoutMs, intervalMs = 500, describe } = {}) {
  if (!timeoutMs) throw new Error('waitFor needs an explicit timeoutMs');
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
      lastError = undefined;
    } catch (e) {
      if (e?.fatal) throw e;
      lastError = e;
    }
    if (Date.now() >= deadline) {
      let message = `timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`;
      if (describe) {
        try {
          message += `\n  state: ${await describe()}`;
        } catch (e) {
          message += `\n  (state unavailable: ${e.message})`;
        }
      }
      if (lastError) message += `\n  last error: ${lastError.message}`;
      throw new Error(message);
    }
    await sleep(intervalMs);
  }
}

/** GETs JSON; throws with the status and body on a non-2xx answer. */
export async function getJson(url, { timeoutMs = 10_000 } = {}) {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${text.slice(0, 500)}`);
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`GET ${url}: not JSON: ${text.slice(0, 500)}`);
  }
}

// Process groups of every network still running, killed if this process exits early.
const running = new Set();
function killAll() {
  for (const pid of running) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  running.clear();
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });
}

/**
 * Starts `bonfire up` on a free port with a fresh data directory (or `dataDir`, to restart a
 * network: the caller then owns and removes it) and waits (≤ `readyTimeoutMs`) until
 * `/api/network` answers with the experiment. Always `await net.stop()` at the end.
 */
export async function startNetwork({
  trainers = 2,
  port = 0,
  extraArgs = [],
  readyTimeoutMs = 120_000,
  logFile,
  dataDir: givenDataDir,
} = {}) {
  const bin = requireEnv('BONFIRE_BIN');
  const dataset = requireEnv('BONFIRE_DATASET');
  const dist = requireEnv('BONFIRE_DIST');
  const dataDir = givenDataDir ?? (await mkdtemp(join(tmpdir(), 'bonfire-node-')));
  if (!port) port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const args = [
    'up',
    '--data-dir', dataDir,
    '--dataset', dataset,
    '--http', `127.0.0.1:${port}`,
    '--app-dir', dist,
    '--trainers', String(trainers),
    ...extraArgs,
  ];
  console.log(`$ ${bin} ${args.join(' ')}`);

  // Its own process group, so that stop() also ends anything it spawned.
  const child = spawn(bin, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' },
  });
  running.add(child.pid);

  const lines = [];
  const log = logFile ? createWriteStream(logFile, { flags: 'a' }) : undefined;
  const live = process.env.BONFIRE_LOG === '1';
  for (const [name, stream] of [['out', child.stdout], ['err', child.stderr]]) {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      log?.write(chunk);
      const parts = (partial + chunk).split('\n');
      partial = parts.pop();
      for (const line of parts) {
        lines.push(line);
        if (live) console.log(`[bonfire ${name}] ${line}`);
      }
      if (lines.length > TAIL_LINES) lines.splice(0, lines.length - TAIL_LINES);
    });
  }
  let exit;
  const exited = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      running.delete(child.pid);
      resolve(exit);
    }),
  );
  const tail = (n = 80) => lines.slice(-n).join('\n');

  let stopped = false;
  /** Stops the network (its whole process group); `keepData` leaves the data directory. */
  const stop = async ({ keepData = false } = {}) => {
    if (stopped) return;
    stopped = true;
    if (!exit) {
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }, 10_000);
      await exited;
      clearTimeout(timer);
    }
    // Anything left in the group (grandchildren) goes too.
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // nothing left
    }
    running.delete(child.pid);
    log?.end();
    if (!keepData && !givenDataDir && process.env.BONFIRE_KEEP !== '1') {
      await rm(dataDir, { recursive: true, force: true });
    }
  };

  /**
   * Stops the network, then re-checks every head the seed promoted from its data directory
   * (`bonfire heads verify`: certificates, parent chain, checkpoint hashes). Returns the report.
   */
  const verifyHeads = async () => {
    await stop({ keepData: true });
    const report = await new Promise((resolve, reject) => {
      execFile(bin, ['heads', 'verify', '--data-dir', join(dataDir, 'seed')], (error, stdout, stderr) => {
        try {
          resolve(JSON.parse(stdout));
        } catch {
          reject(new Error(`bonfire heads verify failed: ${error?.message ?? ''}\n${stderr}`));
        }
      });
    });
    if (process.env.BONFIRE_KEEP !== '1') await rm(dataDir, { recursive: true, force: true });
    return report;
  };

  const started = Date.now();
  try {
    await waitFor(
      `${url}/api/network`,
      async () => {
        if (exit) {
          throw Object.assign(new Error(`bonfire up exited early (${JSON.stringify(exit)})`), {
            fatal: true,
          });
        }
        const info = await getJson(`${url}/api/network`, { timeoutMs: 2_000 });
        return Array.isArray(info.experiments) && info.experiments.includes(EXPERIMENT) ? info : null;
      },
      { timeoutMs: readyTimeoutMs, intervalMs: 250 },
    );
  } catch (e) {
    await stop();
    throw new Error(`${e.message}\n--- bonfire up output (tail) ---\n${tail()}`);
  }
  console.log(`network ready at ${url} after ${((Date.now() - started) / 1000).toFixed(1)} s`);

  return {
    url,
    port,
    dataDir,
    child,
    tail,
    get exit() {
      return exit;
    },
    stop,
    verifyHeads,
    dashboard: () => getDashboard(url),
  };
}

/** The experiment's dashboard snapshot (heads newest first). */
export function getDashboard(baseUrl, experiment = EXPERIMENT) {
  return getJson(`${baseUrl}/api/experiments/${experiment}/dashboard`);
}

/** The first (newest) head that lists `peerId` as a contributor, with that contribution. */
export function findContribution(snapshot, peerId) {
  for (const head of snapshot.heads ?? []) {
    const contributor = (head.contributors ?? []).find((c) => c.peer_id === peerId);
    if (contributor) return { head, contributor };
  }
  return null;
}

/**
 * Launches the system Chromium (headless, WebGPU allowed: SwiftShader when there is no GPU) with
 * a fresh profile. Console output and page errors are kept for failure reports.
 */
export async function launchBrowser() {
  const profile = await mkdtemp(join(tmpdir(), 'bonfire-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.BONFIRE_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--enable-unsafe-webgpu',
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  const lines = [];
  const keep = (line) => {
    lines.push(line);
    if (lines.length > TAIL_LINES) lines.splice(0, lines.length - TAIL_LINES);
  };
  const watch = (page) => {
    page.on('console', (m) => keep(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => keep(`[pageerror] ${e.message}`));
    page.on('crash', () => keep('[crash] the page crashed'));
    page.on('worker', (w) => w.on('console', (m) => keep(`[worker ${m.type()}] ${m.text()}`)));
  };
  context.on('page', watch);
  for (const page of context.pages()) watch(page);

  let closed = false;
  return {
    context,
    /** A page: the persistent context's first blank one, then new ones. */
    async newPage() {
      const blank = context.pages().find((p) => p.url() === 'about:blank' && !p.__bonfireUsed);
      const page = blank ?? (await context.newPage());
      page.__bonfireUsed = true;
      return page;
    },
    consoleTail: (n = 80) => lines.slice(-n).join('\n'),
    async close() {
      if (closed) return;
      closed = true;
      await context.close().catch(() => {});
      if (process.env.BONFIRE_KEEP !== '1') {
        await rm(profile, { recursive: true, force: true });
      }
    },
  };
}

/** Reads the contribute page's state (for progress lines and failure reports). */
export async function pageState(page) {
  return page.evaluate(() => {
    const q = (sel) => document.querySelector(sel);
    const text = (sel) => q(sel)?.textContent?.trim() ?? null;
    return {
      status: text('#status'),
      round: text('#round'),
      backend: q('#backend')?.getAttribute('data-backend') ?? null,
      accepted: Number(q('#accepted')?.getAttribute('data-count') ?? NaN),
      rejected: Number(q('#rejected')?.getAttribute('data-count') ?? NaN),
      lastRejection: text('#last-rejection'),
      throughput: text('#throughput'),
      peerId: text('#peer-id'),
      link: q('#link')?.getAttribute('data-path') ?? null,
      linkDetail: text('#link-detail'),
      linkPeers: [...document.querySelectorAll('#link-peers li.link-peer')].map((li) => ({
        peerId: li.getAttribute('data-peer-id'),
        transport: li.getAttribute('data-transport'),
        role: li.getAttribute('data-role'),
      })),
      connectMs: text('#connect-ms'),
      checkpointFetch: q('#checkpoint-fetch')?.getAttribute('data-via')
        ? {
            bytes: Number(q('#checkpoint-fetch').getAttribute('data-bytes')),
            ms: Number(q('#checkpoint-fetch').getAttribute('data-ms')),
            via: q('#checkpoint-fetch').getAttribute('data-via'),
          }
        : null,
      lastVia: text('#last-via') === '—' ? null : text('#last-via'),
      pending: q('#pending')?.getAttribute('data-update-id') || null,
      history: Number(q('#history')?.getAttribute('data-count') ?? NaN),
      headHeard: {
        round: q('#head-heard')?.getAttribute('data-round') || null,
        via: q('#head-heard')?.getAttribute('data-via') || null,
        latencyMs: Number(q('#head-heard')?.getAttribute('data-latency-ms') || NaN),
      },
      calibration: q('#calibration')
        ? {
            cpu: Number(q('#calibration').getAttribute('data-cpu')),
            webgpu: Number(q('#calibration').getAttribute('data-webgpu')),
            chosen: q('#calibration').getAttribute('data-chosen'),
          }
        : null,
    };
  });
}

/** `bonfire up` flags that make every round wait for the tab (three updates: two native trainers
 * and the tab), with a deadline and lease lifetime long enough for a slow first window. */
export const ROUNDS_WAIT_FOR_TAB = ['--min-updates', '3', '--round-deadline-secs', '400', '--lease-ttl-secs', '500'];

/** Prints the browser console's and the network's output tails (for a failing test). */
export function reportFailure(browser, net) {
  console.error(`--- browser console (tail) ---\n${browser?.consoleTail() ?? '(no browser)'}`);
  console.error(`--- bonfire up output (tail) ---\n${net?.tail() ?? '(no network)'}`);
}

/**
 * Starts a network (`startNetwork(networkOptions)`) and a browser with one page, runs
 * `body({ net, browser, page, describe })` (`describe` is the page state as JSON, for timeout
 * messages), reports both logs if it fails, and always cleans up.
 */
export async function withTab(networkOptions, body) {
  const net = await startNetwork(networkOptions);
  let browser;
  try {
    browser = await launchBrowser();
    const page = await browser.newPage();
    const describe = async () => JSON.stringify(await pageState(page));
    return await body({ net, browser, page, describe });
  } catch (e) {
    reportFailure(browser, net);
    throw e;
  } finally {
    await browser?.close();
    await net.stop();
  }
}
