import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Store, normalize, appendSeries, capSeries, upsert, viewAt, MAX_POINTS } from "../src/store.js";

const fixture = () => JSON.parse(readFileSync(new URL("./fixtures/model.json", import.meta.url), "utf8"));

test("store starts from the archive", () => {
  const m = fixture();
  const s = new Store(m);
  assert.equal(s.model.tick, m.tick);
  assert.equal(s.model.events.length, m.events.length);
  assert.equal(Object.keys(s.model.artifacts).length, Object.keys(m.artifacts).length);
  // a copy: the archive object is not mutated by ticks
  s.applyTick({ type: "tick", prev: m.tick, tick: m.tick + 1, series: { t: [1e6], cols: { best: [0.9] } } });
  assert.equal(m.series.t.length, 200);
});

test("normalize fills an empty model", () => {
  const n = normalize(null);
  assert.deepEqual(n.events, []);
  assert.deepEqual(n.series, { t: [], cols: {} });
  assert.equal(n.meta.live, false);
});

test("ticks chain by prev; snapshot replaced whole; events appended", () => {
  const s = new Store(fixture());
  const t0 = s.model.tick;
  let v0 = s.version;
  const snap = { state: "paused", t: 900, stats: { best_score: 0.9 }, stages: [] };
  const r = s.applyTick({ type: "tick", prev: t0, tick: t0 + 1, snapshot: snap, events: [{ seq: 999, t: 900, kind: "paused", level: "warn", ids: [], text: "x" }] });
  assert.equal(r, "applied");
  assert.equal(s.model.tick, t0 + 1);
  assert.equal(s.model.snapshot.state, "paused");
  assert.equal(s.model.snapshot.pool.version, undefined); // replaced whole, not merged
  assert.equal(s.model.events.at(-1).seq, 999);
  assert.ok(s.version > v0);
  // a repeat of the same tick is ignored
  assert.equal(s.applyTick({ type: "tick", prev: t0, tick: t0 + 1, events: [{ seq: 1000 }] }), "old");
  assert.equal(s.model.events.at(-1).seq, 999);
  // events already seen (by seq) are not appended twice
  s.applyTick({ type: "tick", prev: t0 + 1, tick: t0 + 2, events: [{ seq: 999, t: 900, kind: "paused" }, { seq: 1001, t: 901, kind: "resumed" }] });
  assert.deepEqual(s.model.events.slice(-2).map((e) => e.seq), [999, 1001]);
});

test("a gap sends one sync and waits for full", () => {
  const s = new Store(fixture());
  const sent = [];
  const t0 = s.model.tick;
  const r = s.handleMessage({ type: "tick", prev: t0 + 5, tick: t0 + 6, snapshot: { state: "x" } }, (m) => sent.push(m));
  assert.equal(r, "gap");
  assert.deepEqual(sent, [{ type: "sync" }]);
  assert.equal(s.model.tick, t0); // not applied
  // more gapped ticks while waiting do not flood the kernel with syncs
  s.handleMessage({ type: "tick", prev: t0 + 6, tick: t0 + 7 }, (m) => sent.push(m));
  assert.equal(sent.length, 1);
  // full replaces the model
  const full = fixture();
  full.tick = t0 + 7;
  full.snapshot.state = "finished";
  full.events = full.events.slice(0, 3);
  assert.equal(s.handleMessage({ type: "full", model: full }, (m) => sent.push(m)), "full");
  assert.equal(s.model.tick, t0 + 7);
  assert.equal(s.model.events.length, 3);
  assert.equal(s.model.snapshot.state, "finished");
  // then ticks chain again
  assert.equal(s.handleMessage({ type: "tick", prev: t0 + 7, tick: t0 + 8 }, (m) => sent.push(m)), "applied");
  // a later gap asks again
  s.handleMessage({ type: "tick", prev: t0 + 100, tick: t0 + 101 }, (m) => sent.push(m));
  assert.equal(sent.length, 2);
});

test("sync is retried when the full never comes", () => {
  const s = new Store(fixture());
  assert.equal(s.needSync(1000), true);
  assert.equal(s.needSync(2000), false);
  assert.equal(s.needSync(4500), true);
});

test("pool rows upsert by id, stories by key, artifacts merge", () => {
  const s = new Store(fixture());
  const t0 = s.model.tick;
  const n = s.model.pool.length, ns = s.model.stories.length;
  s.applyTick({
    type: "tick", prev: t0, tick: t0 + 1,
    pool: [{ id: "a11", state: "confirmed" }, { id: "a12", version: 10, t: 800, score: 0.9, scores: [], state: "admitted" }],
    stories: [{ key: 66, outcome: { status: "admitted", artifact_id: "a10", score: 0.7, is_best: false } }, { key: 90, t: 801, decision: "defer" }],
    artifacts: { a12: { id: "a12", parents: ["a11"], origin: "human", created_at: 799, components: { system: "x" } } },
  });
  assert.equal(s.model.pool.length, n + 1);
  const a11 = s.model.pool.find((r) => r.id === "a11");
  assert.equal(a11.state, "confirmed");
  assert.equal(a11.version, 9); // other fields kept
  assert.equal(s.model.pool.at(-1).id, "a12");
  assert.equal(s.model.stories.length, ns + 1);
  const st = s.model.stories.find((x) => x.key === 66);
  assert.equal(st.outcome.status, "admitted");
  assert.equal(st.stale_id, "a10"); // kept
  assert.equal(s.model.stories.findIndex((x) => x.key === 66), 2); // order kept
  assert.ok(s.model.artifacts.a12);
  assert.ok(s.model.artifacts.a0);
});

test("upsert returns the same array when nothing comes", () => {
  const rows = [{ id: 1 }];
  assert.equal(upsert(rows, [], "id"), rows);
  assert.notEqual(upsert(rows, [{ id: 1, x: 2 }], "id"), rows);
});

test("series append: new columns padded, missing ones null, repeated points skipped", () => {
  const sr = { t: [0, 5], cols: { a: [1, 2] } };
  appendSeries(sr, { t: [10, 15], cols: { b: [7, 8] } });
  assert.deepEqual(sr.t, [0, 5, 10, 15]);
  assert.deepEqual(sr.cols.a, [1, 2, null, null]);
  assert.deepEqual(sr.cols.b, [null, null, 7, 8]);
  appendSeries(sr, { t: [15, 20], cols: { a: [9, 3], b: [8, 9] } });
  assert.deepEqual(sr.t, [0, 5, 10, 15, 20]);
  assert.deepEqual(sr.cols.a, [1, 2, null, null, 3]);
});

test("series cap drops every other point of the older half", () => {
  const n = 10;
  const sr = { t: [...Array(n).keys()], cols: { c: [...Array(n).keys()].map((x) => x * 10) } };
  capSeries(sr, 8);
  assert.deepEqual(sr.t, [0, 2, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(sr.cols.c, [0, 20, 40, 50, 60, 70, 80, 90]);
  // via ticks: never above the cap, newest points kept exactly
  const s = new Store({ tick: 0, series: { t: [], cols: {} } });
  for (let i = 1; i <= 50; i++) {
    const t = [...Array(200).keys()].map((k) => (i - 1) * 200 + k);
    s.applyTick({ type: "tick", prev: i - 1, tick: i, series: { t, cols: { x: t.map((v) => v * 2) } } });
    assert.ok(s.model.series.t.length <= MAX_POINTS);
  }
  const ts = s.model.series.t;
  assert.equal(ts.at(-1), 9999);
  assert.equal(ts.at(-2), 9998);
  assert.equal(s.model.series.cols.x.length, ts.length);
  assert.deepEqual(s.model.series.cols.x.slice(-3), ts.slice(-3).map((v) => v * 2));
  for (let i = 1; i < ts.length; i++) assert.ok(ts[i] > ts[i - 1]);
});

test("archive trait change replaces only when newer", () => {
  const s = new Store(fixture());
  const t0 = s.model.tick;
  const older = fixture();
  older.tick = t0 - 10;
  older.snapshot.state = "old";
  assert.equal(s.applyArchive(older), false);
  assert.equal(s.model.snapshot.state, "running");
  const newer = fixture();
  newer.tick = t0 + 10;
  newer.snapshot.state = "finished";
  assert.equal(s.applyArchive(newer), true);
  assert.equal(s.model.snapshot.state, "finished");
  assert.equal(s.model.tick, t0 + 10);
});

test("replay: viewAt filters everything to t <= cursor", () => {
  const m = normalize(fixture());
  const v = viewAt(m, 470);
  assert.ok(v.events.length > 0 && v.events.every((e) => e.t <= 470));
  assert.ok(v.events.length < m.events.length);
  assert.ok(v.pool.every((r) => r.t <= 470));
  assert.deepEqual(v.pool.map((r) => r.id), ["a0", "a1", "a2", "a3", "a4"]);
  assert.deepEqual(v.stories.map((s) => s.key), [41]);
  // the repair a6 is admitted at 495: at 470 the story's outcome is not known yet
  assert.equal(v.stories[0].outcome.status, "pending");
  assert.equal(viewAt(m, 500).stories[0].outcome.status, "admitted");
  assert.ok(Object.values(v.artifacts).every((a) => a.created_at <= 470));
  assert.ok(!v.artifacts.a7);
  assert.ok(v.series.t.every((t) => t <= 470));
  assert.equal(v.series.t.length, v.series.cols.best.length);
  assert.equal(v.snapshot.t, 470);
  assert.equal(v.snapshot.state, "replay");
  assert.equal(v.snapshot.stats.best_score, 0.667);
  assert.equal(v.snapshot.pool.best_id, "a3");
  // speculation outcomes after the cursor show as still speculative
  assert.equal(viewAt(m, 670).pool.find((r) => r.id === "a9").state, "speculative");
  assert.equal(viewAt(m, 700).pool.find((r) => r.id === "a9").state, "rolled_back");
  // the original is untouched
  assert.equal(m.events.length, fixture().events.length);
  assert.equal(viewAt(m, -1).events.length, 0);
});
