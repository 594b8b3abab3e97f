import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync, mkdtempSync, rmSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setupDom } from "./dom.js";

const root = new URL("..", import.meta.url).pathname;
const staticDir = new URL("../../flashevolve_nb/ui/static/", import.meta.url).pathname;

function walk(dir) {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

test("no innerHTML / dangerouslySetInnerHTML / insertAdjacentHTML in widgets/src", () => {
  for (const f of walk(join(root, "src"))) {
    const text = readFileSync(f, "utf8");
    for (const bad of ["innerHTML", "dangerouslySetInnerHTML", "insertAdjacentHTML", "outerHTML", "document.write"]) {
      assert.ok(!text.includes(bad), `${f} uses ${bad}`);
    }
  }
});

test("the committed bundle is what the sources build to (deterministic)", () => {
  const a = mkdtempSync(join(tmpdir(), "fe-a-"));
  const b = mkdtempSync(join(tmpdir(), "fe-b-"));
  try {
    for (const d of [a, b]) execFileSync(process.execPath, ["build.mjs"], { cwd: root, env: { ...process.env, FE_OUT_DIR: d }, stdio: "pipe" });
    for (const f of ["dashboard.js", "dashboard.css"]) {
      const x = readFileSync(join(a, f)), y = readFileSync(join(b, f));
      assert.ok(x.equals(y), `${f}: two builds differ`);
      assert.ok(x.equals(readFileSync(join(staticDir, f))), `${f}: the committed file is stale: run npm run build`);
    }
  } finally {
    rmSync(a, { recursive: true, force: true });
    rmSync(b, { recursive: true, force: true });
  }
});

test("the bundle can be inlined in a report page", () => {
  const js = readFileSync(join(staticDir, "dashboard.js"), "utf8");
  assert.ok(!/<\/script/i.test(js));
  assert.ok(js.endsWith("\n"));
  assert.match(js, /export\s*\{[^}]*as renderStandalone/);
  assert.match(js, /export\s*\{[^}]*as default/);
  assert.match(js, /var renderStandalone=globalThis\.flashevolveRenderStandalone;\s*$/);
  assert.ok(js.length < 200000, `bundle too big: ${js.length}`);
  assert.ok(!readFileSync(join(staticDir, "dashboard.css"), "utf8").includes("</"));
});

test("the built bundle renders a stored run (renderStandalone)", async () => {
  setupDom();
  const mod = await import(join(staticDir, "dashboard.js"));
  const archive = JSON.parse(readFileSync(new URL("./fixtures/model.json", import.meta.url), "utf8"));
  const el = document.createElement("div");
  document.body.appendChild(el);
  mod.renderStandalone(el, archive);
  assert.ok(el.querySelector(".fe-figures"));
  assert.equal(el.querySelectorAll(".fe-stage").length, 5);
  assert.equal(el.querySelector(".fe-stop-drain"), null);
  assert.equal(typeof globalThis.flashevolveRenderStandalone, "function");
  assert.equal(typeof mod.default.render, "function");
  assert.equal(typeof mod.default.initialize, "function");
});
