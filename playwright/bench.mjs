#!/usr/bin/env node
// The browser's training window against the same window run natively, used by `cargo xtask
// bench`. A headless Chromium tab opens `?backend=auto`: with a WebGPU adapter (SwiftShader
// here) the worker measures WebGPU and its CPU path (Flex in wasm) on its first lease; then
// `bonfire bench-window` measures the same window natively (Flex), timed the same way (first step
// untimed). Prints the three numbers and the ratios against the native one (the baseline,
// measured in the same run); with --out FILE also writes them as JSON.
//
//   node playwright/bench.mjs [--out FILE]
//
// Needs BONFIRE_BIN, BONFIRE_DIST, BONFIRE_DATASET (see lib/network.mjs).

import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { ROUNDS_WAIT_FOR_TAB, pageState, requireEnv, waitFor, withTab } from './lib/network.mjs';

const { values: opts } = parseArgs({ options: { out: { type: 'string' } } });

const browser = await withTab({ extraArgs: ROUNDS_WAIT_FOR_TAB }, async ({ net, page, describe }) => {
  await page.goto(`${net.url}/?backend=auto`, { timeout: 60_000 });
  await page.locator('#contribute').click({ timeout: 60_000 });
  return waitFor('the tab to measure its backends', async () => (await pageState(page)).calibration, {
    timeoutMs: 400_000,
    intervalMs: 1_000,
    describe,
  });
});

const { stdout } = await promisify(execFile)(requireEnv('BONFIRE_BIN'), [
  'bench-window',
  '--dataset',
  requireEnv('BONFIRE_DATASET'),
]);
const native = JSON.parse(stdout);
const report = {
  window: `${native.steps} steps of ${native.batch_size} (first untimed)`,
  native_flex_examples_per_sec: Math.round(native.examples_per_sec),
  browser_cpu_examples_per_sec: Math.round(browser.cpu),
  browser_webgpu_examples_per_sec: Math.round(browser.webgpu),
  browser_cpu_vs_native: Number((browser.cpu / native.examples_per_sec).toPrecision(3)),
  browser_webgpu_vs_native: Number((browser.webgpu / native.examples_per_sec).toPrecision(3)),
  browser_chose: browser.chosen,
};
const row = (name, rate, ratio) => `${name.padEnd(34)} ${String(rate).padStart(8)} examples/s${ratio === undefined ? '  (baseline)' : `  ratio ${ratio}`}`;
console.log(row('native (Flex), bonfire bench-window', report.native_flex_examples_per_sec));
console.log(row('browser CPU (Flex in wasm)', report.browser_cpu_examples_per_sec, report.browser_cpu_vs_native));
console.log(row('browser WebGPU', report.browser_webgpu_examples_per_sec, report.browser_webgpu_vs_native));
console.log(`the tab chose ${report.browser_chose}`);
if (opts.out) await writeFile(opts.out, JSON.stringify(report, null, 2) + '\n');
