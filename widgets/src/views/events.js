import { useState } from "preact/hooks";
import { html } from "../widgets.js";
import { clock } from "../format.js";

const LIMIT = 400;

export function EventsTab({ m, ctx }) {
  const [newest, setNewest] = useState(true);
  const [kind, setKind] = useState("");
  const [q, setQ] = useState("");
  const kinds = [...new Set(m.events.map((e) => e.kind))].sort();
  const needle = q.trim().toLowerCase();
  let rows = m.events.filter((e) => (!kind || e.kind === kind) && (!needle || (e.ids || []).some((id) => String(id).toLowerCase() === needle) || String(e.text).toLowerCase().includes(needle)));
  const total = rows.length;
  rows = newest ? rows.slice(-LIMIT).reverse() : rows.slice(0, LIMIT);
  return html`<div class="fe-events">
    <div class="fe-toolbar">
      <button class="fe-btn fe-event-order" onClick=${() => setNewest(!newest)}>${newest ? "newest first" : "oldest first"}</button>
      <select class="fe-event-kind" value=${kind} onChange=${(e) => setKind(e.currentTarget.value)}>
        <option value="">all kinds</option>${kinds.map((k) => html`<option value=${k}>${k}</option>`)}
      </select>
      <input type="text" class="fe-event-filter" placeholder="artifact id or text" value=${q} onInput=${(e) => setQ(e.currentTarget.value)} />
      <span class="fe-muted">${total === m.events.length ? `${total} events` : `${total} of ${m.events.length} events`}${total > LIMIT ? ` (showing ${LIMIT})` : ""}</span>
    </div>
    <div class="fe-eventlist">
      ${rows.map((e) => html`<div class=${"fe-event fe-level-" + (e.level || "info")} data-seq=${e.seq}>
        <span class="fe-ev-t">${clock(e.t)}</span>
        <span class="fe-ev-kind">${e.kind}</span>
        <span class="fe-ev-stage">${e.stage || ""}</span>
        <span class="fe-ev-text">${e.text}</span>
        <span class="fe-ev-ids">${(e.ids || []).map((id) => html`<button class="fe-link" onClick=${() => ctx.select(id)}>${id}</button> `)}</span>
      </div>`)}
    </div>
  </div>`;
}
