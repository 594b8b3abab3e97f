import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { html, Pre, ArtifactDiff, Badge, ChangeRecord } from "../widgets.js";
import { ORIGIN_COLORS, score, clock } from "../format.js";

// ---------------------------------------------------------------------------
// Layout: a tidy tree. x = generation (depth from a root along first parents),
// y = leaf order: every leaf gets its own row, in creation order within its
// parent; a parent sits centred on its first and last child. So every tree
// edge is one generation long, and a subtree holds a contiguous band of rows.
// Extra parents (merges) are extra edges, drawn dashed.
// ---------------------------------------------------------------------------

const byCreation = (a, b) => (a.created_at ?? 0) - (b.created_at ?? 0) || String(a.id).localeCompare(String(b.id), undefined, { numeric: true });

/** The artifacts the lineage shows: the pool, people's submissions (admitted or not: that is
 * where they look for them), every artifact a staleness story names, and their known ancestors. */
export function lineageArtifacts(m) {
  const ids = new Set(m.pool.map((r) => r.id));
  for (const a of Object.values(m.artifacts)) if (a.origin === "human") ids.add(a.id);
  for (const s of m.stories) for (const id of [s.stale_id, s.replacement_id, s.parent_id, s.best_id, ...(s.since_ids || [])]) if (id) ids.add(id);
  const arts = [...ids].map((id) => m.artifacts[id]).filter(Boolean);
  for (let k = 0; k < arts.length; k++) for (const p of arts[k].parents || []) if (!ids.has(p) && m.artifacts[p]) { ids.add(p); arts.push(m.artifacts[p]); }
  return arts.sort(byCreation);
}

/** The tidy-tree layout of `arts` (sorted by creation). Pure; see layoutLineage for the cached one. */
export function layoutTree(arts) {
  const index = new Map(arts.map((a, i) => [a.id, i]));
  const n = arts.length;
  const parent = new Int32Array(n).fill(-1);
  const kids = arts.map(() => []);
  for (let i = 0; i < n; i++) {
    const p = index.get((arts[i].parents || [])[0]);
    if (p !== undefined && p !== i) { parent[i] = p; kids[p].push(i); }
  }
  const gen = new Int32Array(n).fill(-1);
  const row = new Float64Array(n);
  let next = 0;
  // iterative depth-first walk from each root (creation order); a cycle's first node becomes a root
  const walk = (root) => {
    gen[root] = 0;
    const stack = [[root, 0]];
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [i, k] = top;
      const ks = kids[i].filter((c) => gen[c] < 0 || gen[c] === gen[i] + 1);
      if (k < ks.length) {
        top[1]++;
        const c = ks[k];
        if (gen[c] >= 0) continue; // already placed (only through a cycle)
        gen[c] = gen[i] + 1;
        stack.push([c, 0]);
      } else {
        stack.pop();
        const placed = ks.filter((c) => gen[c] === gen[i] + 1);
        row[i] = placed.length ? (row[placed[0]] + row[placed[placed.length - 1]]) / 2 : next++;
      }
    }
  };
  for (let i = 0; i < n; i++) if (parent[i] < 0) walk(i);
  for (let i = 0; i < n; i++) if (gen[i] < 0) { parent[i] = -1; walk(i); }
  const nodes = arts.map((a, i) => ({ id: a.id, a, gen: gen[i], row: row[i], parent: parent[i] >= 0 ? arts[parent[i]].id : null, leaf: kids[i].length === 0 }));
  const pos = new Map(nodes.map((nd) => [nd.id, nd]));
  const edges = [];
  for (const nd of nodes) (nd.a.parents || []).forEach((p, k) => {
    if (!pos.has(p) || p === nd.id) return;
    edges.push({ from: p, to: nd.id, merge: k > 0 || p !== nd.parent });
  });
  let maxGen = 0;
  for (const nd of nodes) maxGen = Math.max(maxGen, nd.gen);
  // per generation: nodes by row (label placement looks up its neighbours)
  const cols = Array.from({ length: maxGen + 1 }, () => []);
  for (const nd of nodes) cols[nd.gen].push(nd);
  for (const c of cols) c.sort((x, y) => x.row - y.row);
  return { nodes, pos, edges, cols, maxGen, maxRow: Math.max(0, next - 1) };
}

const layoutCache = new Map(); // structure key -> layout (a few entries: one per run on the page)

/** The lineage layout of a model, memoised on its set of ids and parents: the same object back
 * while the structure is unchanged, whatever else the model's ticks replace. */
export function layoutLineage(m) {
  const arts = lineageArtifacts(m);
  const key = arts.map((a) => a.id + "<" + (a.parents || []).join(",")).join(";");
  let L = layoutCache.get(key);
  if (L) {
    layoutCache.delete(key);
  } else {
    L = layoutTree(arts);
    L.key = key;
  }
  layoutCache.set(key, L);
  while (layoutCache.size > 4) layoutCache.delete(layoutCache.keys().next().value);
  return L;
}

/** Ids from the root to `id` along first parents. */
export function pathTo(L, id) {
  const out = [];
  const seen = new Set();
  for (let nd = L.pos.get(id); nd && !seen.has(nd.id); nd = nd.parent ? L.pos.get(nd.parent) : null) { seen.add(nd.id); out.push(nd.id); }
  return out.reverse();
}

// ---------------------------------------------------------------------------
// View: semantic zoom. The layout's generations and rows map to screen pixels
// by a column width `cx` and a row height `ry` (px) and an offset (tx, ty);
// zooming changes the spacing, not the size of dots and text. "fit" (the
// default) shows the whole tree and follows it as it grows; a wheel, a drag or
// the +/- buttons switch to a view the person owns until they press "fit".
// ---------------------------------------------------------------------------

const PAD_L = 36, PAD_R = 120, PAD_T = 44, PAD_B = 22, BAND = 24; // BAND: the generation header's strip
const MAX_CX = 240, MAX_RY = 40, ZOOM_MAX_CX = 320, ZOOM_MAX_RY = 64;
const LABEL_H = 12, CHAR_W = 6.6;
const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));

/** The box height for a tree of `rows` leaves. */
export function dagHeight(L) {
  return Math.round(clamp(PAD_T + PAD_B + L.maxRow * 24 + 24, 220, 600));
}

/** The view that shows the whole tree in a W x H box. */
export function fitView(L, W, H) {
  const availW = Math.max(40, W - PAD_L - PAD_R), availH = Math.max(20, H - PAD_T - PAD_B);
  const cx = L.maxGen ? clamp(availW / L.maxGen, 4, MAX_CX) : MAX_CX;
  const ry = L.maxRow ? clamp(availH / L.maxRow, 1, MAX_RY) : MAX_RY;
  return { cx, ry, tx: PAD_L + Math.max(0, (availW - L.maxGen * cx) / 2), ty: PAD_T + Math.max(0, (availH - L.maxRow * ry) / 2) };
}

/** `v` zoomed by `f` around the screen point (px, py); each axis stops at its limits. */
export function zoomAt(v, f, px, py, fit) {
  const cx = clamp(v.cx * f, Math.min(fit.cx, 24) / 2, Math.max(fit.cx, ZOOM_MAX_CX));
  const ry = clamp(v.ry * f, Math.min(fit.ry, 8) / 2, Math.max(fit.ry, ZOOM_MAX_RY));
  return { cx, ry, tx: px - ((px - v.tx) * cx) / v.cx, ty: py - ((py - v.ty) * ry) / v.ry };
}

/** Keep some of the tree on screen whatever the pan. */
function clampPan(v, L, W, H) {
  const m = 60;
  return { ...v, tx: clamp(v.tx, m - L.maxGen * v.cx, W - m), ty: clamp(v.ty, m - L.maxRow * v.ry, H - m) };
}

export const nodeRadius = (ry) => clamp(ry * 0.36, 2.5, 8);

/**
 * Which nodes get a text label at this zoom, and where: a leaf's label sits right of its
 * dot (its row is its own from there on), a parent's label above its dot (its edges leave
 * and arrive level, so the text stays clear of them), else beside it on a plate, else
 * below. A label may not cover another label nor another dot. The selected node and the
 * best always get one; then the line of the selection, roots, parents, and leaves by score.
 */
export function placeLabels(L, cx, ry, { sel, best, onPath, rows }) {
  const r = nodeRadius(ry);
  const prio = (nd) => (nd.id === sel ? 0 : nd.id === best ? 1 : onPath.has(nd.id) ? 2 : !nd.parent ? 3 : !nd.leaf ? 4 : rows.has(nd.id) ? 5 : 6);
  const sc = (nd) => { const rw = rows.get(nd.id); return rw && typeof rw.score === "number" ? rw.score : -1; };
  const order = L.nodes.slice().sort((a, b) => prio(a) - prio(b) || sc(b) - sc(a) || a.row - b.row);
  const nb = L.maxGen + 2;
  const bucket = (x) => clamp(Math.floor(x / cx), 0, nb - 1);
  const taken = Array.from({ length: nb }, () => []); // placed label boxes, by the columns they reach
  const out = [];
  const hitsDot = (x0, x1, y0, y1, self) => {
    for (let g = Math.max(0, Math.ceil((x0 - r - 1) / cx)); g <= L.maxGen && g * cx <= x1 + r + 1; g++) {
      const col = L.cols[g];
      let lo = 0, hi = col.length; // first node with y >= y0 - r - 1
      while (lo < hi) { const mid = (lo + hi) >> 1; if (col[mid].row * ry < y0 - r - 1) lo = mid + 1; else hi = mid; }
      for (let k = lo; k < col.length && col[k].row * ry <= y1 + r + 1; k++) if (col[k].id !== self) return true;
    }
    return false;
  };
  const hitsLabel = (x0, x1, y0, y1) => {
    for (let b = bucket(x0); b <= bucket(x1); b++) for (const q of taken[b]) if (q[0] < x1 && q[1] > x0 && q[2] < y1 && q[3] > y0) return true;
    return false;
  };
  for (const nd of order) {
    const forced = nd.id === sel || nd.id === best;
    const row = rows.get(nd.id);
    const x = nd.gen * cx, y = nd.row * ry, up = r + (nd.id === best || nd.id === sel ? 6 : 2);
    const texts = row && typeof row.score === "number" ? [[nd.id, score(row.score)], [nd.id, ""]] : [[nd.id, ""]];
    const boxes = (w) => nd.leaf
      ? [{ x0: x + r + 4, x1: x + r + 4 + w, y0: y - LABEL_H / 2, y1: y + LABEL_H / 2, lx: x + r + 4, ly: y, anchor: "start" }]
      : [{ x0: x - w / 2, x1: x + w / 2, y0: y - up - LABEL_H, y1: y - up, lx: x, ly: y - up - LABEL_H / 2, anchor: "middle" },
         // else beside it on its outgoing edges, on a plate, if that leaves most of them in sight
         ...(w + r + 8 < cx * 0.5 ? [{ x0: x + r + 3, x1: x + r + 5 + w, y0: y - LABEL_H / 2, y1: y + LABEL_H / 2, lx: x + r + 4, ly: y, anchor: "start", plate: true }] : []),
         { x0: x - w / 2, x1: x + w / 2, y0: y + up, y1: y + up + LABEL_H, lx: x, ly: y + up + LABEL_H / 2, anchor: "middle" }];
    let placed = null;
    search: for (const [t, s] of texts) {
      const w = (t.length + (s ? s.length + 1 : 0) + (nd.id === best ? 5 : 0)) * CHAR_W;
      for (const box of boxes(w)) {
        const fits = !hitsLabel(box.x0, box.x1, box.y0, box.y1) && !hitsDot(box.x0, box.x1, box.y0, box.y1, nd.id);
        if (fits || (forced && !placed)) placed = { box, t, s };
        if (fits) break search;
      }
    }
    if (!placed) continue;
    const { box, t, s } = placed;
    for (let b = bucket(box.x0); b <= bucket(box.x1); b++) taken[b].push([box.x0, box.x1, box.y0, box.y1]);
    out.push({ id: nd.id, x: box.lx, y: box.ly, anchor: box.anchor, text: t, score: s, plate: box.plate ? [box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0] : null });
  }
  return out;
}

const edgePath = (x1, y1, x2, y2, bow = 40) => {
  // two nodes of one generation (an extra parent): bow out to the right instead of a straight line down the column
  if (Math.abs(x2 - x1) < 1) return `M${x1.toFixed(1)},${y1.toFixed(1)} C${(x1 + bow).toFixed(1)},${y1.toFixed(1)} ${(x2 + bow).toFixed(1)},${y2.toFixed(1)} ${x2.toFixed(1)},${y2.toFixed(1)}`;
  const d = Math.max(Math.abs(x2 - x1) / 2, 24);
  return `M${x1.toFixed(1)},${y1.toFixed(1)} C${(x1 + d).toFixed(1)},${y1.toFixed(1)} ${(x2 - d).toFixed(1)},${y2.toFixed(1)} ${x2.toFixed(1)},${y2.toFixed(1)}`;
};

/** The tree itself, in layout pixels (before the pan offset). Memoised by the caller. */
function treeLayer({ L, cx, ry, sel, best, rows, front, onPick }) {
  const r = nodeRadius(ry);
  const selPath = sel && L.pos.has(sel) ? pathTo(L, sel) : [];
  const bestPath = best && L.pos.has(best) ? pathTo(L, best) : [];
  const onPath = new Set(selPath);
  const onBest = new Set(bestPath);
  const X = (id) => L.pos.get(id).gen * cx, Y = (id) => L.pos.get(id).row * ry;
  const pathEdges = (ids) => ids.slice(1).map((id, k) => edgePath(X(ids[k]), Y(ids[k]), X(id), Y(id))).join(" ");
  const labels = placeLabels(L, cx, ry, { sel, best, onPath, rows });
  const hit = Math.max(r + 1.5, Math.min(ry / 2, 11));
  return html`<g>
    <g class="fe-edges">${L.edges.map((e) => html`<path key=${e.from + ">" + e.to} class=${"fe-edge" + (e.merge ? " fe-edge-merge" : "")}
      d=${edgePath(X(e.from), Y(e.from), X(e.to), Y(e.to), Math.min(cx * 0.45, 24 + Math.abs(Y(e.to) - Y(e.from)) * 0.25))} />`)}</g>
    ${bestPath.length > 1 ? html`<path class="fe-edge fe-edge-best" d=${pathEdges(bestPath)} />` : null}
    ${selPath.length > 1 ? html`<path class="fe-edge fe-edge-path" d=${pathEdges(selPath)} />` : null}
    <g class="fe-nodes">${L.nodes.map((nd) => {
      const a = nd.a, row = rows.get(a.id);
      const x = nd.gen * cx, y = nd.row * ry;
      const cls = ["fe-node", "fe-origin-" + a.origin, row ? "fe-in-pool" : "fe-not-pool", row ? "fe-state-" + row.state : "",
        a.id === best ? "fe-best" : "", sel === a.id ? "fe-selected" : "", onPath.has(a.id) ? "fe-on-path" : "", onBest.has(a.id) ? "fe-on-best-path" : "",
        front.has(a.id) ? "fe-front" : ""].filter(Boolean).join(" ");
      const color = ORIGIN_COLORS[a.origin] || "#888";
      const title = `${a.id} · ${a.origin} · generation ${nd.gen}${row ? ` · v${row.version} · ${score(row.score)} · ${row.state}` : " · not admitted"}${a.id === best ? " · best" : ""}${a.note ? "\n" + a.note : ""}`;
      const hollow = !row || row.state === "rolled_back";
      return html`<g key=${a.id} class=${cls} data-id=${a.id} onClick=${() => onPick(a.id)} tabIndex="0"
          onKeyDown=${(e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), onPick(a.id))}>
        <title>${title}</title>
        <circle cx=${x} cy=${y} r=${hit} class="fe-node-hit" />
        ${a.id === best ? html`<circle cx=${x} cy=${y} r=${r + 3.5} class="fe-best-ring" />` : null}
        ${sel === a.id ? html`<circle cx=${x} cy=${y} r=${r + (a.id === best ? 6.5 : 3.5)} class="fe-sel-ring" />` : null}
        <circle cx=${x} cy=${y} r=${r} class="fe-node-dot" style=${{ fill: hollow ? "var(--fe-bg)" : color, stroke: color }}
          stroke-dasharray=${row && row.state === "rolled_back" ? "3 2" : !row ? "2 2" : null} />
      </g>`;
    })}</g>
    <g class="fe-labels">${labels.map((lb) => html`${lb.plate ? html`<rect key=${lb.id + ":plate"} class="fe-label-plate" x=${lb.plate[0]} y=${lb.plate[1]} width=${lb.plate[2]} height=${lb.plate[3]} rx="3" />` : null}<text key=${lb.id} x=${lb.x} y=${lb.y} dy="0.35em" text-anchor=${lb.anchor}
        class=${"fe-node-label" + (lb.id === sel ? " fe-label-sel" : "") + (lb.id === best ? " fe-label-best" : "")} onClick=${() => onPick(lb.id)}>${lb.text}${lb.score
        ? html`<tspan class="fe-node-score"> ${lb.score}</tspan>` : null}${lb.id === best ? html`<tspan class="fe-node-best-tag"> best</tspan>` : null}</text>`)}</g>
  </g>`;
}

function Dag({ m, ctx, L }) {
  const wrap = useRef(null), svg = useRef(null);
  const [W, setW] = useState(900);
  const H = dagHeight(L);
  const keep = ctx.lineageView || { current: null }; // the person's view, kept across tab switches
  const [view, setViewState] = useState(() => keep.current); // null: fit
  const fit = fitView(L, W, H);
  const v = view || fit;
  const live = useRef({});
  live.current = { v, fit, L, W, H };
  const setView = (nv) => { keep.current = nv; live.current.v = nv || live.current.fit; setViewState(nv); };
  // wheel and drag steps are applied once per animation frame
  const frame = useRef(0), pending = useRef(null);
  const schedule = (nv) => {
    pending.current = nv;
    keep.current = nv;
    if (frame.current) return;
    const raf = typeof requestAnimationFrame === "function" ? requestAnimationFrame : (f) => setTimeout(f, 16);
    frame.current = raf(() => { frame.current = 0; const p = pending.current; pending.current = null; if (p) setViewState(p); });
  };
  const dragged = useRef(0);
  const pick = useRef(null);
  pick.current = (id) => { if (Date.now() - dragged.current > 250) ctx.setSel(id); };
  const onPick = useMemo(() => (id) => pick.current(id), []);

  useLayoutEffect(() => {
    const el = wrap.current;
    const measure = () => { const w = el.clientWidth; if (w > 0) setW(w); };
    measure();
    if (typeof ResizeObserver !== "function") return undefined;
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  useEffect(() => {
    const el = wrap.current;
    const onWheel = (e) => {
      const { fit, L, W, H } = live.current;
      const v = pending.current || live.current.v;
      const dy = e.deltaY * (e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1);
      const rect = svg.current.getBoundingClientRect();
      const nv = clampPan(zoomAt(v, Math.exp(-clamp(dy, -240, 240) * 0.002), e.clientX - rect.left, e.clientY - rect.top, fit), L, W, H);
      // at a zoom limit the wheel scrolls the page (the notebook) as usual
      if (Math.abs(nv.cx - v.cx) < 1e-9 && Math.abs(nv.ry - v.ry) < 1e-9) return;
      e.preventDefault();
      schedule(nv);
    };
    el.addEventListener("wheel", onWheel, { passive: false });
    el.addEventListener("pointerdown", onPointerDown);
    return () => {
      el.removeEventListener("wheel", onWheel);
      el.removeEventListener("pointerdown", onPointerDown);
      if (frame.current && typeof cancelAnimationFrame === "function") cancelAnimationFrame(frame.current);
      frame.current = 0;
    };
  }, []);

  function onPointerDown(e) {
    if (e.button !== 0 || (e.target.closest && e.target.closest(".fe-dag-tools"))) return;
    const x0 = e.clientX, y0 = e.clientY, v0 = live.current.v;
    let moved = false;
    const move = (ev) => {
      const dx = ev.clientX - x0, dy = ev.clientY - y0;
      if (!moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      if (!wrap.current) return; // unmounted mid-drag
      if (!moved) wrap.current.classList.add("fe-dragging");
      moved = true;
      const { L, W, H } = live.current;
      schedule(clampPan({ ...v0, tx: v0.tx + dx, ty: v0.ty + dy }, L, W, H));
    };
    const up = () => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      if (moved) { dragged.current = Date.now(); wrap.current && wrap.current.classList.remove("fe-dragging"); }
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  }

  // a node selected from elsewhere (a parent link, the editor) is brought into view
  const sel = ctx.sel;
  useEffect(() => {
    const nd = sel && view ? L.pos.get(sel) : null;
    if (!nd) return;
    const x = view.tx + nd.gen * view.cx, y = view.ty + nd.row * view.ry;
    if (x < 16 || x > W - 100 || y < BAND + 10 || y > H - 10) setView(clampPan({ ...view, tx: W / 2 - nd.gen * view.cx, ty: H / 2 - nd.row * view.ry }, L, W, H));
  }, [sel]);

  const best = (m.snapshot.pool || {}).best_id;
  const frontKey = ((m.snapshot.pool || {}).front_ids || []).join();
  const tree = useMemo(() => treeLayer({
    L, cx: v.cx, ry: v.ry, sel, best, onPick,
    rows: new Map(m.pool.map((r) => [r.id, r])), front: new Set(frontKey ? frontKey.split(",") : []),
  }), [L, v.cx, v.ry, sel, best, m.pool, frontKey]);

  const step = Math.max(1, Math.ceil(40 / v.cx));
  const gens = [];
  for (let g = 0; g <= L.maxGen; g += step) {
    const x = v.tx + g * v.cx;
    if (x > -20 && x < W + 20) gens.push(html`<text key=${g} x=${x} y="18" class="fe-gen-label">${g === 0 ? "gen 0" : step > 1 || v.cx < 60 ? String(g) : "gen " + g}</text>`);
  }
  const zoomBy = (f) => setView(clampPan(zoomAt(pending.current || live.current.v, f, W / 2, (H + PAD_T) / 2, fit), L, W, H));
  return html`<div class="fe-dag-wrap" ref=${wrap} style=${{ height: H + "px" }}>
    <svg class="fe-dag" ref=${svg} width=${W} height=${H} viewBox=${`0 0 ${W} ${H}`}>
      <g class="fe-dag-tree" transform=${`translate(${v.tx.toFixed(1)},${v.ty.toFixed(1)})`}>${tree}</g>
      <rect class="fe-gen-band" x="0" y="0" width=${W} height=${BAND} />
      <g class="fe-gens">${gens}</g>
    </svg>
    <div class="fe-dag-tools">
      <button class="fe-btn fe-zoom-in" title="zoom in (or the mouse wheel)" onClick=${() => zoomBy(1.6)}>+</button>
      <button class="fe-btn fe-zoom-out" title="zoom out" onClick=${() => zoomBy(1 / 1.6)}>−</button>
      <button class=${"fe-btn fe-zoom-fit" + (view ? "" : " fe-active")} title="show the whole tree (follows it as it grows)" onClick=${() => setView(null)}>fit</button>
    </div>
    ${view ? null : html`<div class="fe-dag-hint">wheel: zoom · drag: pan · click: open</div>`}
  </div>`;
}

function Legend() {
  return html`<div class="fe-legend">
    ${Object.entries(ORIGIN_COLORS).map(([k, c]) => html`<span class="fe-legend-item"><span class="fe-swatch fe-swatch-round" style=${{ background: c }}></span>${k}</span>`)}
    <span class="fe-legend-item"><span class="fe-swatch fe-swatch-round fe-swatch-hollow"></span>not admitted</span>
    <span class="fe-legend-item"><span class="fe-swatch fe-swatch-round fe-swatch-dashed"></span>rolled back</span>
    <span class="fe-legend-item"><span class="fe-swatch fe-swatch-round fe-swatch-best"></span>best (gold: its line)</span>
    <span class="fe-legend-item"><span class="fe-swatch fe-swatch-line fe-swatch-path"></span>line of the selected</span>
    <span class="fe-legend-item"><span class="fe-swatch fe-swatch-line fe-swatch-merge"></span>extra parent</span>
  </div>`;
}

/** Where the selection comes from (seed first), and the best. */
function PathBar({ m, ctx, L }) {
  const best = (m.snapshot.pool || {}).best_id;
  const bestRow = best ? m.pool.find((r) => r.id === best) : null;
  const path = ctx.sel && L.pos.has(ctx.sel) ? pathTo(L, ctx.sel) : [];
  return html`<div class="fe-lineage-bar">
    <span class="fe-kv">${L.nodes.length} artifacts · ${L.maxGen + 1} generations</span>
    ${best ? html`<span class="fe-kv">best <button class="fe-link fe-goto-best" onClick=${() => ctx.setSel(best)}>${best}</button>${bestRow ? " " + score(bestRow.score) : ""}</span>` : null}
    ${path.length
      ? html`<span class="fe-lineage-path">line: ${path.map((id, k) => html`${k ? html`<span class="fe-arrow">→</span>` : null}<button class=${"fe-link" + (id === ctx.sel ? " fe-path-sel" : "")} onClick=${() => ctx.setSel(id)}>${id}</button>`)}</span>`
      : null}
  </div>`;
}

export function ArtifactDetail({ m, ctx, id }) {
  const a = m.artifacts[id];
  if (!a) return html`<div class="fe-artifact-detail fe-muted">artifact ${id} is not in the model${ctx.replay.on ? " at this time" : ""}</div>`;
  const row = m.pool.find((r) => r.id === id);
  const p0 = (a.parents || [])[0];
  const parent = p0 ? m.artifacts[p0] : null;
  const events = m.events.filter((e) => (e.ids || []).includes(id));
  const inst = m.meta.instance_ids || [];
  const stories = m.stories.filter((s) => s.stale_id === id || s.replacement_id === id);
  return html`<div class="fe-artifact-detail" data-id=${id}>
    <div class="fe-detail-head">
      <span class="fe-detail-id">${a.id}</span>
      <${Badge} text=${a.origin} cls=${"fe-origin-badge fe-origin-" + a.origin} />
      ${row ? html`<${Badge} text=${"v" + row.version + " · " + row.state} cls=${"fe-badge-" + row.state} />` : html`<${Badge} text="not in pool" />`}
      ${row ? html`<span class="fe-kv">score <b>${score(row.score)}</b></span>` : null}
      ${row && row.objectives ? Object.entries(row.objectives).map(([k, v]) => html`<span class="fe-kv fe-objective">${k.replace(/_/g, " ")} <b>${v == null ? "–" : Number.isInteger(v) ? v : v.toFixed(1)}</b></span>`) : null}
      ${m.snapshot.pool && m.snapshot.pool.best_id === id ? html`<${Badge} text="best" cls="fe-badge-best" />` : null}
      <span class="fe-kv">parents ${(a.parents || []).length ? a.parents.map((p) => html`<button class="fe-link" onClick=${() => ctx.setSel(p)}>${p}</button> `) : "none"}</span>
      <span class="fe-kv">step ${a.step ?? "–"} · base v${a.base_version ?? "–"} · created ${clock(a.created_at)}</span>
      <span class="fe-spacer"></span>
      ${ctx.live ? html`<button class="fe-btn fe-edit" onClick=${() => ctx.edit({ kind: "art", id })}>edit</button>` : null}
    </div>
    ${a.note ? html`<div class="fe-note">${a.note}</div>` : null}
    ${stories.map((s) => html`<div class="fe-note">staleness decision: <button class="fe-link" onClick=${() => ctx.selectStory(s.key)}>${s.policy}: ${s.decision} before ${s.point}, step ${s.step}</button></div>`)}
    ${row && (row.scores || []).length
      ? html`<div class="fe-subtitle">per-instance scores</div>
        <div class="fe-scores">${row.scores.map((v, i) => html`<span class=${"fe-score-cell" + (v >= 1 ? " fe-score-1" : v <= 0 ? " fe-score-0" : "")} title=${(inst[i] || "#" + i) + ": " + v}>
          <span class="fe-score-name">${inst[i] || "#" + i}</span><span>${typeof v === "number" ? (Number.isInteger(v) ? v : v.toFixed(2)) : v}</span></span>`)}</div>`
      : null}
    <div class="fe-cols2">
      <div>
        <div class="fe-subtitle">text</div>
        ${Object.entries(a.components || {}).map(([k, v]) => html`<div class="fe-comp"><div class="fe-comp-name">${k}</div><${Pre} text=${v} /></div>`)}
      </div>
      <div>
        <${ArtifactDiff} a=${parent} b=${a} title=${p0 ? "diff against " + p0 : "no parent (seed)"} />
      </div>
    </div>
    <${ChangeRecord} change=${a.change} />
    ${(a.feedback || []).length
      ? html`<div class="fe-subtitle">feedback that produced it</div>
        <div class="fe-feedback">${a.feedback.map((f) => html`<div class="fe-fb">
          <div class="fe-fb-row"><span class="fe-fb-k">input</span><${Pre} text=${f.input} /></div>
          <div class="fe-fb-row"><span class="fe-fb-k">output</span><${Pre} text=${f.output} /></div>
          <div class="fe-fb-row"><span class="fe-fb-k">score</span><span>${score(f.score)}</span></div>
          <div class="fe-fb-row"><span class="fe-fb-k">feedback</span><${Pre} text=${f.feedback} /></div>
        </div>`)}</div>`
      : null}
    <div class="fe-subtitle">timeline</div>
    <div class="fe-timeline">${events.length ? events.map((e) => html`<div class=${"fe-tl fe-level-" + e.level}><span class="fe-tl-t">${clock(e.t)}</span><span class="fe-tl-kind">${e.kind}</span><span>${e.text}</span></div>`) : html`<div class="fe-muted">no events</div>`}</div>
  </div>`;
}

export function LineageTab({ m, ctx }) {
  const L = useMemo(() => layoutLineage(m), [m.pool, m.stories, m.artifacts]);
  const id = ctx.sel;
  return html`<div class="fe-lineage">
    <${Legend} />
    <${PathBar} m=${m} ctx=${ctx} L=${L} />
    <${Dag} m=${m} ctx=${ctx} L=${L} />
    ${id ? html`<${ArtifactDetail} m=${m} ctx=${ctx} id=${id} />` : html`<div class="fe-muted fe-pick-hint">click a node to read the artifact, its diff, scores, feedback and timeline</div>`}
  </div>`;
}
