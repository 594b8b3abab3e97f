// The header's state and finish reason, and the pipeline's items/min (one definition with its chart).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { setupDom, tick } from "./dom.js";

setupDom();
const { Store } = await import("../src/store.js");
const { CommandBus } = await import("../src/commands.js");
const { mount } = await import("../src/app.js");
const { rateOver, rateSeries, RATE_WINDOW } = await import("../src/rates.js");

const fixture = () => JSON.parse(readFileSync(new URL("./fixtures/model.json", import.meta.url), "utf8"));

function setup(model = fixture()) {
  const el = document.createElement("div");
  document.body.appendChild(el);
  const view = mount(el, new Store(model), new CommandBus(() => {}), { minGapMs: 0 });
  return { el, view, $: (s) => el.querySelector(s) };
}

test("state badge: the state word only; the finish reason in full on the line below the figures", () => {
  const m = fixture();
  const reason = "max_metric_calls=2000 reached after the last validation of the final generation (the budget was spread over 12 generations)";
  m.snapshot.state = "finished";
  m.snapshot.finish_reason = reason;
  m.meta.backend = "simulated vllm (task)";
  const { $, view } = setup(m);
  assert.equal($(".fe-fig-state .fe-state").textContent, "finished");
  assert.ok($(".fe-state").classList.contains("fe-state-finished"));
  const fr = $(".fe-finish-reason");
  assert.equal(fr.textContent, reason, "full text");
  assert.ok(!$(".fe-figures").contains(fr), "below the figures, not in them");
  assert.ok(fr.closest(".fe-clockline"));
  assert.equal($(".fe-fig-backend").getAttribute("title"), "simulated vllm (task)");
  assert.equal($(".fe-fig-backend .fe-fig-value").textContent, "simulated vllm (task)");
  assert.match($(".fe-figures").textContent, /finished/);
  view.unmount();
});

test("no finish reason while running: no empty element", () => {
  const { $, view } = setup();
  assert.equal($(".fe-state").textContent, "running");
  assert.equal($(".fe-finish-reason"), null);
  view.unmount();
});

test("rateOver: items per minute over the last 2 minutes of the run clock; null before", () => {
  assert.equal(RATE_WINDOW, 120);
  const ts = [0, 30, 60, 90, 120, 150, 180];
  const done = [0, 1, 2, 3, 4, 10, 16]; // 1 per 30 s, then 6 per 30 s
  assert.equal(rateOver(ts, done, 3), null, "90 s: no 2-minute window yet");
  assert.equal(rateOver(ts, done, 4), 2, "0..120 s: 4 items in 2 min");
  assert.equal(rateOver(ts, done, 6), (16 - 2) / 2, "60..180 s");
  // uneven points: the count at t - 120 is read between its neighbours
  const ts2 = [0, 100, 140, 230];
  const c2 = [0, 10, 14, 23];
  assert.equal(rateOver(ts2, c2, 3), (23 - 11) / 2, "110..230 s: 11 items at 110 s (between 10 @100 and 14 @140)");
  assert.equal(rateOver(ts2, c2, 3, 60), 6, "a 60 s window: 170..230 s, 17 -> 23 items");
  assert.equal(rateOver(ts, null, 4), null);
  assert.equal(rateOver([], [], 0), null);
  assert.deepEqual(rateSeries(ts, done).map((x) => x ?? "–"), ["–", "–", "–", "–", 2, 4.5, 7]);
});

test("pipeline items/min: the chart's last point, '–' before there is a 2-minute window", async () => {
  const m = fixture();
  const { $, view } = setup(m);
  const ts = m.series.t, last = ts.length - 1;
  for (const st of m.snapshot.stages) {
    const col = m.series.cols["done:" + st.name];
    const want = rateOver(ts, col, last);
    assert.ok(want != null);
    assert.equal($(`.fe-stage-${st.name} .fe-rate`).textContent, want.toFixed(1), st.name);
    assert.equal(rateSeries(ts, col).at(-1), want, "same as the chart's last point");
    // independently: the count at the end minus the count 2 minutes before, halved
    const k = ts.findIndex((t) => t >= ts[last] - 120);
    const v0 = ts[k] === ts[last] - 120 ? col[k] : col[k - 1] + ((col[k] - col[k - 1]) * (ts[last] - 120 - ts[k - 1])) / (ts[k] - ts[k - 1]);
    assert.ok(Math.abs((col[last] - v0) / 2 - want) < 1e-9);
  }
  view.unmount();
  // a young run: 100 s of series
  const y = fixture();
  const n = y.series.t.findIndex((t) => t > 100);
  y.series.t = y.series.t.slice(0, n);
  for (const k of Object.keys(y.series.cols)) y.series.cols[k] = y.series.cols[k].slice(0, n);
  const b = setup(y);
  await tick();
  for (const st of y.snapshot.stages) assert.equal(b.$(`.fe-stage-${st.name} .fe-rate`).textContent, "–", st.name);
  b.view.unmount();
});
