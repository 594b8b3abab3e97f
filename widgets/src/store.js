// The page's copy of the run model (see ../PROTOCOL.md): one store per widget
// model, fed by the `archive` trait, `tick` and `full` messages.

export const MAX_POINTS = 4000;
export const MAX_EVENTS = 20000;

/** An empty-but-valid model, with every collection present. */
export function normalize(m) {
  m = m && typeof m === "object" ? m : {};
  const meta = { stages: [], instance_ids: [], policies: [], knobs: [], stage_help: {}, live: false, replay: false, ...(m.meta || {}) };
  const snapshot = { state: "starting", t: 0, real_seconds: 0, stats: {}, stages: [], pool: {}, warnings: [], errors: [], ...(m.snapshot || {}) };
  const series = { t: [], cols: {}, ...(m.series || {}) };
  series.t = Array.isArray(series.t) ? series.t.slice() : [];
  const cols = {};
  for (const [k, v] of Object.entries(series.cols || {})) cols[k] = Array.isArray(v) ? v.slice() : [];
  series.cols = cols;
  return {
    v: m.v ?? 1,
    tick: typeof m.tick === "number" ? m.tick : -1,
    meta,
    snapshot,
    series,
    events: Array.isArray(m.events) ? m.events.slice() : [],
    artifacts: { ...(m.artifacts || {}) },
    pool: Array.isArray(m.pool) ? m.pool.slice() : [],
    stories: Array.isArray(m.stories) ? m.stories.slice() : [],
  };
}

/** Drop every other point of the older half while over `cap` (in place). */
export function capSeries(series, cap = MAX_POINTS) {
  while (series.t.length > cap) {
    const n = series.t.length;
    const half = Math.floor(n / 2);
    const keep = (arr) => {
      const out = [];
      for (let i = 0; i < half; i += 2) out.push(arr[i]);
      for (let i = half; i < arr.length; i++) out.push(arr[i]);
      return out;
    };
    series.t = keep(series.t);
    for (const k of Object.keys(series.cols)) series.cols[k] = keep(series.cols[k]);
  }
  return series;
}

/** Append a delta (same shape as series) to `series` (in place). */
export function appendSeries(series, delta, cap = MAX_POINTS) {
  if (!delta || !Array.isArray(delta.t) || delta.t.length === 0) return series;
  const n0 = series.t.length;
  const add = delta.t.length;
  const lastT = n0 ? series.t[n0 - 1] : -Infinity;
  // skip points we already have (a repeated tick)
  let from = 0;
  while (from < add && delta.t[from] <= lastT) from++;
  if (from >= add) return series;
  for (let i = from; i < add; i++) series.t.push(delta.t[i]);
  const dcols = delta.cols || {};
  for (const k of Object.keys(dcols)) {
    if (!series.cols[k]) series.cols[k] = new Array(n0).fill(null);
  }
  for (const k of Object.keys(series.cols)) {
    const src = dcols[k];
    const col = series.cols[k];
    while (col.length < n0) col.push(null);
    for (let i = from; i < add; i++) col.push(src && src[i] !== undefined ? src[i] : null);
  }
  return capSeries(series, cap);
}

/** Upsert rows by a key field, keeping order (new rows appended). Returns a new array. */
export function upsert(rows, items, key) {
  if (!Array.isArray(items) || items.length === 0) return rows;
  const out = rows.slice();
  const index = new Map();
  out.forEach((r, i) => index.set(r[key], i));
  for (const it of items) {
    const i = index.get(it[key]);
    if (i === undefined) {
      index.set(it[key], out.length);
      out.push(it);
    } else {
      out[i] = { ...out[i], ...it };
    }
  }
  return out;
}

export class Store {
  constructor(archive) {
    this.model = normalize(archive);
    this.version = 0;
    this.syncRequested = 0; // time (ms) a sync was asked for; 0: none pending
    this.listeners = new Set();
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  _changed() {
    this.version++;
    for (const fn of [...this.listeners]) fn(this);
  }

  /** Replace the whole model (a `full` message, or a newer archive). */
  replace(model) {
    this.model = normalize(model);
    this.syncRequested = 0;
    this._changed();
  }

  /** The `archive` trait changed: replace when it is newer than what we have. */
  applyArchive(archive) {
    if (!archive || typeof archive !== "object") return false;
    const t = typeof archive.tick === "number" ? archive.tick : -1;
    if (t > this.model.tick || (this.model.tick < 0 && this.model.events.length === 0 && !this.model.meta.name)) {
      this.replace(archive);
      return true;
    }
    return false;
  }

  /**
   * Fold one `tick` message in. Returns "applied", "old" (already folded) or
   * "gap" (the caller asks for a `full`: see needSync()).
   */
  applyTick(msg) {
    const m = this.model;
    if (typeof msg.tick !== "number") return "old";
    if (msg.tick <= m.tick) return "old";
    if (msg.prev !== m.tick) return "gap";
    if (msg.snapshot) m.snapshot = { ...normalize({ snapshot: msg.snapshot }).snapshot };
    if (msg.series) appendSeries(m.series, msg.series);
    if (Array.isArray(msg.events) && msg.events.length) {
      const last = m.events.length ? m.events[m.events.length - 1].seq : -Infinity;
      const fresh = msg.events.filter((e) => !(typeof e.seq === "number" && e.seq <= last));
      if (fresh.length) {
        let ev = m.events.concat(fresh);
        if (ev.length > MAX_EVENTS) ev = ev.slice(ev.length - MAX_EVENTS);
        m.events = ev;
      }
    }
    if (msg.artifacts && typeof msg.artifacts === "object") m.artifacts = { ...m.artifacts, ...msg.artifacts };
    if (msg.pool) m.pool = upsert(m.pool, msg.pool, "id");
    if (msg.stories) m.stories = upsert(m.stories, msg.stories, "key");
    if (msg.meta) m.meta = { ...m.meta, ...msg.meta };
    m.tick = msg.tick;
    this._changed();
    return "applied";
  }

  /** True when a sync should be sent now (none pending, or the last one is older than `retryMs`). */
  needSync(now = Date.now(), retryMs = 3000) {
    if (this.syncRequested && now - this.syncRequested < retryMs) return false;
    this.syncRequested = now;
    return true;
  }

  /** Dispatch one custom message from Python. `send` is model.send. */
  handleMessage(msg, send) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "tick") {
      const r = this.applyTick(msg);
      if (r === "gap" && this.needSync()) send({ type: "sync" });
      return r;
    }
    if (msg.type === "full" && msg.model) {
      this.replace(msg.model);
      return "full";
    }
  }
}

// ---------------------------------------------------------------- replay

const ENDED = new Set(["finished", "failed", "cancelled"]);
export const isEnded = (state) => ENDED.has(state);

function lastAtOrBefore(ts, t) {
  // index of the last point with ts[i] <= t (binary search), -1 when none
  let lo = 0, hi = ts.length - 1, ans = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (ts[mid] <= t) { ans = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return ans;
}

/** Per-minute rate of a cumulative column over the last `window` seconds up to index i. */
export function rateAt(ts, col, i, window = 60) {
  if (!col || i < 1) return 0;
  let j = i;
  while (j > 0 && ts[i] - ts[j - 1] <= window) j--;
  if (j === i) j = i - 1;
  const dt = ts[i] - ts[j];
  const dv = (col[i] ?? 0) - (col[j] ?? 0);
  return dt > 0 ? (dv / dt) * 60 : 0;
}

/** The model as it was at run-clock time `t` (replay). Does not mutate `m`. */
export function viewAt(m, t) {
  const ts = m.series.t;
  const n = lastAtOrBefore(ts, t) + 1;
  const cols = {};
  for (const [k, v] of Object.entries(m.series.cols)) cols[k] = v.slice(0, n);
  const series = { t: ts.slice(0, n), cols };
  const events = m.events.filter((e) => e.t <= t);
  const laterSpec = new Map(); // id -> state, for speculation outcomes after t
  for (const e of m.events) {
    if (e.t > t && (e.kind === "speculation_confirmed" || e.kind === "speculation_rolled_back")) {
      for (const id of e.ids || []) laterSpec.set(id, "speculative");
    }
  }
  const pool = m.pool.filter((r) => r.t <= t).map((r) => (laterSpec.has(r.id) ? { ...r, state: "speculative" } : r));
  const poolT = new Map(m.pool.map((r) => [r.id, r.t]));
  const stories = m.stories
    .filter((s) => s.t <= t)
    .map((s) => {
      const o = s.outcome || {};
      const at = poolT.get(o.artifact_id);
      if (o.status && o.status !== "pending" && at !== undefined && at > t) return { ...s, outcome: { ...o, status: "pending", score: null, is_best: false } };
      return s;
    });
  const artifacts = {};
  for (const [id, a] of Object.entries(m.artifacts)) if ((a.created_at ?? 0) <= t) artifacts[id] = a;

  const i = n - 1;
  const c = (k) => (i >= 0 && cols[k] ? cols[k][i] : null);
  const s0 = m.snapshot;
  let best = null;
  for (const r of pool) if (r.state !== "rolled_back" && (best === null || r.score > best.score)) best = r;
  const stages = (m.meta.stages.length ? m.meta.stages : s0.stages.map((s) => s.name)).map((name) => {
    const live = s0.stages.find((s) => s.name === name) || {};
    return {
      ...live, name, items: [],
      queued: c("queued:" + name) ?? 0, busy: c("busy:" + name) ?? 0, workers: c("workers:" + name) ?? live.workers ?? 0,
      processed: c("done:" + name) ?? 0, paused: false, requests: null,
    };
  });
  const decisions = {};
  for (const s of stories) decisions[s.decision] = (decisions[s.decision] || 0) + 1;
  const stats = {
    ...s0.stats,
    proposals: c("proposals") ?? 0, accepted: c("accepted") ?? pool.length,
    best_score: c("best") ?? (best ? best.score : null),
    proposals_per_min: rateAt(ts, cols.proposals, i), accepted_per_min: rateAt(ts, cols.accepted, i),
    decisions, stale_seen: stories.length, minutes: t / 60,
    tokens: null, controller_actions: events.filter((e) => e.kind === "controller_action").length,
  };
  const snapshot = {
    ...s0, state: "replay", t, real_seconds: null, lagging: false, warnings: [], errors: events.filter((e) => e.level === "error").map((e) => e.text),
    stats, stages, requests_in_flight: c("requests"), depth: c("depth") ?? s0.depth,
    pool: { version: pool.reduce((v, r) => Math.max(v, r.version || 0), 0), size: pool.length, best_id: best ? best.id : "", best_score: best ? best.score : null, front_ids: [] },
  };
  return { ...m, snapshot, series, events, pool, stories, artifacts };
}
