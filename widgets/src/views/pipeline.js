import { useMemo } from "preact/hooks";
import { html, Ack, NumberSet, Badge } from "../widgets.js";
import { Chart } from "../charts.js";
import { rateOver, rateSeries, RATE_WINDOW } from "../rates.js";
import { num } from "../format.js";

function StageRow({ st, m, ctx, rate }) {
  const { bus, colors } = ctx;
  const key = "stage:" + st.name;
  const pending = bus.isPending(key);
  const disabled = !ctx.controls;
  const help = (m.meta.stage_help || {})[st.name] || "";
  return html`<tr class=${"fe-stage fe-stage-" + st.name + (st.paused ? " fe-paused" : "")}>
    <td class="fe-stage-name" title=${help}><span class="fe-swatch" style=${{ background: colors[st.name] }}></span>${st.name}
      ${st.paused ? html` <${Badge} text="paused" cls="fe-badge-warn" />` : null}</td>
    <td class="fe-queued fe-numcell">${num(st.queued)}</td>
    <td class="fe-busy fe-numcell">${num(st.busy)}/${num(st.workers)}</td>
    <td class="fe-requests fe-numcell">${st.requests == null ? "–" : num(st.requests)}</td>
    <td class="fe-processed-count fe-numcell">${String(Math.round(st.processed || 0))}</td>
    <td class="fe-rate fe-numcell">${rate == null ? "–" : rate.toFixed(1)}</td>
    <td class="fe-failed fe-numcell">${(st.failed || 0) + (st.dropped ? " / " + st.dropped : "")}</td>
    <td class="fe-controls-cell">
      <button class=${"fe-btn fe-pause-toggle" + (st.paused ? " mod-warning" : "")} disabled=${disabled || pending}
        onClick=${() => bus.send(st.paused ? "resume" : "pause", { stage: st.name }, key)}>${st.paused ? "resume" : "pause"}</button>
      <${NumberSet} bus=${bus} k=${key + ":workers"} value=${st.workers} min=${0} max=${256} step=${1} cls="fe-workers" label="set workers"
        disabled=${disabled} width="4em" make=${(n) => ["workers", { stage: st.name, n: Math.round(n) }]} />
      ${st.held
        ? html`<span class="fe-held"><${Badge} text="held" cls="fe-badge-held" />
            <button class="fe-btn fe-release" disabled=${disabled} title="let the controller move this stage's workers again"
              onClick=${() => bus.send("release", { stage: st.name }, key)}>release</button></span>`
        : null}
    </td>
    <td class="fe-stage-status"><${StageStatus} bus=${bus} k=${key} /></td>
  </tr>`;
}

function StageStatus({ bus, k }) {
  // the latest of the stage's own status (pause/resume/release) and its workers field
  const a = bus.get(k), b = bus.get(k + ":workers");
  const pick = !a ? b : !b ? a : a.id > b.id ? a : b;
  if (!pick) return null;
  return html`<${Ack} bus=${{ get: () => pick }} k="x" />`;
}

function Flow({ m, ctx }) {
  const stages = m.snapshot.stages;
  if (!stages.length) return null;
  const W = 150, G = 34, H = 62;
  const width = stages.length * W + (stages.length - 1) * G + 8;
  return html`<svg class="fe-flow" viewBox=${`0 0 ${width} ${H + 8}`} width=${width} height=${H + 8} role="img" aria-label="pipeline flow">
    <defs><marker id="fe-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
      <path d="M 0 0 L 10 5 L 0 10 z" class="fe-flow-arrowhead" /></marker></defs>
    ${stages.map((st, i) => {
      const x = 4 + i * (W + G);
      const color = ctx.colors[st.name];
      const busyFrac = st.workers ? Math.min(1, st.busy / st.workers) : 0;
      return html`<g class=${"fe-flow-stage" + (st.paused ? " fe-flow-paused" : "")}>
        <rect x=${x} y="4" width=${W} height=${H} rx="6" class="fe-flow-box" style=${{ stroke: color }} />
        <rect x=${x} y=${4 + H - 5} width=${W * busyFrac} height="5" rx="2" style=${{ fill: color, opacity: 0.8 }} />
        <text x=${x + 10} y="22" class="fe-flow-name">${st.name}${st.paused ? " (paused)" : ""}</text>
        <text x=${x + 10} y="40" class="fe-flow-num">queue ${num(st.queued)}</text>
        <text x=${x + 10} y="55" class="fe-flow-num">busy ${num(st.busy)}/${num(st.workers)}${st.requests ? " · req " + st.requests : ""}</text>
        ${i < stages.length - 1 ? html`<line x1=${x + W + 2} y1=${4 + H / 2} x2=${x + W + G - 3} y2=${4 + H / 2} class="fe-flow-edge" marker-end="url(#fe-arrow)" />` : null}
      </g>`;
    })}
  </svg>`;
}

export function PipelineTab({ m, ctx }) {
  const s = m.snapshot;
  const ts = m.series.t, cols = m.series.cols;
  const last = ts.length - 1;
  const names = s.stages.map((x) => x.name);
  const charts = useMemo(() => {
    const xs = ts.map((t) => t / 60);
    return {
      xs,
      queued: names.map((n) => cols["queued:" + n] || new Array(ts.length).fill(null)),
      rates: names.map((n) => rateSeries(ts, cols["done:" + n])),
      best: cols.best || new Array(ts.length).fill(null),
    };
  }, [ts.length, ts[last], names.join()]);
  const lines = names.map((n) => ({ label: n, color: ctx.colors[n] }));
  return html`<div class="fe-pipeline">
    <div class="fe-flow-wrap"><${Flow} m=${m} ctx=${ctx} /></div>
    <div class="fe-run-controls">
      <span class="fe-kv">depth <b>${num(s.depth)}</b></span>
      <span class="fe-kv">steps in flight <b>${num(s.steps_in_flight)}</b></span>
      <span class="fe-kv">requests in flight <b>${num(s.requests_in_flight)}</b></span>
      ${ctx.live
        ? html`<span class="fe-all">
            <button class="fe-btn fe-pause-all" disabled=${!ctx.controls} onClick=${() => ctx.bus.send("pause", { stage: null }, "all")}>pause all</button>
            <button class="fe-btn fe-resume-all" disabled=${!ctx.controls} onClick=${() => ctx.bus.send("resume", { stage: null }, "all")}>resume all</button>
            <${Ack} bus=${ctx.bus} k="all" /></span>`
        : null}
    </div>
    <table class="fe-table fe-stages">
      <thead><tr><th>stage</th><th class="fe-numcell">queued</th><th class="fe-numcell">busy/workers</th><th class="fe-numcell">requests</th>
        <th class="fe-numcell">processed</th><th class="fe-numcell" title=${`items finished per minute over the last ${RATE_WINDOW / 60} minutes of the run clock ("–" until the run is that old)`}>items/min</th><th class="fe-numcell">failed</th><th>controls</th><th>status</th></tr></thead>
      <tbody>${s.stages.map((st) => html`<${StageRow} st=${st} m=${m} ctx=${ctx} rate=${rateOver(ts, cols["done:" + st.name], last)} />`)}</tbody>
    </table>
    <div class="fe-charts">
      <${Chart} title="queue depth" lines=${lines} data=${[charts.xs, ...charts.queued]} height=${170} xLabel="run clock (min)" stepped=${true} />
      <${Chart} title=${`items / min (over ${RATE_WINDOW / 60} min)`} lines=${lines} data=${[charts.xs, ...charts.rates]} height=${170} xLabel="run clock (min)" />
    </div>
    <div class="fe-charts fe-charts-one">
      <${Chart} title="best score" lines=${[{ label: "best", color: "#e15759" }]} data=${[charts.xs, charts.best]} height=${150} xLabel="run clock (min)" stepped=${true} />
    </div>
    <div class="fe-hint">drag on a chart to zoom, double-click to reset</div>
  </div>`;
}
