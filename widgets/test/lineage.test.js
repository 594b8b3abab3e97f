// The lineage tab: tidy-tree layout, labels, zoom and pan, the line of the selection, speed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { setupDom, tick, click } from "./dom.js";

setupDom();
const { Store } = await import("../src/store.js");
const { CommandBus } = await import("../src/commands.js");
const { mount } = await import("../src/app.js");
const L_ = await import("../src/views/lineage.js");
const { layoutTree, layoutLineage, lineageArtifacts, pathTo, fitView, zoomAt, placeLabels, nodeRadius, dagHeight } = L_;

import { bigModel } from "./big-model.js";

const fixture = () => JSON.parse(readFileSync(new URL("./fixtures/model.json", import.meta.url), "utf8"));

function setup(model = fixture()) {
  const el = document.createElement("div");
  document.body.appendChild(el);
  const store = new Store(model);
  const bus = new CommandBus(() => {});
  const view = mount(el, store, bus, { minGapMs: 0 });
  const $ = (sel) => el.querySelector(sel);
  const $$ = (sel) => [...el.querySelectorAll(sel)];
  const tab = async (name) => { click($(".fe-tab-" + name)); await tick(); };
  return { el, store, view, $, $$, tab };
}

/** Screen position of a node: its dot's centre plus the tree's pan offset. */
function screenXY(el, id) {
  const dot = el.querySelector(`.fe-node[data-id="${id}"] .fe-node-dot`);
  const [tx, ty] = el.querySelector(".fe-dag-tree").getAttribute("transform").match(/-?[\d.]+/g).map(Number);
  return [tx + Number(dot.getAttribute("cx")), ty + Number(dot.getAttribute("cy"))];
}

test("layout: x is the generation along first parents, leaves one row each, a parent centred on its children", () => {
  const m = fixture();
  const L = layoutTree(lineageArtifacts(m));
  const depth = (id) => { let d = 0; for (let a = m.artifacts[id]; a.parents.length; a = m.artifacts[a.parents[0]]) d++; return d; };
  for (const nd of L.nodes) assert.equal(nd.gen, depth(nd.id), nd.id);
  const leaves = L.nodes.filter((nd) => nd.leaf).map((nd) => nd.row).sort((a, b) => a - b);
  assert.deepEqual(leaves, leaves.map((_, i) => i), "leaves on rows 0..n-1");
  assert.equal(L.maxRow, leaves.length - 1);
  for (const nd of L.nodes.filter((x) => !x.leaf)) {
    const kids = L.nodes.filter((k) => k.parent === nd.id).map((k) => k.row);
    assert.equal(nd.row, (Math.min(...kids) + Math.max(...kids)) / 2, nd.id);
  }
  // every first-parent edge is one generation long; the extra parent of the merge is a merge edge
  for (const e of L.edges) if (!e.merge) assert.equal(L.pos.get(e.to).gen - L.pos.get(e.from).gen, 1);
  assert.deepEqual(L.edges.filter((e) => e.merge).map((e) => e.from + ">" + e.to), ["a3>a9"]);
  // subtrees are contiguous bands of rows: no two tree edges cross
  const tree = L.edges.filter((e) => !e.merge);
  for (const e of tree) for (const f of tree) {
    if (e === f || L.pos.get(e.from).gen !== L.pos.get(f.from).gen) continue;
    const [a, b, c, d] = [L.pos.get(e.from).row, L.pos.get(e.to).row, L.pos.get(f.from).row, L.pos.get(f.to).row];
    assert.ok(!((a < c && b > d) || (a > c && b < d)), `${e.from}>${e.to} crosses ${f.from}>${f.to}`);
  }
  assert.deepEqual(pathTo(L, "a11"), ["a0", "a1", "a2", "a4", "a6", "a9", "a11"]);
});

test("layout of a real run: short edges, no crossings, parents centred, artifacts outside the pool kept", () => {
  const m = realRun();
  const L = layoutLineage(m);
  const pool = new Set(m.pool.map((r) => r.id));
  assert.ok(L.nodes.length >= 100, `${L.nodes.length} nodes`);
  assert.ok(L.nodes.some((nd) => !pool.has(nd.id)), "artifacts outside the pool are drawn too");
  const tree = L.edges.filter((e) => !e.merge);
  assert.equal(tree.length, L.nodes.length - 1, "one tree: every node but the seed has its first parent");
  const byGen = new Map();
  for (const e of tree) {
    const a = L.pos.get(e.from), b = L.pos.get(e.to);
    assert.equal(b.gen - a.gen, 1);
    if (!byGen.has(a.gen)) byGen.set(a.gen, []);
    byGen.get(a.gen).push([a.row, b.row]);
  }
  const kids = new Map();
  for (const e of tree) kids.set(e.from, [...(kids.get(e.from) || []), L.pos.get(e.to).row]);
  for (const [id, rows] of kids) assert.equal(L.pos.get(id).row, (Math.min(...rows) + Math.max(...rows)) / 2, id);
  for (const es of byGen.values()) {
    es.sort((p, q) => p[0] - q[0] || p[1] - q[1]);
    for (let i = 1; i < es.length; i++) assert.ok(es[i][1] >= es[i - 1][1], "edges of one generation keep their order: no crossing");
  }
});

test("layout: memoised on ids and parents; roots and cycles are safe", () => {
  const a = layoutLineage(fixture());
  const m2 = fixture();
  m2.snapshot.t += 10; // a tick: new objects, same structure
  m2.pool = m2.pool.map((r) => ({ ...r, score: 0.1 }));
  assert.equal(layoutLineage(m2), a, "same structure: the same layout object");
  const m3 = fixture();
  m3.artifacts.a12 = { id: "a12", parents: ["a11"], origin: "human", created_at: 790, components: {}, feedback: [] };
  const c = layoutLineage(m3);
  assert.notEqual(c, a);
  assert.equal(c.pos.get("a12").gen, 7);
  // a person's submission without a parent is a root of its own; a cycle does not hang
  const L = layoutTree([
    { id: "x", parents: [], created_at: 0 }, { id: "h", parents: [], created_at: 1 },
    { id: "p", parents: ["q"], created_at: 2 }, { id: "q", parents: ["p"], created_at: 3 },
  ]);
  assert.equal(L.nodes.length, 4);
  assert.ok(L.nodes.every((nd) => nd.gen >= 0 && Number.isFinite(nd.row)));
  assert.equal(L.pos.get("h").gen, 0);
});

const realRun = () => JSON.parse(readFileSync(new URL("./fixtures/real-run.json", import.meta.url), "utf8"));

for (const [name, make] of [["500 synthetic artifacts", () => bigModel(500)], ["a real run", realRun]])
test(`view (${name}): fit shows every node, zoom keeps the point under the pointer, labels never overlap`, () => {
  const m = make();
  const L = layoutLineage(m);
  const W = 1200, H = dagHeight(L);
  const v = fitView(L, W, H);
  for (const nd of L.nodes) {
    const x = v.tx + nd.gen * v.cx, y = v.ty + nd.row * v.ry;
    assert.ok(x >= 0 && x <= W && y >= 0 && y <= H, `${nd.id} off screen at fit`);
  }
  const z = zoomAt(v, 2, 300, 200, v);
  assert.ok(z.ry > v.ry);
  // the layout point that was under (300, 200) still is
  const gx = (300 - v.tx) / v.cx, gy = (200 - v.ty) / v.ry;
  assert.ok(Math.abs(z.tx + gx * z.cx - 300) < 1e-6 && Math.abs(z.ty + gy * z.ry - 200) < 1e-6);
  const rows = new Map(m.pool.map((r) => [r.id, r]));
  const best = m.snapshot.pool.best_id;
  const sel = L.nodes[Math.floor(L.nodes.length / 2)].id;
  for (const [cx, ry] of [[v.cx, v.ry], [z.cx, z.ry], [200, 30]]) {
    const labels = placeLabels(L, cx, ry, { sel, best, onPath: new Set(pathTo(L, sel)), rows });
    assert.ok(labels.some((l) => l.id === sel) && labels.some((l) => l.id === best), "the selection and the best are labelled");
    const r = nodeRadius(ry);
    const boxes = labels.map((l) => {
      const w = (l.text.length + (l.score ? l.score.length + 1 : 0) + (l.id === best ? 5 : 0)) * 6.6;
      const x0 = l.anchor === "middle" ? l.x - w / 2 : l.x;
      return { id: l.id, x0, x1: x0 + w, y0: l.y - 6, y1: l.y + 6 };
    });
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
      const p = boxes[i], q = boxes[j];
      if (p.id === sel || q.id === sel || p.id === best || q.id === best) continue; // forced ones may
      assert.ok(!(p.x0 < q.x1 && q.x0 < p.x1 && p.y0 < q.y1 && q.y0 < p.y1), `labels ${p.id} and ${q.id} overlap`);
    }
    // and no label covers another node's dot
    for (const b of boxes) {
      if (b.id === sel || b.id === best) continue;
      for (const nd of L.nodes) {
        if (nd.id === b.id) continue;
        const x = nd.gen * cx, y = nd.row * ry;
        assert.ok(!(x + r > b.x0 && x - r < b.x1 && y + r > b.y0 && y - r < b.y1), `label ${b.id} covers ${nd.id}`);
      }
    }
    assert.ok(labels.length >= Math.min(20, L.nodes.length / 3), `only ${labels.length} labels at ${cx}x${ry}`);
  }
});

test("lineage DOM: hooks kept; the line from the seed to the selection is highlighted", async () => {
  const { $, $$, tab, view, el } = setup();
  await tab("lineage");
  assert.equal($$(".fe-node").length, 12);
  // not in the pool: drawn hollow and dashed, still there
  const a5 = $('.fe-node[data-id="a5"]');
  assert.ok(a5.classList.contains("fe-not-pool"));
  assert.equal(a5.querySelector(".fe-node-dot").getAttribute("stroke-dasharray"), "2 2");
  assert.match(a5.querySelector(".fe-node-dot").getAttribute("style"), /var\(--fe-bg\)/);
  assert.ok($('.fe-node[data-id="a6"]').classList.contains("fe-best"));
  assert.equal($$(".fe-edge-merge").length, 1);
  assert.ok($(".fe-zoom-fit").classList.contains("fe-active"), "fit is the default");
  // children sit one generation right of their parent
  const [x1] = screenXY(el, "a4"), [x2] = screenXY(el, "a6");
  assert.ok(x2 > x1);
  click($('.fe-node[data-id="a11"]'));
  await tick();
  assert.equal($(".fe-artifact-detail").getAttribute("data-id"), "a11");
  assert.deepEqual($$(".fe-on-path").map((n) => n.getAttribute("data-id")), ["a0", "a1", "a2", "a4", "a6", "a9", "a11"]);
  assert.ok($(".fe-edge-path"));
  assert.ok($(".fe-node.fe-selected .fe-sel-ring"));
  assert.equal($(".fe-lineage-path").textContent.replace(/\s+/g, ""), "line:a0→a1→a2→a4→a6→a9→a11");
  // a step on the line selects it
  click([...$(".fe-lineage-path").querySelectorAll("button")].find((b) => b.textContent === "a4"));
  await tick();
  assert.equal($(".fe-artifact-detail").getAttribute("data-id"), "a4");
  assert.ok($(".fe-label-sel"), "the selection is labelled");
  click($(".fe-goto-best"));
  await tick();
  assert.equal($(".fe-artifact-detail").getAttribute("data-id"), "a6");
  view.unmount();
});

test("lineage zoom and pan: buttons, wheel around the pointer, drag; fit restores; kept across tabs", async () => {
  const { $, tab, view, el } = setup();
  await tab("lineage");
  const wrap = $(".fe-dag-wrap");
  const d0 = screenXY(el, "a11")[1] - screenXY(el, "a0")[1];
  click($(".fe-zoom-out"));
  await tick();
  const d1 = screenXY(el, "a11")[1] - screenXY(el, "a0")[1];
  assert.ok(Math.abs(d1) < Math.abs(d0), "zoomed out: rows closer");
  assert.ok(!$(".fe-zoom-fit").classList.contains("fe-active"));
  click($(".fe-zoom-in"));
  click($(".fe-zoom-in")); // two quick clicks before a render both count
  await tick();
  const d3 = screenXY(el, "a11")[1] - screenXY(el, "a0")[1];
  assert.ok(Math.abs(d3) > Math.abs(d0) * 1.2, "two clicks: past the fit view");
  click($(".fe-zoom-out"));
  await tick();
  const d2 = screenXY(el, "a11")[1] - screenXY(el, "a0")[1];
  assert.ok(Math.abs(d2) > Math.abs(d1));
  // the wheel zooms around the pointer: the node under it stays put
  const [px, py] = screenXY(el, "a6");
  wrap.dispatchEvent(new window.WheelEvent("wheel", { deltaY: -200, clientX: px, clientY: py, bubbles: true, cancelable: true }));
  await tick(40);
  const [qx, qy] = screenXY(el, "a6");
  assert.ok(Math.abs(qx - px) < 0.6 && Math.abs(qy - py) < 0.6, `moved from ${px},${py} to ${qx},${qy}`);
  assert.ok(Math.abs(screenXY(el, "a11")[1] - screenXY(el, "a0")[1]) > Math.abs(d2), "wheel up zooms in");
  // drag pans, and the click that ends a drag does not select
  const [ax, ay] = screenXY(el, "a0");
  const node = $('.fe-node[data-id="a3"]');
  node.dispatchEvent(new window.MouseEvent("pointerdown", { button: 0, clientX: 100, clientY: 100, bubbles: true }));
  window.dispatchEvent(new window.MouseEvent("pointermove", { clientX: 140, clientY: 110 }));
  window.dispatchEvent(new window.MouseEvent("pointerup", { clientX: 140, clientY: 110 }));
  click(node);
  await tick(40);
  const [bx, by] = screenXY(el, "a0");
  assert.ok(Math.abs(bx - ax - 40) < 0.6 && Math.abs(by - ay - 10) < 0.6, `panned by the drag: ${ax},${ay} -> ${bx},${by}`);
  assert.equal($(".fe-artifact-detail"), null, "a drag is not a click");
  // the view survives a tab switch
  await tab("events");
  await tab("lineage");
  const [cx, cy] = screenXY(el, "a0");
  assert.ok(Math.abs(cx - bx) < 0.6 && Math.abs(cy - by) < 0.6);
  click($(".fe-zoom-fit"));
  await tick();
  assert.ok($(".fe-zoom-fit").classList.contains("fe-active"));
  assert.ok(Math.abs(screenXY(el, "a11")[1] - screenXY(el, "a0")[1] - d0) < 0.6, "fit restores the first view");
  view.unmount();
});

test("lineage with 500 artifacts: one layout, fast re-renders at tick rate", async () => {
  const m = bigModel(500);
  const { store, $, $$, tab, view } = setup(m);
  await tab("lineage");
  assert.equal($$(".fe-node").length, 500);
  const L = layoutLineage(store.model);
  const nodeEl = $('.fe-node[data-id="a123"]');
  const times = [];
  for (let k = 0; k < 8; k++) {
    const snap = { ...store.model.snapshot, t: store.model.snapshot.t + 0.25 * (k + 1) };
    store.applyTick({ type: "tick", prev: store.model.tick, tick: store.model.tick + 1, snapshot: snap });
    const t0 = performance.now();
    view.update();
    times.push(performance.now() - t0);
  }
  assert.equal(layoutLineage(store.model), L, "the layout is not recomputed on ticks");
  assert.equal($('.fe-node[data-id="a123"]'), nodeEl, "the node elements are kept");
  times.sort((a, b) => a - b);
  assert.ok(times[4] < 60, `a re-render took ${times[4].toFixed(1)} ms (median) with 500 nodes`);
  view.unmount();
});
