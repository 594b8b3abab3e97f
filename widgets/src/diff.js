// Line diff (LCS) with word-level marks on changed line pairs.

function lcsOps(a, b, eq = (x, y) => x === y) {
  const n = a.length, m = b.length;
  // trim common prefix/suffix
  let pre = 0;
  while (pre < n && pre < m && eq(a[pre], b[pre])) pre++;
  let suf = 0;
  while (suf < n - pre && suf < m - pre && eq(a[n - 1 - suf], b[m - 1 - suf])) suf++;
  const A = a.slice(pre, n - suf), B = b.slice(pre, m - suf);
  const ops = [];
  for (let i = 0; i < pre; i++) ops.push(["=", a[i], b[i]]);
  const N = A.length, M = B.length;
  if (N * M > 4e6) {
    // too large for the table: everything removed, then added
    for (const x of A) ops.push(["-", x]);
    for (const y of B) ops.push(["+", y]);
  } else {
    const w = M + 1;
    const L = new Uint32Array((N + 1) * w);
    for (let i = N - 1; i >= 0; i--)
      for (let j = M - 1; j >= 0; j--)
        L[i * w + j] = eq(A[i], B[j]) ? L[(i + 1) * w + j + 1] + 1 : Math.max(L[(i + 1) * w + j], L[i * w + j + 1]);
    let i = 0, j = 0;
    while (i < N && j < M) {
      if (eq(A[i], B[j])) { ops.push(["=", A[i], B[j]]); i++; j++; }
      else if (L[(i + 1) * w + j] >= L[i * w + j + 1]) ops.push(["-", A[i++]]);
      else ops.push(["+", B[j++]]);
    }
    while (i < N) ops.push(["-", A[i++]]);
    while (j < M) ops.push(["+", B[j++]]);
  }
  for (let k = 0; k < suf; k++) ops.push(["=", a[n - suf + k], b[m - suf + k]]);
  return ops;
}

const splitLines = (s) => (s === "" || s == null ? [] : String(s).split("\n"));
const splitWords = (s) => String(s).match(/\s+|[^\s]+/g) || [];

/**
 * Diff two texts by line. Returns [{op: "=", "-" or "+", text, parts?}], where
 * `parts` (on paired "-"/"+" lines) is [{text, changed}] for word-level marks.
 */
const cache = new Map(); // (a, b) -> rows: views re-render 4 times a second, texts never change
const CACHE_MAX = 300;

export function diffLines(a, b) {
  const key = String(a ?? "") + "\u0000" + String(b ?? "");
  const hit = cache.get(key);
  if (hit) return hit;
  const rows = computeDiff(a, b);
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value);
  cache.set(key, rows);
  return rows;
}

function computeDiff(a, b) {
  const ops = lcsOps(splitLines(a), splitLines(b));
  const out = [];
  for (let k = 0; k < ops.length; ) {
    if (ops[k][0] === "=") { out.push({ op: "=", text: ops[k][1] }); k++; continue; }
    const dels = [], adds = [];
    while (k < ops.length && ops[k][0] !== "=") {
      (ops[k][0] === "-" ? dels : adds).push(ops[k][1]);
      k++;
    }
    const pairs = Math.min(dels.length, adds.length);
    const delRows = dels.map((text) => ({ op: "-", text }));
    const addRows = adds.map((text) => ({ op: "+", text }));
    for (let p = 0; p < pairs; p++) {
      const w = wordParts(dels[p], adds[p]);
      if (w) { delRows[p].parts = w.del; addRows[p].parts = w.add; }
    }
    out.push(...delRows, ...addRows);
  }
  return out;
}

function wordParts(x, y) {
  const a = splitWords(x), b = splitWords(y);
  if (a.length * b.length > 40000) return null;
  const ops = lcsOps(a, b);
  const same = ops.filter((o) => o[0] === "=").reduce((s, o) => s + o[1].length, 0);
  if (same < 0.3 * Math.max(x.length, y.length)) return null; // mostly different: no word marks
  const del = [], add = [];
  const push = (arr, text, changed) => {
    const last = arr[arr.length - 1];
    if (last && last.changed === changed) last.text += text;
    else arr.push({ text, changed });
  };
  for (const o of ops) {
    if (o[0] === "=") { push(del, o[1], false); push(add, o[2], false); }
    else if (o[0] === "-") push(del, o[1], true);
    else push(add, o[1], true);
  }
  return { del, add };
}

/** Counts of added/removed lines. */
export function diffStats(rows) {
  let add = 0, del = 0;
  for (const r of rows) { if (r.op === "+") add++; else if (r.op === "-") del++; }
  return { add, del };
}
