// The dashboard: header, tabs, replay. Everything renders from the store's model.
import { h, render as prender } from "preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { isEnded, viewAt, rateAt } from "./store.js";
import { html, Ack, Badge } from "./widgets.js";
import { num, score, tokens, clock, stageColors } from "./format.js";
import { PipelineTab } from "./views/pipeline.js";
import { LineageTab } from "./views/lineage.js";
import { StalenessTab } from "./views/staleness.js";
import { SpeculationTab } from "./views/speculation.js";
import { ControllerTab } from "./views/controller.js";
import { EditorTab } from "./views/editor.js";
import { EventsTab } from "./views/events.js";

export const TABS = [
  ["pipeline", "Pipeline"],
  ["lineage", "Lineage"],
  ["staleness", "Staleness"],
  ["speculation", "Speculation"],
  ["controller", "Controller"],
  ["editor", "Editor"],
  ["events", "Events"],
];

function Fig({ label, value, cls = "", title, text = false }) {
  return html`<div class=${"fe-fig " + cls + (text ? " fe-fig-text" : "")} title=${title || ""}>
    <div class="fe-fig-value">${text ? html`<span class="fe-fig-clamp">${value}</span>` : value}</div>
    <div class="fe-fig-label">${label}</div>
  </div>`;
}

function Header({ m, ctx }) {
  const s = m.snapshot, st = s.stats || {}, meta = m.meta;
  const minutes = (s.t || 0) / 60;
  const ended = isEnded(s.state);
  const pp = s.policy_params || {};
  const policy = (s.policy || "–") + (pp.delta_max !== undefined && s.policy === "guarded" ? ` (Δmax ${pp.delta_max})` : "");
  return html`<div class="fe-header">
    <div class="fe-titlebar">
      <span class="fe-name">${meta.name || "run"}</span>
      <span class="fe-sub">${[meta.workload, meta.mode, meta.seed !== undefined ? "seed " + meta.seed : ""].filter(Boolean).join(" · ")}</span>
      <span class="fe-spacer"></span>
      ${ctx.canReplay && !ctx.replay.on ? html`<button class="fe-btn fe-replay-open" onClick=${() => ctx.startReplay()}>replay</button>` : null}
      ${meta.live
        ? html`<span class="fe-stops">
            <button class="fe-btn fe-stop-drain" disabled=${ended || ctx.replay.on} title="finish the steps in flight, start no new ones"
              onClick=${() => ctx.bus.send("stop", { mode: "drain" }, "stop")}>stop (drain)</button>
            <button class="fe-btn fe-btn-danger fe-stop-cancel" disabled=${ended || ctx.replay.on} title="cancel everything in flight now"
              onClick=${() => ctx.bus.send("stop", { mode: "cancel" }, "stop")}>stop (cancel)</button>
            <${Ack} bus=${ctx.bus} k="stop" />
          </span>`
        : null}
    </div>
    <div class="fe-figures">
      <${Fig} label="state" value=${html`<span class="fe-state fe-state-${s.state}">${s.state}</span>`} cls="fe-fig-state" title=${s.finish_reason || ""} />
      <${Fig} label=${meta.simulated ? "simulated min" : "min"} value=${minutes.toFixed(1)} cls="fe-fig-clock"
        title=${minutes.toFixed(1) + (meta.simulated ? " simulated min" : " min")} />
      <${Fig} label="real s" value=${s.real_seconds == null ? "–" : num(s.real_seconds, 1)} cls="fe-fig-real" />
      <${Fig} label="proposals/min" value=${num(st.proposals_per_min, 2)} cls="fe-fig-ppm" />
      <${Fig} label="accepted/min" value=${num(st.accepted_per_min, 2)} cls="fe-fig-apm" />
      <${Fig} label="best score" value=${score(st.best_score ?? (s.pool || {}).best_score)} cls="fe-fig-best" />
      <${Fig} label="tokens" value=${tokens(st.tokens)} cls="fe-fig-tokens" />
      <${Fig} label="requests in flight" value=${num(s.requests_in_flight)} cls="fe-fig-requests" />
      <${Fig} label="backend" value=${meta.backend || "–"} cls="fe-fig-backend" text=${true} title=${meta.backend || ""} />
      <${Fig} label="policy" value=${policy} cls="fe-fig-policy" text=${true} title=${policy} />
    </div>
    <div class="fe-clockline">${minutes.toFixed(1)} ${meta.simulated ? "simulated min" : "min"}${s.real_seconds != null ? ` · ${num(s.real_seconds, 1)} s real` : ""} · pool v${num((s.pool || {}).version)} · ${num((s.pool || {}).size)} artifacts${s.finish_reason
      ? html` · <span class=${"fe-finish-reason fe-finish-" + s.state}>${s.finish_reason}</span>` : null}</div>
    ${(s.warnings || []).length ? html`<div class="fe-warning">${s.warnings.map((w) => html`<div class="fe-warning-line">⚠ ${w}</div>`)}</div>` : null}
    ${s.clock_behind ? html`<div class="fe-clock-behind" title=${s.clock_behind.message}>⚠ clock behind: ${s.clock_behind.message}</div>` : null}
    ${s.lagging && !s.clock_behind ? html`<div class="fe-lagging">lagging: the real clock fell behind the simulated one; the run is slower than its time scale</div>` : null}
    ${s.error || (s.errors || []).length
      ? html`<div class="fe-errors">${s.error ? html`<div class="fe-error-line">${s.error}</div>` : null}${(s.errors || []).slice(-5).map((e) => html`<div class="fe-error-line">${e}</div>`)}</div>`
      : null}
  </div>`;
}

const SPEEDS = [1, 2, 4, 8, 16, 32, 64];

function ReplayBar({ full, ctx }) {
  const r = ctx.replay;
  const end = full.snapshot.t || 0;
  const decisions = full.stories.map((s) => s.t);
  const marks = [...new Set(full.events.filter((e) => e.kind === "admitted" || e.kind === "policy_decision" || e.kind.startsWith("specul")).map((e) => e.t))].sort((a, b) => a - b);
  const next = marks.find((t) => t > r.cursor + 1e-9);
  const prev = [...marks].reverse().find((t) => t < r.cursor - 1e-9);
  return html`<div class="fe-replay">
    <span class="fe-replay-label">replay</span>
    <button class="fe-btn fe-replay-play" onClick=${() => ctx.setReplay({ ...r, playing: !r.playing, cursor: r.cursor >= end ? 0 : r.cursor })}>${r.playing ? "pause" : "play"}</button>
    <button class="fe-btn fe-replay-prev" title="previous admission or decision" disabled=${prev === undefined} onClick=${() => ctx.setReplay({ ...r, playing: false, cursor: prev })}>◀</button>
    <button class="fe-btn fe-replay-next" title="next admission or decision" disabled=${next === undefined} onClick=${() => ctx.setReplay({ ...r, playing: false, cursor: next })}>▶</button>
    <span class="fe-replay-track">
      <input type="range" class="fe-replay-scrub" min="0" max=${end} step="any" value=${r.cursor}
        onInput=${(e) => ctx.setReplay({ ...r, playing: false, cursor: Number(e.currentTarget.value) })} />
      <span class="fe-replay-ticks">${decisions.map((t) => html`<span class="fe-replay-tick" style=${{ left: (end ? (100 * t) / end : 0) + "%" }}></span>`)}</span>
    </span>
    <span class="fe-replay-cursor">${clock(r.cursor)} / ${clock(end)}</span>
    <select class="fe-replay-speed" value=${r.speed} onChange=${(e) => ctx.setReplay({ ...r, speed: Number(e.currentTarget.value) })}>
      ${SPEEDS.map((s) => html`<option value=${s}>${s}× run clock</option>`)}
    </select>
    ${ctx.canLeaveReplay ? html`<button class="fe-btn fe-replay-close" onClick=${() => ctx.setReplay({ ...r, on: false, playing: false })}>exit replay</button>` : null}
  </div>`;
}

export function App({ store, bus, version }) {
  const full = store.model;
  const [tab, setTab] = useState("pipeline");
  const [sel, setSel] = useState(null); // selected artifact id
  const [storyKey, setStoryKey] = useState(null);
  const [editorPick, setEditorPick] = useState(null);
  const [replay, setReplay] = useState(() => ({ on: !!full.meta.replay, playing: false, cursor: 0, speed: 16 }));
  const lineageView = useRef(null); // the lineage's zoom and pan, kept across tab switches
  const live = !!full.meta.live;
  const ended = isEnded(full.snapshot.state);

  // the replay clock
  const rref = useRef(replay);
  rref.current = replay;
  useEffect(() => {
    if (!replay.on || !replay.playing) return;
    let last = Date.now();
    const id = setInterval(() => {
      const now = Date.now();
      const r = rref.current;
      const end = store.model.snapshot.t || 0;
      const cursor = Math.min(end, r.cursor + ((now - last) / 1000) * r.speed);
      last = now;
      setReplay({ ...r, cursor, playing: cursor < end });
    }, 100);
    return () => clearInterval(id);
  }, [replay.on, replay.playing]);

  const m = useMemo(() => (replay.on ? viewAt(full, replay.cursor) : full), [version, full, replay.on, replay.cursor]);
  const controls = live && !ended && !replay.on;
  const ctx = {
    bus, live, ended, controls, replay, setReplay,
    canReplay: ended || !live,
    canLeaveReplay: true,
    startReplay: () => setReplay({ on: true, playing: false, cursor: 0, speed: replay.speed }),
    colors: stageColors(full.meta.stages.length ? full.meta.stages : full.snapshot.stages.map((s) => s.name)),
    select: (id) => { setSel(id); setTab("lineage"); },
    selectStory: (k) => { setStoryKey(k); setTab("staleness"); },
    edit: (pick) => { setEditorPick(pick); setTab("editor"); },
    sel, setSel, storyKey, setStoryKey, editorPick, setEditorPick, lineageView,
  };
  const Panel = { pipeline: PipelineTab, lineage: LineageTab, staleness: StalenessTab, speculation: SpeculationTab, controller: ControllerTab, editor: EditorTab, events: EventsTab }[tab];
  const counts = { staleness: m.stories.length, events: m.events.length, lineage: m.pool.length };
  return html`<div class="fe-root ${replay.on ? "fe-replaying" : ""}">
    <${Header} m=${m} ctx=${ctx} />
    ${replay.on ? html`<${ReplayBar} full=${full} ctx=${ctx} />` : null}
    <div class="fe-tabs" role="tablist">
      ${TABS.map(([name, label]) => html`<button role="tab" class=${"fe-tab fe-tab-" + name + (tab === name ? " fe-active" : "")}
          aria-selected=${tab === name} onClick=${() => setTab(name)}>${label}${counts[name] ? html` <span class="fe-count">${counts[name]}</span>` : null}</button>`)}
    </div>
    <div class=${"fe-panel fe-panel-" + tab}>
      <${Panel} m=${m} ctx=${ctx} />
    </div>
  </div>`;
}

export { rateAt };

/**
 * Mount the dashboard in `el`: re-renders at most ~4 times a second on store or
 * ack changes (animation-frame throttled). Returns {update, unmount}.
 */
export function mount(el, store, bus, { minGapMs = 250 } = {}) {
  el.classList.add("fe-host");
  let scheduled = false, last = 0, timer = null, alive = true;
  const draw = () => {
    scheduled = false;
    timer = null;
    if (!alive) return;
    last = Date.now();
    prender(h(App, { store, bus, version: store.version }), el);
  };
  const raf = typeof requestAnimationFrame === "function" ? requestAnimationFrame : (f) => setTimeout(f, 0);
  const schedule = () => {
    if (scheduled || !alive) return;
    scheduled = true;
    const wait = Math.max(0, minGapMs - (Date.now() - last));
    timer = setTimeout(() => raf(draw), wait);
  };
  const offStore = store.subscribe(schedule);
  // acks show at once (they are rare)
  const offBus = bus.subscribe(() => { if (alive) prender(h(App, { store, bus, version: store.version }), el); });
  draw();
  return {
    update: draw,
    unmount() {
      alive = false;
      offStore();
      offBus();
      if (timer) clearTimeout(timer);
      prender(null, el);
    },
  };
}
