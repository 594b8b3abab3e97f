import { useEffect, useState } from "preact/hooks";
import { html, Ack } from "../widgets.js";
import { score } from "../format.js";

function options(m) {
  const out = [];
  const best = (m.snapshot.pool || {}).best_id;
  // the best first, then the newest
  const rows = [...m.pool].sort((a, b) => (b.id === best) - (a.id === best) || (b.version || 0) - (a.version || 0));
  for (const r of rows) if (m.artifacts[r.id]) out.push({ value: "art:" + r.id, label: `${r.id} · v${r.version} · ${score(r.score)}${r.id === best ? " · best" : ""}${r.state !== "admitted" ? " · " + r.state : ""}`, id: r.id });
  for (const st of m.snapshot.stages || [])
    for (const it of st.items || []) out.push({ value: "item:" + it.item_id, label: `queued ${it.item_id} in ${st.name}: ${it.artifact_id} (step ${it.step}${it.staleness ? ", staleness " + it.staleness : ""}${it.human ? ", person's" : ""})`, id: it.artifact_id, item: it, stage: st.name });
  return out;
}

export function EditorTab({ m, ctx }) {
  const opts = options(m);
  const pickValue = ctx.editorPick ? (ctx.editorPick.kind === "item" ? "item:" + ctx.editorPick.id : "art:" + ctx.editorPick.id) : opts.length ? opts[0].value : "";
  const pick = opts.find((o) => o.value === pickValue) || (ctx.editorPick && ctx.editorPick.kind === "art" && m.artifacts[ctx.editorPick.id] ? { value: pickValue, id: ctx.editorPick.id, label: ctx.editorPick.id } : null);
  const art = pick ? m.artifacts[pick.id] : null;
  // the texts being edited: kept while the model moves on, reset when the pick changes
  const [texts, setTexts] = useState({ pick: null, comps: {} });
  const [note, setNote] = useState("");
  useEffect(() => {
    if (pick && texts.pick !== pick.value && art) setTexts({ pick: pick.value, comps: { ...(art.components || {}) } });
  });
  const comps = texts.pick === (pick && pick.value) ? texts.comps : art ? art.components || {} : {};
  const disabled = !ctx.controls;
  const isItem = pick && pick.item;
  const changed = art && Object.keys(comps).some((k) => comps[k] !== (art.components || {})[k]);
  const send = (cmd, args) => ctx.bus.send(cmd, args, "editor");
  return html`<div class="fe-editor">
    <div class="fe-toolbar">
      <label>artifact <select class="fe-editor-pick" value=${pickValue}
        onChange=${(e) => { const v = e.currentTarget.value; const [kind, ...rest] = v.split(":"); ctx.setEditorPick({ kind, id: rest.join(":") }); }}>
        ${opts.map((o) => html`<option value=${o.value}>${o.label}</option>`)}
      </select></label>
      ${art ? html`<button class="fe-link" onClick=${() => ctx.select(art.id)}>show ${art.id} in lineage</button>` : null}
      ${changed ? html`<span class="fe-badge fe-badge-warn">edited</span>` : null}
    </div>
    ${!ctx.live ? html`<div class="fe-muted">read-only: this run is not live</div>` : null}
    ${art
      ? Object.keys(comps).map((k) => html`<div class="fe-comp"><div class="fe-comp-name">${k}</div>
          <textarea class="fe-editor-text" data-component=${k} rows=${Math.min(24, Math.max(4, String(comps[k] ?? "").split("\n").length + 1))}
            spellcheck="false" value=${comps[k] ?? ""}
            onInput=${(e) => setTexts({ pick: pick.value, comps: { ...comps, [k]: e.currentTarget.value } })}></textarea></div>`)
      : html`<div class="fe-muted">nothing to edit yet</div>`}
    <div class="fe-toolbar">
      <input type="text" class="fe-editor-note" placeholder="note (why this edit)" value=${note} onInput=${(e) => setNote(e.currentTarget.value)} />
      <button class="fe-btn fe-btn-primary fe-submit" disabled=${disabled || !art}
        title="enters the pipeline as a person's proposal with this artifact as parent"
        onClick=${() => send("submit", { components: { ...comps }, parent: art.id, note })}>submit as a person's proposal</button>
      <button class="fe-btn fe-replace" disabled=${disabled || !isItem} title="replace the queued item's artifact with this text"
        onClick=${() => send("replace", { item_id: pick.item.item_id, components: { ...comps }, note })}>replace queued item</button>
      <button class="fe-btn fe-btn-danger fe-drop" disabled=${disabled || !isItem} title="drop the queued item"
        onClick=${() => send("drop", { item_id: pick.item.item_id })}>drop</button>
      ${art && changed ? html`<button class="fe-btn fe-revert" onClick=${() => setTexts({ pick: pick.value, comps: { ...(art.components || {}) } })}>revert</button>` : null}
    </div>
    <div class="fe-editor-status"><${Ack} bus=${ctx.bus} k="editor" onJump=${(id) => ctx.select(id)} /></div>
  </div>`;
}
