// Writes test/fixtures/model.json: a realistic dashboard model (PROTOCOL.md),
// deterministic (seeded), used by the tests and by dev.html.
// Run: node scripts/make-fixture.mjs
import { writeFileSync } from "node:fs";

let s = 12345;
const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
const r3 = (x) => Math.round(x * 1000) / 1000;

const stages = ["select", "rollout", "reflect", "gate", "validate"];
const base = [
  "You are a careful math tutor.",
  "Solve the problem step by step.",
  "Show your reasoning, then give the final answer on its own line as 'Answer: <n>'.",
  "Never skip arithmetic checks.",
];
const variants = [
  (l) => l.concat(["Double-check units before answering."]),
  (l) => l.map((x) => x.replace("step by step", "step by step, numbering each step")),
  (l) => l.concat(["If the question is ambiguous, state your assumption first."]),
  (l) => l.filter((x) => !x.startsWith("Never")).concat(["Verify every arithmetic step by recomputing it."]),
  (l) => l.concat(["Keep the answer under 120 words.", "Use <b>plain text</b> only; the grader strips markup."]),
  (l) => l.map((x) => x.replace("careful", "patient and careful")),
  (l) => l.concat(["When a word problem mentions rates, write the rate equation explicitly."]),
  (l) => ["<img src=x onerror=alert(1)> <script>alert('x')</script> (hostile text from an LLM: must show literally)"].concat(l),
];

const A = {};
const art = (id, parents, origin, bv, t, step, lines, note, fb = []) => {
  A[id] = {
    id, parents, origin, base_version: bv, created_at: t, step, note,
    components: { system: lines.join("\n"), format: "Answer: <integer>" },
    feedback: fb,
  };
  return lines;
};
const fb = (i) => [
  { input: `A train travels ${40 + i} km in 30 minutes. What is its speed in km/h?`, output: `Speed = ${40 + i} / 30 = ${r3((40 + i) / 30)}\nAnswer: ${r3((40 + i) / 30)}`, score: 0, feedback: "Wrong: the time must be converted to hours first (expected " + 2 * (40 + i) + ")." },
  { input: "Tom has 3 apples and buys 5 more. How many?", output: "3 + 5 = 8\nAnswer: 8", score: 1, feedback: "Correct." },
];

const L = {};
L.a0 = art("a0", [], "seed", 0, 0, 0, base, "seed");
L.a1 = art("a1", ["a0"], "proposal", 1, 95.2, 1, variants[0](L.a0), "reflective proposal for 'system'", fb(1));
L.a2 = art("a2", ["a1"], "proposal", 2, 190.4, 2, variants[1](L.a1), "reflective proposal for 'system'", fb(2));
L.a3 = art("a3", ["a1"], "proposal", 2, 260.0, 3, variants[2](L.a1), "reflective proposal for 'system'", fb(3));
L.a4 = art("a4", ["a2"], "proposal", 3, 350.5, 4, variants[3](L.a2), "reflective proposal for 'system'", fb(4));
L.a5 = art("a5", ["a2"], "proposal", 2, 430.1, 5, variants[4](L.a2), "stale reflective proposal for 'system'", fb(5));
L.a6 = art("a6", ["a4"], "repair", 5, 470.3, 5, variants[6](variants[4](L.a4)), "repair of a5 against pool v5 (reflective policy)");
L.a7 = art("a7", ["a3"], "proposal", 3, 520.0, 6, variants[5](L.a3), "stale reflective proposal for 'system'", fb(6));
L.a8 = art("a8", ["a6"], "human", 6, 600.0, 7, variants[7](L.a6), "edited by a person in the dashboard");
L.a9 = art("a9", ["a6", "a3"], "merge", 6, 640.0, 8, L.a6.concat(["Prefer short sentences."]), "merge of a6 and a3");
L.a10 = art("a10", ["a4"], "proposal", 4, 680.0, 9, variants[0](L.a4), "stale reflective proposal for 'system'", fb(9));
L.a11 = art("a11", ["a9"], "proposal", 7, 730.0, 10, variants[2](L.a9), "reflective proposal for 'system'", fb(10));

const inst = ["v0", "v1", "v2", "v3", "v4", "v5"];
const sc = (k) => inst.map((_, i) => ((i * 7 + k * 3) % 5 < k % 5 + 1 ? 1 : 0));
const pool = [
  { id: "a0", version: 1, t: 0, step: 0, score: 0.333, scores: [1, 0, 0, 1, 0, 0], state: "admitted", best_at_admit: true },
  { id: "a1", version: 2, t: 110.0, step: 1, score: 0.5, scores: [1, 1, 0, 1, 0, 0], state: "admitted", best_at_admit: true },
  { id: "a2", version: 3, t: 205.2, step: 2, score: 0.5, scores: [1, 0, 1, 1, 0, 0], state: "admitted", best_at_admit: false },
  { id: "a3", version: 4, t: 280.7, step: 3, score: 0.667, scores: [1, 1, 1, 1, 0, 0], state: "admitted", best_at_admit: true },
  { id: "a4", version: 5, t: 370.1, step: 4, score: 0.5, scores: [0, 1, 1, 1, 0, 0], state: "admitted", best_at_admit: false },
  { id: "a6", version: 6, t: 495.0, step: 5, score: 0.833, scores: [1, 1, 1, 1, 1, 0], state: "admitted", best_at_admit: true },
  { id: "a8", version: 7, t: 625.0, step: 7, score: 0.667, scores: [1, 1, 0, 1, 1, 0], state: "confirmed", best_at_admit: false },
  { id: "a9", version: 8, t: 660.0, step: 8, score: 0.5, scores: [1, 0, 1, 0, 1, 0], state: "rolled_back", best_at_admit: false },
  { id: "a11", version: 9, t: 760.0, step: 10, score: 0.833, scores: [1, 1, 1, 0, 1, 1], state: "speculative", best_at_admit: false },
];
void sc;

const stories = [
  { key: 41, t: 455.0, step: 5, item_id: "i5", point: "before_validation", policy: "reflective", decision: "patch",
    reason: "3 admissions since the base (v2 -> v5): a3 and a4 changed the same instructions; the proposal's new lines still help, so they are re-applied on top of the best (a4).",
    staleness: 3, base_version: 2, pool_version: 5, stale_id: "a5", parent_id: "a2", since_ids: ["a2", "a3", "a4"], best_id: "a4", replacement_id: "a6",
    request: "The proposal below was written against pool version 2. Since then these were admitted:\n- a3: ...\n- a4: ...\nRewrite the proposal so that it applies to the current best. Reply with the full text.",
    answer: "You are a careful math tutor.\nSolve the problem step by step, numbering each step.\n...\nWhen a word problem mentions rates, write the rate equation explicitly.", tokens: 812,
    outcome: { status: "admitted", artifact_id: "a6", score: 0.833, version: 6, is_best: true, text: "a6 admitted as v6 (0.833, best)" } },
  { key: 57, t: 560.0, step: 6, item_id: "i6", point: "before_gate", policy: "reflective", decision: "discard",
    reason: "The proposal only rephrases the role line, and a6 (admitted since) already contains a stronger version; nothing left to add.",
    staleness: 2, base_version: 3, pool_version: 6, stale_id: "a7", parent_id: "a3", since_ids: ["a4", "a6"], best_id: "a6", replacement_id: "",
    request: "Decide: accept, patch or discard the stale proposal a7...", answer: "discard: redundant with a6", tokens: 301,
    outcome: { status: "discarded", artifact_id: "", score: null, version: null, is_best: false, text: "a7 discarded" } },
  { key: 66, t: 700.0, step: 9, item_id: "i9", point: "before_validation", policy: "guarded", decision: "accept",
    reason: "staleness 2 <= delta_max 3: accepted as is", staleness: 2, base_version: 5, pool_version: 7, stale_id: "a10", parent_id: "a4",
    since_ids: ["a6", "a8"], best_id: "a6", replacement_id: "", request: "", answer: "", tokens: 0,
    outcome: { status: "gated_out", artifact_id: "a10", score: 0.333, version: null, is_best: false, text: "a10 failed the gate (0.333 < 0.5)" } },
];

// events
const ev = [];
let seq = 1;
const E = (t, kind, level, step, stage, ids, text) => ev.push({ seq: seq++, t: r3(t), kind, level, step, stage, ids, text });
E(0, "run_started", "info", null, "", [], "run started: workload gepa, backend simulated (vllm profile)");
E(0, "admitted", "info", 0, "", ["a0"], "a0 admitted as v1 (0.333, best)");
for (const p of pool.slice(1)) {
  const a = A[p.id];
  E(a.created_at, "proposed", "info", a.step, "reflect", [a.id, ...a.parents], `${a.id} proposed from ${a.parents.join(", ")} (${a.origin})`);
  E(p.t - 8, "gate_passed", "info", p.step, "gate", [p.id], `${p.id} passed the gate`);
  E(p.t, "admitted", "info", p.step, "", [p.id], `${p.id} admitted as v${p.version} (${p.score.toFixed(3)}${p.best_at_admit ? ", best" : ""})`);
}
for (const st of stories) E(st.t, "policy_decision", st.decision === "discard" ? "warn" : "info", st.step, "", [st.stale_id, st.replacement_id].filter(Boolean), `${st.policy}: ${st.decision} ${st.stale_id} (staleness ${st.staleness})`);
E(150, "controller_action", "info", null, "rollout", [], "controller: rollout workers 3 -> 4 (queue grew 3 intervals in a row)");
E(300, "controller_action", "info", null, "reflect", [], "controller: reflect workers 2 -> 3 (reflect is the bottleneck: 91% busy)");
E(420, "controller_action", "info", null, "", [], "controller: depth 6 -> 8 (staleness budget allows it)");
E(610, "controller_action", "info", null, "validate", [], "controller: validate alpha 1.0 -> 0.5 (validation waits dominate)");
E(580, "human_submit", "info", 7, "", ["a8", "a6"], "a person submitted a8 (parent a6)");
E(600, "paused", "warn", null, "reflect", [], "reflect paused by a person");
E(615, "resumed", "info", null, "reflect", [], "reflect resumed");
E(625, "speculative_admitted", "info", 7, "", ["a8"], "a8 admitted speculatively as v7 (partial validation 0.667)");
E(650, "speculation_confirmed", "info", 7, "", ["a8"], "a8 confirmed (full validation 0.667)");
E(660, "speculative_admitted", "info", 8, "", ["a9"], "a9 admitted speculatively as v8 (partial 0.75)");
E(690, "speculation_rolled_back", "warn", 8, "", ["a9"], "a9 rolled back (full validation 0.5 < best 0.833)");
E(760, "speculative_admitted", "info", 10, "", ["a11"], "a11 admitted speculatively as v9 (partial 0.833)");
for (let k = 0; k < 12; k++) E(40 + k * 60 + rnd() * 20, k % 4 === 3 ? "gate_failed" : "validated", k % 4 === 3 ? "warn" : "info", k, k % 4 === 3 ? "gate" : "validate", [], k % 4 === 3 ? `step ${k}: proposal failed the gate` : `step ${k}: validated on ${inst.length} instances`);
E(512, "error", "error", 6, "rollout", [], "rollout, step 6: TimeoutError: request took longer than 60 s (retried)");
E(705, "gate_failed", "warn", 9, "gate", ["a10"], "a10 failed the gate (0.333 < 0.5)");
ev.sort((x, y) => x.t - y.t || x.seq - y.seq);
ev.forEach((e, i) => (e.seq = i + 1));

// series: 200 points, 4 s apart
const T = 796;
const series = { t: [], cols: {} };
const col = (k) => (series.cols[k] ??= []);
const done = Object.fromEntries(stages.map((n) => [n, 0]));
let props = 0, acc = 0;
const bestAt = (t) => pool.filter((p) => p.t <= t && p.state !== "rolled_back").reduce((m, p) => Math.max(m, p.score), 0);
for (let i = 0; i < 200; i++) {
  const t = i * 4;
  series.t.push(t);
  stages.forEach((n, j) => {
    const w = [1, 4, 3, 2, 2][j];
    const q = Math.max(0, Math.round(2 + 2 * Math.sin(t / 60 + j) + (j === 2 && t > 600 && t < 615 ? 5 : 0) + rnd() * 2 - 1));
    const b = Math.min(w, Math.round(w * (0.5 + 0.5 * rnd())));
    done[n] += rnd() < 0.5 + 0.1 * j ? 1 : 0;
    col("queued:" + n).push(q); col("busy:" + n).push(b); col("done:" + n).push(done[n]); col("workers:" + n).push(w);
  });
  props += rnd() < 0.3 ? 1 : 0; acc = pool.filter((p) => p.t <= t).length - 1;
  col("requests").push(Math.round(8 + 4 * rnd())); col("depth").push(t < 420 ? 6 : 8);
  col("proposals").push(props); col("accepted").push(acc); col("best").push(bestAt(t));
}

const model = {
  v: 1, tick: 3190,
  meta: {
    name: "demo", workload: "gepa", backend: "simulated (vllm profile)", simulated: true, time_scale: 120.0, mode: "async", seed: 0,
    stages, instance_ids: inst, policies: ["accept", "guarded", "discard", "reflective", "meta"], live: true, replay: false,
    knobs: [
      { name: "interval", label: "decision interval", unit: "s (run clock)", help: "Simulated seconds between decisions.", kind: "float", min: 1, max: 600, step: 1 },
      { name: "max_workers", label: "max workers per stage", unit: "workers", help: "Upper bound the controller may give one stage.", kind: "int", min: 1, max: 64, step: 1 },
      { name: "staleness_budget", label: "staleness budget", unit: "versions", help: "Largest mean staleness the controller tolerates before it shrinks depth.", kind: "float", min: 0, max: 64, step: 0.5 },
      { name: "adapt_alpha", label: "adapt alpha", unit: "", help: "Let the controller move speculation alpha.", kind: "bool" },
    ],
    stage_help: { select: "picks a parent from the pool", rollout: "runs the task model on a minibatch", reflect: "asks the reflection model for a new prompt", gate: "checks the proposal on the minibatch", validate: "scores the proposal on the validation set" },
  },
  snapshot: {
    state: "running", t: T, real_seconds: 6.63, lagging: false, clock_behind: null, finish_reason: "", error: "",
    stats: { proposals: 11, accepted: 8, proposals_failed: 1, gate_passed: 9, gate_failed: 3, validations: 9, llm_calls: 412, llm_errors: 1,
      prompt_tokens: 310204, completion_tokens: 48211, tokens: 358415, seed_score: 0.333, best_score: 0.833, stale_seen: 3,
      decisions: { patch: 1, discard: 1, accept: 1 }, repaired_admitted: 1, repaired_best: 1, speculative_admitted: 3, speculation_confirmed: 1,
      speculation_rolled_back: 1, controller_actions: 4, proposals_per_min: 0.83, accepted_per_min: 0.6, minutes: 13.27 },
    depth: 8, steps_in_flight: 7, requests_in_flight: 11, policy: "reflective", policy_params: { delta_max: 3 },
    stages: stages.map((n, j) => ({
      name: n, queued: [0, 2, 3, 1, 0][j], busy: [1, 3, 2, 1, 2][j], workers: [1, 4, 3, 2, 2][j], paused: n === "gate", processed: done[n], failed: j === 1 ? 1 : 0, dropped: 0,
      requests: [0, 6, 3, 1, 1][j], held: n === "rollout", alpha: n === "validate" ? 0.5 : 1.0,
      items: n === "rollout" ? [{ item_id: "i11", step: 11, artifact_id: "a11", staleness: 0, human: false }, { item_id: "i12", step: 12, artifact_id: "a9", staleness: 1, human: false }]
        : n === "reflect" ? [{ item_id: "i13", step: 13, artifact_id: "a6", staleness: 2, human: false }, { item_id: "i14", step: 14, artifact_id: "a8", staleness: 2, human: true }] : [],
    })),
    pool: { version: 9, size: 9, best_id: "a6", best_score: 0.833, front_ids: ["a6", "a11", "a3"] },
    controller: { enabled: true, params: { interval: 30.0, max_workers: 8, staleness_budget: 4, adapt_alpha: true },
      moves: [
        { action: "workers", stage: "rollout", before: 3, after: 4, reason: "queue grew 3 intervals in a row" },
        { action: "workers", stage: "reflect", before: 2, after: 3, reason: "reflect is the bottleneck: 91% busy" },
        { action: "depth", stage: "", before: 6, after: 8, reason: "staleness budget allows it" },
        { action: "alpha", stage: "validate", before: 1.0, after: 0.5, reason: "validation waits dominate" },
      ], decisions: 26, actions: 4 },
    speculation: { alpha: { validate: 0.5 }, validation: true, margin: 0.0, open: ["a11"], partial_stages: ["validate"] },
    warnings: ["pausing 'gate' starves 'validate': nothing reaches it"],
    errors: ["rollout, step 6: TimeoutError: request took longer than 60 s (retried)"],
  },
  series, events: ev, artifacts: A, pool, stories,
};
writeFileSync(new URL("../test/fixtures/model.json", import.meta.url), JSON.stringify(model, null, 1) + "\n");
console.log("events", ev.length, "artifacts", Object.keys(A).length, "points", series.t.length);
