import { html, Ack, NumberSet, useDraft } from "../widgets.js";
import { clock, num } from "../format.js";

function KnobField({ knob, value, onChange, draftValue, disabled }) {
  const v = draftValue !== undefined ? draftValue : value;
  return html`<div class=${"fe-knob" + (draftValue !== undefined ? " fe-dirty" : "")} data-knob=${knob.name}>
    <label class="fe-knob-label" title=${knob.help || ""}>${knob.label || knob.name}</label>
    ${knob.kind === "bool"
      ? html`<input type="checkbox" class="fe-knob-input" checked=${!!v} disabled=${disabled} onChange=${(e) => onChange(e.currentTarget.checked)} />`
      : html`<input type="number" class="fe-knob-input fe-num" min=${knob.min} max=${knob.max} step=${knob.step ?? (knob.kind === "int" ? 1 : "any")}
          value=${v ?? ""} disabled=${disabled} onInput=${(e) => onChange(e.currentTarget.value)} />`}
    <span class="fe-knob-unit">${knob.unit || ""}</span>
    <span class="fe-knob-help">${knob.help || ""}${knob.min !== undefined && knob.kind !== "bool" ? ` (${knob.min}–${knob.max})` : ""}</span>
  </div>`;
}

function Knobs({ m, ctx }) {
  const c = m.snapshot.controller || {};
  const params = c.params || {};
  const d = useDraft(ctx.bus, "tune", null);
  const draft = d.value || {};
  const disabled = !ctx.controls;
  const knobs = m.meta.knobs || [];
  const send = () => {
    const changes = {};
    for (const k of knobs) if (draft[k.name] !== undefined) {
      const raw = draft[k.name];
      changes[k.name] = k.kind === "bool" ? !!raw : k.kind === "int" ? Math.round(Number(raw)) : Number(raw);
    }
    if (Object.keys(changes).length) d.sent(ctx.bus.send("tune", { changes }, "tune"));
  };
  return html`<div class="fe-knobs">
    ${knobs.map((k) => html`<${KnobField} knob=${k} value=${params[k.name]} draftValue=${draft[k.name]} disabled=${disabled}
        onChange=${(v) => d.set({ ...draft, [k.name]: v })} />`)}
    <div class="fe-toolbar">
      <button class="fe-btn fe-btn-primary fe-tune" disabled=${disabled || !d.dirty} onClick=${send}>apply changes</button>
      ${d.dirty && !d.pending ? html`<button class="fe-btn fe-tune-reset" onClick=${() => d.set(null)}>discard</button>` : null}
      <${Ack} bus=${ctx.bus} k="tune" />
    </div>
  </div>`;
}

function PolicyControl({ m, ctx }) {
  const s = m.snapshot;
  const pol = useDraft(ctx.bus, "policy", null);
  const cur = pol.value || { name: s.policy, delta_max: (s.policy_params || {}).delta_max ?? 3 };
  const disabled = !ctx.controls;
  const set = (patch) => pol.set({ ...cur, ...patch });
  const go = () => {
    const params = cur.name === "guarded" ? { delta_max: Math.round(Number(cur.delta_max)) } : {};
    pol.set({ ...cur });
    pol.sent(ctx.bus.send("policy", { name: cur.name, params }, "policy"));
  };
  return html`<div class="fe-policy">
    <label>staleness policy <select class="fe-policy-select" value=${cur.name} disabled=${disabled} onChange=${(e) => set({ name: e.currentTarget.value })}>
      ${(m.meta.policies || []).map((p) => html`<option value=${p}>${p}</option>`)}</select></label>
    ${cur.name === "guarded"
      ? html`<label>Δmax <input type="number" class="fe-num fe-delta-max" min="0" step="1" style=${{ width: "4em" }} value=${cur.delta_max} disabled=${disabled}
          onInput=${(e) => set({ delta_max: e.currentTarget.value })} /></label>`
      : null}
    <button class="fe-btn fe-policy-set" disabled=${disabled} onClick=${go}>set policy</button>
    <${Ack} bus=${ctx.bus} k="policy" />
  </div>`;
}

export function ControllerTab({ m, ctx }) {
  const c = m.snapshot.controller;
  const disabled = !ctx.controls;
  const actions = m.events.filter((e) => e.kind === "controller_action" || e.kind.startsWith("controller")).slice(-200).reverse();
  return html`<div class="fe-controller">
    <div class="fe-card">
      <div class="fe-card-title">adaptive controller</div>
      ${c
        ? html`<div class="fe-toolbar">
            <label class="fe-switch"><input type="checkbox" class="fe-controller-enabled" checked=${!!c.enabled} disabled=${disabled || ctx.bus.isPending("controller")}
              onChange=${(e) => ctx.bus.send("controller", { enabled: e.currentTarget.checked }, "controller")} /> enabled</label>
            <${Ack} bus=${ctx.bus} k="controller" />
            <span class="fe-kv">decisions <b>${num(c.decisions)}</b></span>
            <span class="fe-kv">actions <b>${num(c.actions)}</b></span>
          </div>
          <${Knobs} m=${m} ctx=${ctx} />`
        : html`<div class="fe-muted">this run has no controller</div>`}
    </div>
    <div class="fe-card">
      <div class="fe-card-title">pipeline</div>
      <div class="fe-toolbar"><label>depth (steps in flight at most)</label>
        <${NumberSet} bus=${ctx.bus} k="depth" value=${m.snapshot.depth} min=${1} max=${1024} cls="fe-depth" disabled=${disabled} make=${(n) => ["depth", { n: Math.round(n) }]} />
        <${Ack} bus=${ctx.bus} k="depth" /></div>
      <${PolicyControl} m=${m} ctx=${ctx} />
    </div>
    ${c && (c.moves || []).length
      ? html`<div class="fe-card"><div class="fe-card-title">last moves</div>
        <table class="fe-table fe-moves"><thead><tr><th>action</th><th>stage</th><th class="fe-numcell">before</th><th class="fe-numcell">after</th><th>reason</th></tr></thead>
        <tbody>${c.moves.slice().reverse().map((mv) => html`<tr class="fe-move"><td>${mv.action}</td><td>${mv.stage || "–"}</td><td class="fe-numcell">${num(mv.before)}</td><td class="fe-numcell">${num(mv.after)}</td><td>${mv.reason}</td></tr>`)}</tbody></table></div>`
      : null}
    <div class="fe-card"><div class="fe-card-title">controller actions (event log)</div>
      ${actions.length ? actions.map((e) => html`<div class="fe-event fe-level-${e.level}"><span class="fe-ev-t">${clock(e.t)}</span><span class="fe-ev-stage">${e.stage}</span><span class="fe-ev-text">${e.text}</span></div>`) : html`<div class="fe-muted">none yet</div>`}
    </div>
  </div>`;
}
