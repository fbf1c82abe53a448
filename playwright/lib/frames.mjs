// The page's frame loop, measured: requestAnimationFrame timestamps collected in the page, so a
// test can see whether training (in the Web Worker) stalls the page's rendering.

/** Starts recording frame times in `page` (idempotent). */
export async function startFrameProbe(page) {
  await page.evaluate(() => {
    if (window.__bonfireFrames) return;
    const times = [];
    window.__bonfireFrames = times;
    const tick = (t) => {
      times.push(t);
      if (times.length > 100_000) times.splice(0, 50_000);
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
}

/** Frame gaps since the probe started: count, median, p95 and max (ms), and the span covered. */
export async function frameStats(page) {
  return page.evaluate(() => {
    const t = window.__bonfireFrames ?? [];
    const gaps = [];
    for (let i = 1; i < t.length; i++) gaps.push(t[i] - t[i - 1]);
    gaps.sort((a, b) => a - b);
    const at = (q) => (gaps.length ? gaps[Math.min(gaps.length - 1, Math.floor(q * gaps.length))] : null);
    const round = (x) => (x === null ? null : Math.round(x * 10) / 10);
    return {
      frames: t.length,
      span_ms: t.length > 1 ? Math.round(t[t.length - 1] - t[0]) : 0,
      gap_median_ms: round(at(0.5)),
      gap_p95_ms: round(at(0.95)),
      gap_max_ms: round(gaps.length ? gaps[gaps.length - 1] : null),
    };
  });
}
