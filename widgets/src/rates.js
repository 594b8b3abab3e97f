// Rates from the series' cumulative columns (`done:<stage>`, `proposals`, `accepted`),
// per minute of the run clock. One definition for the pipeline table and its chart.

/** Seconds of run clock a rate is measured over (the table's items/min and the chart's). */
export const RATE_WINDOW = 120;

/**
 * The rate per minute over the `window` seconds of run clock that end at point `i`:
 * (col[i] - the count at ts[i] - window) / window * 60, the earlier count read between
 * the two points around that time (linear). null when the series does not reach back a
 * whole window yet, or a count is missing.
 */
export function rateOver(ts, col, i, window = RATE_WINDOW) {
  if (!col || !ts || i < 0 || i >= ts.length || col[i] == null) return null;
  const t0 = ts[i] - window;
  if (!(ts[0] <= t0)) return null;
  let lo = 0, hi = i; // the last point at or before t0
  while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (ts[mid] <= t0) lo = mid; else hi = mid - 1; }
  const a = col[lo], b = col[lo + 1];
  let v0;
  if (ts[lo] === t0 || lo === i) v0 = a;
  else if (a != null && b != null) v0 = a + ((b - a) * (t0 - ts[lo])) / (ts[lo + 1] - ts[lo]);
  else v0 = a;
  if (v0 == null) return null;
  return ((col[i] - v0) / window) * 60;
}

/** rateOver at every point of the series (null where there is no whole window yet). */
export function rateSeries(ts, col, window = RATE_WINDOW) {
  const out = new Array(ts.length);
  for (let i = 0; i < ts.length; i++) out[i] = rateOver(ts, col, i, window);
  return out;
}
