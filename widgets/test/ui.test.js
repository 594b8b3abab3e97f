import { test, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { setupDom, tick, click, typeInto, change } from "./dom.js";

setupDom();
const { h, render } = await import("preact");
const { Store } = await import("../src/store.js");
const { CommandBus } = await import("../src/commands.js");
const { mount } = await import("../src/app.js");
const { Diff } = await import("../src/widgets.js");
const { diffLines } = await import("../src/diff.js");
const widget = (await import("../src/index.js")).default;
const { renderStandalone } = await import("../src/index.js");

const fixture = () => JSON.parse(readFileSync(new URL("./fixtures/model.json", import.meta.url), "utf8"));
const HOSTILE = ["<img src=x onerror=alert(1)>", "<script>alert('x')</script>"];

function setup(model = fixture(), opts = {}) {
  const el = document.createElement("div");
  document.body.appendChild(el);
  const sent = [];
  const store = new Store(model);
  const bus = new CommandBus((m) => sent.push(m));
  const view = mount(el, store, bus, { minGapMs: 0, ...opts });
  const $ = (sel) => el.querySelector(sel);
  const $$ = (sel) => [...el.querySelectorAll(sel)];
  const tab = async (name) => { click($(".fe-tab-" + name)); await tick(); };
  return { el, store, bus, sent, view, $, $$, tab };
}

const noHostileElements = (el) => {
  assert.equal(el.querySelectorAll("img").length, 0, "an <img> was created from model text");
  assert.equal(el.querySelectorAll("script").length, 0, "a <script> was created from model text");
};

test("diffLines: equal, added, removed, word marks", () => {
  const rows = diffLines("a\nb\nc", "a\nB x\nc\nd");
  assert.deepEqual(rows.map((r) => r.op + r.text), ["=a", "-b", "+B x", "=c", "+d"]);
  const w = diffLines("Solve the problem step by step.", "Solve the problem step by step, numbering each step.");
  assert.equal(w[0].op, "-");
  assert.ok(w[1].parts.some((p) => p.changed && p.text.includes("numbering")));
  assert.ok(w[1].parts.some((p) => !p.changed && p.text.startsWith("Solve")));
  assert.deepEqual(diffLines("", ""), []);
  assert.deepEqual(diffLines("x", "x").map((r) => r.op), ["="]);
});

test("Diff renders lines with classes and hostile text literally", () => {
  const el = document.createElement("div");
  render(h(Diff, { a: "keep\n" + HOSTILE[0], b: "keep\n" + HOSTILE[1] + "\nnew", title: "system" }), el);
  const adds = [...el.querySelectorAll(".fe-diff-add")].map((e) => e.textContent);
  const dels = [...el.querySelectorAll(".fe-diff-del")].map((e) => e.textContent);
  assert.ok(dels.some((t) => t.includes(HOSTILE[0])));
  assert.ok(adds.some((t) => t.includes(HOSTILE[1])));
  assert.ok(adds.some((t) => t.includes("new")));
  assert.equal(el.querySelectorAll(".fe-diff-ctx").length, 1);
  noHostileElements(el);
});

test("header shows the figures, warnings and errors", () => {
  const { $, view } = setup();
  const fig = $(".fe-figures");
  assert.ok(fig);
  assert.match(fig.textContent, /running/);
  assert.match(fig.textContent, /13\.3/);
  assert.match($(".fe-header").textContent, /13\.3 simulated min/);
  assert.match(fig.textContent, /0\.833/);
  assert.match(fig.textContent, /358k/);
  assert.match(fig.textContent, /simulated \(vllm profile\)/);
  assert.match(fig.textContent, /reflective/);
  assert.match($(".fe-warning").textContent, /starves 'validate'/);
  assert.ok($(".fe-stop-drain") && !$(".fe-stop-drain").disabled);
  assert.ok($(".fe-stop-cancel"));
  assert.equal($(".fe-lagging"), null);
  view.unmount();
});

test("header warns when the real clock fell behind the simulated one", () => {
  const model = fixture();
  model.snapshot.lagging = true;
  model.snapshot.clock_behind = {
    time_scale: 100000, sim_lag_p95: 237, real_lag_p95: 0.00237, loop_cpu: 0.98,
    message: "WARNING: the real clock fell behind the simulated one (wake-ups late by 2.37 ms at p95); the figures are degraded. Lower time_scale, or run on the virtual clock. " + HOSTILE[0],
  };
  const { $, el, view } = setup(model);
  const banner = $(".fe-clock-behind");
  assert.ok(banner, "no clock-behind banner in the header");
  assert.ok($(".fe-header").contains(banner));
  assert.match(banner.textContent, /fell behind the simulated one/);
  assert.match(banner.textContent, /figures are degraded/);
  assert.match(banner.textContent, /virtual clock/);
  assert.equal($(".fe-lagging"), null, "one banner for one fact");
  noHostileElements(el);
  view.unmount();
  const quiet = setup();
  assert.equal(quiet.$(".fe-clock-behind"), null);
  quiet.view.unmount();
});

test("pipeline rows: counts, pause toggle text and class", () => {
  const { $, $$, view } = setup();
  const rows = $$(".fe-stage");
  assert.equal(rows.length, 5);
  const gate = $(".fe-stage-gate");
  assert.equal(gate.querySelector(".fe-pause-toggle").textContent, "resume");
  assert.ok(gate.querySelector(".fe-pause-toggle").classList.contains("mod-warning"));
  const ro = $(".fe-stage-rollout");
  assert.equal(ro.querySelector(".fe-pause-toggle").textContent, "pause");
  assert.ok(!ro.querySelector(".fe-pause-toggle").classList.contains("mod-warning"));
  assert.equal(ro.querySelector(".fe-queued").textContent, "2");
  assert.equal(ro.querySelector(".fe-busy").textContent, "3/4");
  assert.match(ro.querySelector(".fe-processed-count").textContent, /^\d+$/);
  assert.ok(ro.querySelector(".fe-release"), "held stage has a release button");
  assert.equal($(".fe-stage-select .fe-release"), null);
  view.unmount();
});

test("command/ack cycle: pending until the ack with that id, then the message", async () => {
  const { $, sent, bus, view } = setup();
  click($(".fe-stage-reflect .fe-pause-toggle"));
  await tick();
  assert.deepEqual(sent.at(-1), { type: "cmd", id: sent.at(-1).id, cmd: "pause", args: { stage: "reflect" } });
  const id = sent.at(-1).id;
  const status = () => $(".fe-stage-reflect .fe-stage-status").textContent;
  assert.match(status(), /sending\.\.\./);
  assert.ok($(".fe-stage-reflect .fe-pause-toggle").disabled);
  // an ack for another id changes nothing
  assert.equal(bus.ack({ type: "ack", id: id + 100, ok: true, message: "nope" }), false);
  await tick();
  assert.match(status(), /sending\.\.\./);
  bus.ack({ type: "ack", id, ok: true, message: "reflect paused", warning: "pausing 'reflect' starves 'gate', 'validate'" });
  await tick();
  assert.match(status(), /reflect paused/);
  assert.ok($(".fe-stage-reflect .fe-ack-ok"));
  assert.match($(".fe-stage-reflect .fe-ack-warning").textContent, /starves/);
  view.unmount();
});

test("worker count typed is kept (sending...) until acked, error shown red", async () => {
  const { $, sent, bus, store, view } = setup();
  const input = $(".fe-stage-reflect .fe-workers-input");
  typeInto(input, "6");
  await tick();
  click($(".fe-stage-reflect .fe-workers-set"));
  await tick();
  const cmd = sent.at(-1);
  assert.equal(cmd.cmd, "workers");
  assert.deepEqual(cmd.args, { stage: "reflect", n: 6 });
  // the model moves on (tick) while the kernel is busy: the typed value stays
  store.applyTick({ type: "tick", prev: store.model.tick, tick: store.model.tick + 1, snapshot: { ...store.model.snapshot } });
  view.update();
  await tick();
  assert.equal($(".fe-stage-reflect .fe-workers-input").value, "6");
  assert.match($(".fe-stage-reflect .fe-stage-status").textContent, /sending/);
  bus.ack({ type: "ack", id: cmd.id, ok: false, message: "workers must be <= 4" });
  await tick();
  await tick();
  assert.ok($(".fe-stage-reflect .fe-ack-error"));
  assert.match($(".fe-stage-reflect .fe-stage-status").textContent, /workers must be <= 4/);
  assert.equal($(".fe-stage-reflect .fe-workers-input").value, "3"); // back to the model's value
  view.unmount();
});

test("stop buttons send stop with mode; disabled once ended; hidden when not live", async () => {
  const { $, sent, view } = setup();
  click($(".fe-stop-drain"));
  await tick();
  assert.deepEqual(sent.at(-1).args, { mode: "drain" });
  view.unmount();
  const m = fixture();
  m.snapshot.state = "finished";
  const s2 = setup(m);
  assert.ok(s2.$(".fe-stop-drain").disabled && s2.$(".fe-stop-cancel").disabled);
  assert.ok(s2.$(".fe-stage-rollout .fe-pause-toggle").disabled);
  s2.view.unmount();
  const m3 = fixture();
  m3.meta.live = false;
  const s3 = setup(m3);
  assert.equal(s3.$(".fe-stop-drain"), null);
  assert.ok(s3.$(".fe-stage-rollout .fe-pause-toggle").disabled);
  s3.view.unmount();
});

test("hostile text in every view shows literally, no element created", async () => {
  const m = fixture();
  m.meta.name = HOSTILE[1];
  m.snapshot.warnings.push(HOSTILE[0]);
  m.snapshot.errors.push(HOSTILE[1]);
  m.events.push({ seq: 9999, t: 790, kind: "note", level: "warn", ids: ["a8"], text: HOSTILE[0] + HOSTILE[1] });
  m.stories[0].reason = HOSTILE[0];
  m.stories[0].answer = HOSTILE[1];
  m.artifacts.a8.feedback = [{ input: HOSTILE[0], output: HOSTILE[1], score: 0, feedback: HOSTILE[0] }];
  m.meta.knobs[0].help = HOSTILE[0];
  const { el, $, tab, view } = setup(m);
  assert.ok($(".fe-warning").textContent.includes(HOSTILE[0]));
  assert.ok($(".fe-header").textContent.includes(HOSTILE[1]));
  noHostileElements(el);
  await tab("lineage");
  click($('.fe-node[data-id="a8"]'));
  await tick();
  const d = $(".fe-artifact-detail").textContent;
  assert.ok(d.includes(HOSTILE[0]) && d.includes(HOSTILE[1]));
  noHostileElements(el);
  await tab("staleness");
  click($(".fe-story"));
  await tick();
  assert.ok($(".fe-story-detail").textContent.includes(HOSTILE[0]));
  noHostileElements(el);
  await tab("events");
  assert.ok($(".fe-event").textContent.includes(HOSTILE[1]));
  noHostileElements(el);
  await tab("controller");
  assert.ok($(".fe-controller").textContent.includes(HOSTILE[0]));
  await tab("editor");
  change($(".fe-editor-pick"), "art:a8");
  await tick();
  await tick();
  assert.ok($(".fe-editor-text").value.includes(HOSTILE[0]));
  noHostileElements(el);
  for (const tname of ["speculation", "pipeline"]) { await tab(tname); noHostileElements(el); }
  view.unmount();
});

test("lineage: nodes with data-id, selection shows detail, diff, scores, timeline", async () => {
  const { $, $$, tab, view } = setup();
  await tab("lineage");
  const nodes = $$(".fe-node");
  assert.ok(nodes.length >= 10);
  assert.ok($('.fe-node[data-id="a6"]').classList.contains("fe-best"));
  assert.ok($('.fe-node[data-id="a9"]').classList.contains("fe-state-rolled_back"));
  assert.ok($('.fe-node[data-id="a5"]').classList.contains("fe-not-pool"));
  assert.ok($('.fe-node[data-id="a6"]').classList.contains("fe-origin-repair"));
  assert.ok($$(".fe-edge").length >= 10);
  click($('.fe-node[data-id="a6"]'));
  await tick();
  const d = $(".fe-artifact-detail");
  assert.equal(d.getAttribute("data-id"), "a6");
  assert.match(d.textContent, /rate equation/);
  assert.ok(d.querySelector(".fe-diff-add"));
  assert.equal(d.querySelectorAll(".fe-score-cell").length, 6);
  assert.ok(d.querySelectorAll(".fe-tl").length >= 2);
  // edit jumps to the editor prefilled
  click(d.querySelector(".fe-edit"));
  await tick();
  await tick();
  assert.ok($(".fe-panel-editor"));
  assert.match($(".fe-editor-text").value, /rate equation/);
  view.unmount();
});

test("staleness: table rows and the teaching view of a patch", async () => {
  const { $, $$, tab, view } = setup();
  await tab("staleness");
  const rows = $$(".fe-story");
  assert.equal(rows.length, 3);
  assert.match(rows[0].textContent, /patch/);
  assert.match($(".fe-summary").textContent, /discard/);
  click(rows[0]);
  await tick();
  const d = $(".fe-story-detail");
  assert.ok(d);
  assert.equal(d.querySelectorAll(".fe-since").length, 3);
  assert.match(d.querySelector(".fe-teach-c").textContent, /patch/);
  assert.ok(d.querySelector(".fe-teach-d .fe-diff"));
  assert.match(d.querySelector(".fe-teach-e").textContent, /admitted/);
  assert.match(d.querySelector(".fe-teach-e").textContent, /best/);
  click(rows[1]);
  await tick();
  assert.match($(".fe-story-detail .fe-teach-d").textContent, /no repair/);
  view.unmount();
});

test("events: order toggle, kind and id filter", async () => {
  const { $, $$, tab, view } = setup();
  await tab("events");
  const all = $$(".fe-event");
  assert.ok(all.length >= 50);
  const firstSeq = Number(all[0].getAttribute("data-seq"));
  click($(".fe-event-order"));
  await tick();
  assert.ok(Number($$(".fe-event")[0].getAttribute("data-seq")) < firstSeq);
  typeInto($(".fe-event-filter"), "a9");
  await tick();
  const f = $$(".fe-event");
  assert.ok(f.length > 0 && f.length < all.length);
  assert.ok(f.every((e) => e.textContent.includes("a9")));
  typeInto($(".fe-event-filter"), "");
  change($(".fe-event-kind"), "controller_action");
  await tick();
  assert.equal($$(".fe-event").length, 4);
  assert.ok($(".fe-level-warn") === null || true);
  view.unmount();
});

test("editor: submit, replace, drop; ack links to the new artifact", async () => {
  const { $, sent, bus, tab, view } = setup();
  await tab("editor");
  await tick();
  change($(".fe-editor-pick"), "art:a6");
  await tick();
  await tick();
  typeInto($(".fe-editor-text"), "my own prompt");
  await tick();
  click($(".fe-submit"));
  await tick();
  const c = sent.at(-1);
  assert.equal(c.cmd, "submit");
  assert.equal(c.args.parent, "a6");
  assert.equal(c.args.components.system, "my own prompt");
  assert.match($(".fe-editor-status").textContent, /sending/);
  assert.ok($(".fe-replace").disabled, "replace needs a queued item");
  bus.ack({ type: "ack", id: c.id, ok: true, message: "submitted as a12", artifact_id: "a12" });
  await tick();
  assert.match($(".fe-editor-status").textContent, /a12/);
  assert.ok($(".fe-jump"));
  // a queued item: replace and drop
  change($(".fe-editor-pick"), "item:i13");
  await tick();
  await tick();
  assert.ok(!$(".fe-replace").disabled);
  typeInto($(".fe-editor-text"), "replacement text");
  await tick();
  click($(".fe-replace"));
  await tick();
  assert.equal(sent.at(-1).cmd, "replace");
  assert.equal(sent.at(-1).args.item_id, "i13");
  assert.equal(sent.at(-1).args.components.system, "replacement text");
  click($(".fe-drop"));
  await tick();
  assert.deepEqual(sent.at(-1).args, { item_id: "i13" });
  bus.ack({ type: "ack", id: sent.at(-1).id - 1, ok: true, message: "replaced", artifact_id: "a13" }); // superseded on the status line
  bus.ack({ type: "ack", id: sent.at(-1).id, ok: false, message: "i13 is no longer queued" });
  await tick();
  assert.ok($(".fe-editor-status .fe-ack-error"));
  assert.match($(".fe-editor-status").textContent, /no longer queued/);
  change($(".fe-editor-pick"), "art:a6");
  await tick();
  click($(".fe-submit"));
  await tick();
  bus.ack({ type: "ack", id: sent.at(-1).id, ok: true, message: "submitted as a14", artifact_id: "a6" });
  await tick();
  click($(".fe-jump"));
  await tick();
  assert.ok($(".fe-panel-lineage"));
  assert.equal($(".fe-artifact-detail").getAttribute("data-id"), "a6");
  view.unmount();
});

test("controller: tune sends changed knobs; depth; policy with delta_max; enabled toggle", async () => {
  const { $, $$, sent, tab, view } = setup();
  await tab("controller");
  assert.equal($$(".fe-knob").length, 4);
  typeInto($('.fe-knob[data-knob="interval"] input'), "45");
  await tick();
  change($('.fe-knob[data-knob="adapt_alpha"] input'), false);
  await tick();
  click($(".fe-tune"));
  await tick();
  assert.deepEqual(sent.at(-1), { type: "cmd", id: sent.at(-1).id, cmd: "tune", args: { changes: { interval: 45, adapt_alpha: false } } });
  assert.equal($('.fe-knob[data-knob="interval"] input').value, "45");
  typeInto($(".fe-depth-input"), "12");
  await tick();
  click($(".fe-depth-set"));
  await tick();
  assert.deepEqual(sent.at(-1).args, { n: 12 });
  change($(".fe-policy-select"), "guarded");
  await tick();
  typeInto($(".fe-delta-max"), "2");
  await tick();
  click($(".fe-policy-set"));
  await tick();
  assert.deepEqual(sent.at(-1).args, { name: "guarded", params: { delta_max: 2 } });
  change($(".fe-controller-enabled"), false);
  await tick();
  assert.deepEqual(sent.at(-1).args, { enabled: false });
  assert.equal($$(".fe-move").length, 4);
  view.unmount();
});

test("speculation: rows, alpha and validation toggle", async () => {
  const { $, $$, sent, tab, view } = setup();
  await tab("speculation");
  assert.equal($$(".fe-spec-row").length, 3);
  typeInto($(".fe-alpha-validate .fe-alpha-input-input"), "0.25");
  await tick();
  click($(".fe-alpha-validate .fe-alpha-input-set"));
  await tick();
  assert.deepEqual(sent.at(-1).args, { stage: "validate", alpha: 0.25 });
  change($(".fe-spec-toggle"), false);
  await tick();
  assert.deepEqual(sent.at(-1).args, { on: false });
  view.unmount();
});

test("replay: scrubber filters the views to the cursor", async () => {
  const m = fixture();
  m.meta.replay = true;
  const { $, $$, tab, view } = setup(m);
  assert.ok($(".fe-replay"));
  const scrub = $(".fe-replay-scrub");
  assert.equal(Number(scrub.max), m.snapshot.t);
  assert.ok($(".fe-stop-drain").disabled, "no steering while replaying");
  typeInto(scrub, "470");
  await tick();
  assert.match($(".fe-replay-cursor").textContent, /^7:50/);
  await tab("staleness");
  assert.equal($$(".fe-story").length, 1);
  assert.match($(".fe-story").textContent, /pending/);
  await tab("events");
  assert.ok($$(".fe-event").every((e) => { const [mm, ss] = e.querySelector(".fe-ev-t").textContent.split(":").map(Number); return mm * 60 + ss <= 470; }));
  await tab("lineage");
  assert.equal($('.fe-node[data-id="a7"]'), null);
  typeInto(scrub, String(m.snapshot.t));
  await tick();
  assert.ok($('.fe-node[data-id="a7"]'));
  // play advances the cursor
  typeInto(scrub, "0");
  await tick();
  click($(".fe-replay-play"));
  await tick(250);
  assert.notEqual($(".fe-replay-cursor").textContent.split(" /")[0], "0:00");
  click($(".fe-replay-play"));
  view.unmount();
});

test("a finished run offers replay", async () => {
  const m = fixture();
  m.snapshot.state = "finished";
  const { $, view } = setup(m);
  assert.equal($(".fe-replay"), null);
  click($(".fe-replay-open"));
  await tick();
  assert.ok($(".fe-replay-play"));
  view.unmount();
});

test("anywidget lifecycle: initialize + render share one store; ticks, sync and acks", async () => {
  const handlers = {};
  const sent = [];
  const archive = fixture();
  const model = {
    get: (k) => (k === "archive" ? archive : undefined),
    on: (ev, fn) => (handlers[ev] ||= []).push(fn),
    off: () => {},
    send: (m) => sent.push(m),
  };
  const cleanup = widget.initialize({ model });
  const el1 = document.createElement("div");
  const el2 = document.createElement("div");
  // a different proxy object over the same model (as anywidget may pass)
  const proxy = { ...model };
  const stop1 = widget.render({ model, el: el1 });
  const stop2 = widget.render({ model: proxy, el: el2 });
  assert.equal((handlers["msg:custom"] || []).length, 1, "one store only");
  const fire = (msg) => handlers["msg:custom"].forEach((fn) => fn(msg));
  fire({ type: "tick", prev: archive.tick, tick: archive.tick + 1, snapshot: { ...archive.snapshot, state: "paused" } });
  await tick(350);
  assert.match(el1.querySelector(".fe-figures").textContent, /paused/);
  assert.match(el2.querySelector(".fe-figures").textContent, /paused/);
  fire({ type: "tick", prev: archive.tick + 5, tick: archive.tick + 6 });
  assert.deepEqual(sent.at(-1), { type: "sync" });
  click(el1.querySelector(".fe-stage-select .fe-pause-toggle"));
  await tick();
  const id = sent.at(-1).id;
  assert.match(el2.querySelector(".fe-stage-select .fe-stage-status").textContent, /sending/);
  fire({ type: "ack", id, ok: true, message: "select paused" });
  await tick();
  assert.match(el1.querySelector(".fe-stage-select .fe-stage-status").textContent, /select paused/);
  stop1();
  stop2();
  cleanup();
});

test("renderStandalone renders a stored run with controls hidden", () => {
  const el = document.createElement("div");
  const r = renderStandalone(el, fixture());
  assert.ok(el.querySelector(".fe-figures"));
  assert.equal(el.querySelector(".fe-stop-drain"), null);
  assert.ok(el.querySelector(".fe-stage-rollout .fe-pause-toggle").disabled);
  assert.ok(el.querySelector(".fe-replay-open"), "a stored run can be replayed");
  assert.equal(typeof globalThis.flashevolveRenderStandalone, "function");
  r.unmount();
});

test("a workload's change record shows in the artifact detail, as text", async () => {
  const model = fixture();
  const id = Object.keys(model.artifacts).find((k) => (model.artifacts[k].parents || []).length);
  model.artifacts[id].change = { added: ["b-7", "b-8"], merged: { "b-2": ["b-9"] }, duplicates: 2,
    delta: "ADD [x] " + HOSTILE[0] + "\nDELETE b-3", notes: [] };
  const { $, $$, tab, el } = setup(model);
  await tab("lineage");
  click($$(".fe-node").find((n) => n.getAttribute("data-id") === id));
  await tick();
  const rows = $$(".fe-artifact-detail .fe-change-row").map((r) => r.textContent);
  assert.ok(rows.some((t) => t.includes("added") && t.includes("b-7, b-8")), rows.join(" | "));
  assert.ok(rows.some((t) => t.includes("merged") && t.includes("b-2 → b-9")));
  assert.ok(rows.some((t) => t.includes("delta") && t.includes(HOSTILE[0])));
  assert.ok(!rows.some((t) => t.startsWith("notes")), "empty entries are left out");
  noHostileElements(el);
});
