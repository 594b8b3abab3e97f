// Small formatting helpers (plain text only).

export const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#bab0ac"];

/** One colour per stage, used by every chart, legend and the flow diagram. */
export function stageColors(names) {
  const out = {};
  names.forEach((n, i) => (out[n] = PALETTE[i % PALETTE.length]));
  return out;
}

export const ORIGIN_COLORS = { seed: "#7f7f7f", proposal: "#4e79a7", repair: "#f28e2b", merge: "#b07aa1", human: "#59a14f" };

export const DECISION_CLASS = { accept: "fe-dec-accept", patch: "fe-dec-patch", discard: "fe-dec-discard", defer: "fe-dec-defer" };

export function num(x, digits = 2) {
  if (x === null || x === undefined || x === "" || Number.isNaN(x)) return "–";
  if (typeof x !== "number") return String(x);
  return Number.isInteger(x) ? String(x) : x.toFixed(digits);
}

export function score(x) {
  return x === null || x === undefined ? "–" : typeof x === "number" ? x.toFixed(3) : String(x);
}

export function tokens(x) {
  if (x === null || x === undefined) return "–";
  if (x >= 1e6) return (x / 1e6).toFixed(2) + "M";
  if (x >= 1e4) return Math.round(x / 1e3) + "k";
  if (x >= 1e3) return (x / 1e3).toFixed(1) + "k";
  return String(x);
}

/** Run clock seconds as "m:ss". */
export function clock(t) {
  if (t === null || t === undefined || Number.isNaN(t)) return "–";
  const s = Math.max(0, Math.floor(t));
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}
