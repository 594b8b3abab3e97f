import { html, ArtifactDiff, Badge, ChangeRecord, Pre } from "../widgets.js";
import { DECISION_CLASS, clock, score } from "../format.js";

const OUTCOME_CLASS = { admitted: "fe-out-ok", pending: "fe-out-pending", gated_out: "fe-out-bad", discarded: "fe-out-bad", failed: "fe-out-bad", cancelled: "fe-out-bad" };

function Outcome({ o }) {
  if (!o) return html`<span class="fe-muted">–</span>`;
  return html`<span class=${"fe-outcome " + (OUTCOME_CLASS[o.status] || "")}>${o.status}${o.status === "admitted" && o.score != null ? " " + score(o.score) : ""}${o.is_best ? " ★ best" : ""}</span>`;
}

function Artlink({ id, ctx }) {
  if (!id) return html`<span class="fe-muted">–</span>`;
  return html`<button class="fe-link" onClick=${(e) => { e.stopPropagation(); ctx.select(id); }}>${id}</button>`;
}

function StoryDetail({ m, ctx, s }) {
  const A = m.artifacts;
  const stale = A[s.stale_id];
  const parentId = s.parent_id || (stale && (stale.parents || [])[0]);
  const o = s.outcome || {};
  return html`<div class="fe-story-detail">
    <div class="fe-detail-head">
      <span class="fe-detail-id">step ${s.step} · ${s.item_id}</span>
      <span class="fe-kv">at ${clock(s.t)} · ${s.point}</span>
      <span class="fe-kv">staleness <b>${s.staleness}</b> (base v${s.base_version} → pool v${s.pool_version})</span>
    </div>
    <ol class="fe-teach">
      <li class="fe-teach-a">
        <div class="fe-teach-title">a. the proposal's base: v${s.base_version} (its parent <${Artlink} id=${parentId} ctx=${ctx} />); admitted since then:</div>
        ${(s.since_ids || []).length
          ? (s.since_ids || []).map((id) => {
              const a = A[id];
              const p = a && (a.parents || [])[0];
              return html`<details class="fe-since" open=${(s.since_ids || []).length <= 3}>
                <summary><${Artlink} id=${id} ctx=${ctx} /> ${a ? a.origin : ""} ${a && a.note ? "· " + a.note : ""}</summary>
                <${ArtifactDiff} a=${p ? A[p] : null} b=${a} title=${p ? id + " against its parent " + p : id} />
              </details>`;
            })
          : html`<div class="fe-muted">nothing</div>`}
      </li>
      <li class="fe-teach-b">
        <div class="fe-teach-title">b. the stale proposal <${Artlink} id=${s.stale_id} ctx=${ctx} /> against its parent</div>
        <${ArtifactDiff} a=${A[parentId]} b=${stale} />
        <${ChangeRecord} change=${stale && stale.change} title="what the proposal changed" />
      </li>
      <li class="fe-teach-c">
        <div class="fe-teach-title">c. the decision: <span class=${"fe-decision " + (DECISION_CLASS[s.decision] || "")}>${s.decision}</span> by the ${s.policy} policy</div>
        <div class="fe-reason">${s.reason || ""}</div>
        ${s.request || s.answer
          ? html`<details class="fe-llm"><summary>LLM request and answer${s.tokens ? ` (${s.tokens} tokens)` : ""}</summary>
              <div class="fe-subtitle">request</div><${Pre} text=${s.request} />
              <div class="fe-subtitle">answer</div><${Pre} text=${s.answer} /></details>`
          : null}
      </li>
      <li class="fe-teach-d">
        <div class="fe-teach-title">d. the repair ${s.replacement_id ? html`<${Artlink} id=${s.replacement_id} ctx=${ctx} /> against the best at decision time <${Artlink} id=${s.best_id} ctx=${ctx} />` : ""}</div>
        ${s.replacement_id ? html`<${ArtifactDiff} a=${A[s.best_id]} b=${A[s.replacement_id]} />
          <${ChangeRecord} change=${A[s.replacement_id] && A[s.replacement_id].change} title="what the repair did" />` : html`<div class="fe-muted">no repair (${s.decision})</div>`}
      </li>
      <li class="fe-teach-e">
        <div class="fe-teach-title">e. the outcome</div>
        <div class="fe-outcome-line"><${Outcome} o=${o} />
          ${o.artifact_id ? html` · <${Artlink} id=${o.artifact_id} ctx=${ctx} />` : null}
          ${o.version != null ? ` · v${o.version}` : ""}
          ${o.text ? html` · <span>${o.text}</span>` : null}</div>
      </li>
    </ol>
  </div>`;
}

export function StalenessTab({ m, ctx }) {
  const stories = m.stories;
  const counts = {};
  for (const s of stories) counts[s.decision] = (counts[s.decision] || 0) + 1;
  const st = m.snapshot.stats || {};
  const sel = stories.find((s) => s.key === ctx.storyKey);
  return html`<div class="fe-staleness">
    <div class="fe-summary">
      <span class="fe-kv">stale items <b>${stories.length}</b></span>
      ${Object.entries(counts).map(([d, n]) => html`<span class=${"fe-kv fe-decision " + (DECISION_CLASS[d] || "")}>${d} <b>${n}</b></span>`)}
      ${st.repaired_admitted != null ? html`<span class="fe-kv">repairs admitted <b>${st.repaired_admitted}</b></span>` : null}
      ${st.repaired_best != null ? html`<span class="fe-kv">repairs that became best <b>${st.repaired_best}</b></span>` : null}
      <span class="fe-kv">policy <b>${m.snapshot.policy || "–"}</b></span>
    </div>
    ${stories.length === 0
      ? html`<div class="fe-muted fe-pick-hint">no stale proposals yet: every proposal so far was judged against the pool it was made from</div>`
      : html`<div class="fe-table-scroll"><table class="fe-table fe-stories">
      <thead><tr><th>time</th><th>step</th><th>artifact</th><th>base → pool</th><th class="fe-numcell">staleness</th><th>point</th><th>policy</th><th>decision</th><th>outcome</th></tr></thead>
      <tbody>${stories.map((s) => html`<tr class=${"fe-story" + (ctx.storyKey === s.key ? " fe-selected" : "")} data-key=${s.key} onClick=${() => ctx.setStoryKey(s.key)}>
        <td>${clock(s.t)}</td><td>${s.step}</td><td><${Artlink} id=${s.stale_id} ctx=${ctx} /></td>
        <td>v${s.base_version} → v${s.pool_version}</td><td class="fe-numcell">${s.staleness}</td><td>${s.point}</td><td>${s.policy}</td>
        <td><span class=${"fe-decision " + (DECISION_CLASS[s.decision] || "")}>${s.decision}</span></td>
        <td><${Outcome} o=${s.outcome} /></td></tr>`)}</tbody></table></div>`}
    ${sel ? html`<${StoryDetail} m=${m} ctx=${ctx} s=${sel} />` : stories.length ? html`<div class="fe-muted fe-pick-hint">select a row to see the story step by step</div>` : null}
  </div>`;
}
