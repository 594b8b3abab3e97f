// Shared small components: ack status, draft-keeping inputs, diff view, text blocks.
import { h } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";
import { diffLines, diffStats } from "./diff.js";

export const html = htm.bind(h);

/** The status line of a control: "sending..." then the ack (green/red) and its warning (amber). */
export function Ack({ bus, k, onJump }) {
  const s = bus.get(k);
  if (!s) return html`<span class="fe-ack"></span>`;
  return html`<span class="fe-ack fe-ack-${s.state}" data-cmd-id=${s.id}>
    <span class="fe-ack-msg">${s.message}</span>
    ${s.warning ? html`<span class="fe-ack-warning">${s.warning}</span>` : null}
    ${s.artifact_id && onJump
      ? html`<button class="fe-link fe-jump" onClick=${() => onJump(s.artifact_id)}>show ${s.artifact_id} in lineage</button>`
      : null}
  </span>`;
}

/**
 * A value the person types is kept (even across model updates) until the ack
 * of the command that sent it arrives; then the field follows the model again.
 */
export function useDraft(bus, k, modelValue) {
  const [draft, setDraft] = useState(null);
  const [sentId, setSentId] = useState(0);
  const s = bus.get(k);
  useEffect(() => {
    if (sentId && s && s.id === sentId && s.state !== "pending") {
      setDraft(null);
      setSentId(0);
    }
  });
  return {
    value: draft !== null ? draft : modelValue,
    dirty: draft !== null,
    set: setDraft,
    sent: (id) => setSentId(id),
    pending: !!(s && s.state === "pending"),
  };
}

/** Number input + set button, sends `make(value)` -> [cmd, args]. */
export function NumberSet({ bus, k, value, min, max, step, make, disabled, cls = "", label = "set", width = "5em" }) {
  const d = useDraft(bus, k, value);
  const go = () => {
    const v = Number(d.value);
    if (Number.isNaN(v)) return;
    const [cmd, args] = make(v);
    d.set(String(d.value));
    d.sent(bus.send(cmd, args, k));
  };
  return html`<span class="fe-numset ${cls}">
    <input type="number" class="fe-num ${cls ? cls + "-input" : ""}" style=${{ width }} min=${min} max=${max} step=${step ?? 1}
      value=${d.value ?? ""} disabled=${disabled}
      onInput=${(e) => d.set(e.currentTarget.value)}
      onKeyDown=${(e) => e.key === "Enter" && !disabled && go()} />
    <button class="fe-btn fe-set ${cls ? cls + "-set" : ""}" disabled=${disabled} onClick=${go}>${label}</button>
  </span>`;
}

export function Pre({ text, cls = "" }) {
  return html`<pre class="fe-text ${cls}">${text ?? ""}</pre>`;
}

/** A line diff of two texts; all text escaped by Preact. */
export function Diff({ a, b, title, empty = "no change" }) {
  const rows = diffLines(a ?? "", b ?? "");
  const st = diffStats(rows);
  return html`<div class="fe-diff">
    ${title ? html`<div class="fe-diff-title">${title} <span class="fe-diff-stat"><span class="fe-add-n">+${st.add}</span> <span class="fe-del-n">−${st.del}</span></span></div>` : null}
    ${st.add + st.del === 0 ? html`<div class="fe-diff-empty">${empty}</div>` : null}
    <div class="fe-diff-body">
      ${rows.map(
        (r) => html`<div class=${"fe-diff-line " + (r.op === "+" ? "fe-diff-add" : r.op === "-" ? "fe-diff-del" : "fe-diff-ctx")}>
          <span class="fe-diff-sign">${r.op === "=" ? " " : r.op === "+" ? "+" : "−"}</span><span class="fe-diff-text">${r.parts
            ? r.parts.map((p) => (p.changed ? html`<mark>${p.text}</mark>` : p.text))
            : r.text}</span>
        </div>`,
      )}
    </div>
  </div>`;
}

/** Diff every component of artifact `b` against artifact `a` (a may be missing). */
export function ArtifactDiff({ a, b, title }) {
  if (!b) return html`<div class="fe-muted">(artifact not in the model)</div>`;
  const names = [...new Set([...Object.keys(b.components || {}), ...Object.keys((a && a.components) || {})])];
  return html`<div class="fe-artdiff">
    ${title ? html`<div class="fe-subtitle">${title}</div>` : null}
    ${names.map((n) => {
      const x = a ? (a.components || {})[n] ?? "" : "", y = (b.components || {})[n] ?? "";
      return a && x === y
        ? html`<div class="fe-diff-same"><span class="fe-comp-name">${n}</span> unchanged</div>`
        : html`<${Diff} title=${n} a=${x} b=${y} />`;
    })}
  </div>`;
}

/** A workload's own record of what an artifact changed (``change`` in the model): one row
 * per name, lists joined, multi-line text kept as text. Nothing when the record is empty. */
export function ChangeRecord({ change, title = "what the workload recorded" }) {
  const rows = Object.entries(change || {}).filter(([, v]) => v !== null && v !== "" &&
    !(Array.isArray(v) && v.length === 0) && !(typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0));
  if (!rows.length) return null;
  const show = (v) => Array.isArray(v) ? v.join(", ")
    : typeof v === "object" ? Object.entries(v).map(([k, x]) => k + " → " + (Array.isArray(x) ? x.join(", ") : x)).join("; ")
    : String(v);
  return html`<div class="fe-change"><div class="fe-subtitle">${title}</div>
    ${rows.map(([k, v]) => html`<div class="fe-change-row"><span class="fe-change-k">${k.replace(/_/g, " ")}</span>
      ${typeof v === "string" && v.includes("\n") ? html`<${Pre} text=${v} />` : html`<span class="fe-change-v">${show(v)}</span>`}</div>`)}
  </div>`;
}

export function Badge({ text, cls = "" }) {
  return html`<span class="fe-badge ${cls}">${text}</span>`;
}
