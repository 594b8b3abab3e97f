// Builds ONE self-contained ESM bundle (and its CSS) for the Python package.
// Deterministic: no timestamps, no banners, pinned esbuild.
import * as esbuild from "esbuild";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";

// FE_OUT_DIR: build somewhere else (the tests compare a fresh build with the committed files)
const out = process.env.FE_OUT_DIR
  ? new URL("file://" + process.env.FE_OUT_DIR.replace(/\/?$/, "/"))
  : new URL("../flashevolve_nb/ui/static/", import.meta.url);
mkdirSync(out, { recursive: true });
const js = new URL("dashboard.js", out).pathname;
const css = new URL("dashboard.css", out).pathname;

await esbuild.build({
  entryPoints: ["src/index.js"],
  bundle: true,
  format: "esm",
  target: ["es2020"],
  minify: true,
  legalComments: "none",
  charset: "utf8",
  outfile: js,
  logLevel: "warning",
  // a top-level binding for report.html, whose inline module calls renderStandalone(...) after the bundle
  footer: { js: "var renderStandalone=globalThis.flashevolveRenderStandalone;" },
});
await esbuild.build({
  entryPoints: ["src/styles.css"],
  bundle: true,
  minify: true,
  legalComments: "none",
  charset: "utf8",
  outfile: css,
  logLevel: "warning",
});

for (const f of [js, css]) {
  const b = readFileSync(f);
  if (/<\/script/i.test(b.toString("utf8"))) throw new Error(`${f} contains "</script": it could not be inlined in a report`);
  // the bundle must end with a newline so that Python's appended call starts on its own line
  if (b[b.length - 1] !== 10) writeFileSync(f, Buffer.concat([b, Buffer.from("\n")]));
  const final = readFileSync(f);
  console.log(`${f.split("/").slice(-1)[0]}: ${final.length} bytes, ${gzipSync(final, { level: 9 }).length} gzip, sha256 ${createHash("sha256").update(final).digest("hex").slice(0, 16)}`);
}
