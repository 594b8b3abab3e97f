import { html, Ack, NumberSet, Badge } from "../widgets.js";
import { clock, score } from "../format.js";

const KINDS = new Set(["speculative_admitted", "speculation_confirmed", "speculation_rolled_back"]);

export function SpeculationTab({ m, ctx }) {
  const sp = m.snapshot.speculation;
  const st = m.snapshot.stats || {};
  const disabled = !ctx.controls;
  const rows = m.pool.filter((r) => r.state && r.state !== "admitted");
  const events = m.events.filter((e) => KINDS.has(e.kind)).slice().reverse();
  const partial = sp ? sp.partial_stages || Object.keys(sp.alpha || {}) : [];
  return html`<div class="fe-speculation">
    <div class="fe-summary">
      <span class="fe-kv">speculative admissions <b>${st.speculative_admitted ?? rows.length}</b></span>
      <span class="fe-kv">confirmed <b>${st.speculation_confirmed ?? rows.filter((r) => r.state === "confirmed").length}</b></span>
      <span class="fe-kv">rolled back <b>${st.speculation_rolled_back ?? rows.filter((r) => r.state === "rolled_back").length}</b></span>
      <span class="fe-kv">open <b>${sp ? (sp.open || []).length : 0}</b></span>
      <span class="fe-kv">speculative validation <b class="fe-spec-validation">${sp && sp.validation ? "on" : "off"}</b></span>
      ${sp && sp.margin ? html`<span class="fe-kv">margin <b>${sp.margin}</b></span>` : null}
    </div>
    ${sp
      ? html`<div class="fe-card"><div class="fe-card-title">per-stage alpha (fraction of requests before release)</div>
          <table class="fe-table fe-alpha"><thead><tr><th>stage</th><th class="fe-numcell">alpha</th><th>set</th><th>status</th></tr></thead><tbody>
          ${(m.snapshot.stages || []).map((s) => {
            const isPartial = partial.includes(s.name);
            const a = (sp.alpha || {})[s.name] ?? s.alpha;
            return html`<tr class=${"fe-alpha-row fe-alpha-" + s.name}><td><span class="fe-swatch" style=${{ background: ctx.colors[s.name] }}></span>${s.name}</td>
              <td class="fe-numcell">${a == null ? "–" : Number(a).toFixed(2)}</td>
              <td>${isPartial && ctx.live ? html`<${NumberSet} bus=${ctx.bus} k=${"alpha:" + s.name} value=${a} min=${0} max=${1} step=${0.05} cls="fe-alpha-input" disabled=${disabled}
                  make=${(v) => ["alpha", { stage: s.name, alpha: Math.min(1, Math.max(0, v)) }]} />` : html`<span class="fe-muted">${isPartial ? "" : "not partial"}</span>`}</td>
              <td><${Ack} bus=${ctx.bus} k=${"alpha:" + s.name} /></td></tr>`;
          })}</tbody></table>
          ${ctx.live
            ? html`<div class="fe-toolbar"><label class="fe-switch"><input type="checkbox" class="fe-spec-toggle" checked=${!!sp.validation} disabled=${disabled || ctx.bus.isPending("specval")}
                onChange=${(e) => ctx.bus.send("speculative_validation", { on: e.currentTarget.checked }, "specval")} /> speculative validation</label>
                <${Ack} bus=${ctx.bus} k="specval" /></div>`
            : null}
        </div>`
      : html`<div class="fe-muted">speculation is off for this run</div>`}
    <div class="fe-card"><div class="fe-card-title">speculative pool entries</div>
      ${rows.length
        ? html`<table class="fe-table fe-spec-rows"><thead><tr><th>artifact</th><th>version</th><th>time</th><th class="fe-numcell">score</th><th>state</th></tr></thead><tbody>
          ${rows.map((r) => html`<tr class=${"fe-spec-row fe-state-" + r.state}><td><button class="fe-link" onClick=${() => ctx.select(r.id)}>${r.id}</button></td><td>v${r.version}</td><td>${clock(r.t)}</td>
            <td class="fe-numcell">${score(r.score)}</td><td><${Badge} text=${r.state.replace("_", " ")} cls=${"fe-badge-" + r.state} /></td></tr>`)}</tbody></table>`
        : html`<div class="fe-muted">none</div>`}
    </div>
    <div class="fe-card"><div class="fe-card-title">speculation events</div>
      ${events.length ? events.map((e) => html`<div class=${"fe-event fe-level-" + e.level}><span class="fe-ev-t">${clock(e.t)}</span><span class="fe-ev-kind">${e.kind}</span><span class="fe-ev-text">${e.text}</span></div>`) : html`<div class="fe-muted">none</div>`}
    </div>
  </div>`;
}
