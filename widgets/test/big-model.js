// A synthetic run with many artifacts (the lineage's speed and label tests, and the dev page).
import { readFileSync } from "node:fs";

const fixture = () => JSON.parse(readFileSync(new URL("./fixtures/model.json", import.meta.url), "utf8"));

/** A run with `n` artifacts: a random tree (fixed seed), some merges, people's submissions, stale ones. */
export function bigModel(n = 500) {
  const m = fixture();
  let s = 12345;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  const arts = {}, pool = [];
  for (let i = 0; i < n; i++) {
    const id = "a" + i;
    const parents = i === 0 ? [] : [("a" + Math.floor(i * (0.55 + 0.45 * rnd()) * rnd() ** 0.3))];
    if (i > 10 && rnd() < 0.04) parents.push("a" + Math.floor(rnd() * i));
    const origin = i === 0 ? "seed" : parents.length > 1 ? "merge" : rnd() < 0.03 ? "human" : "proposal";
    arts[id] = { id, parents: [...new Set(parents)].filter((p) => p !== id), origin, base_version: 0, created_at: i * 3, step: i, note: "", components: { system: "text " + i }, feedback: [] };
    if (rnd() < 0.85 || i === 0) pool.push({ id, version: pool.length, t: i * 3, step: i, score: Math.round(rnd() * 1000) / 1000, scores: [], state: "admitted", best_at_admit: false });
  }
  m.artifacts = arts;
  m.pool = pool;
  // the proposals that never entered the pool come from staleness decisions
  m.stories = Object.keys(arts).filter((id) => !pool.some((r) => r.id === id) && arts[id].origin !== "human")
    .map((id, k) => ({ key: k, t: arts[id].created_at, step: k, stale_id: id, parent_id: arts[id].parents[0] || "", since_ids: [], best_id: "", replacement_id: "", decision: "discard", policy: "reflective", outcome: { status: "discarded" } }));
  const best = pool.reduce((a, b) => (b.score > a.score ? b : a));
  m.snapshot.pool = { version: pool.length, size: pool.length, best_id: best.id, best_score: best.score, front_ids: [] };
  return m;
}
