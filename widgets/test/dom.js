// A jsdom document as the global DOM for the component tests.
import { JSDOM } from "jsdom";

export function setupDom() {
  const dom = new JSDOM("<!doctype html><html><body></body></html>", { pretendToBeVisual: true, url: "http://localhost/" });
  const w = dom.window;
  for (const k of ["window", "document", "Node", "HTMLElement", "Element", "Event", "CustomEvent", "KeyboardEvent", "MouseEvent", "InputEvent", "SVGElement", "getComputedStyle", "requestAnimationFrame", "cancelAnimationFrame", "navigator"]) {
    try {
      Object.defineProperty(globalThis, k, { value: k === "window" ? w : w[k], configurable: true, writable: true });
    } catch {}
  }
  globalThis.devicePixelRatio = 1;
  w.matchMedia ||= () => ({ matches: false, addListener() {}, removeListener() {}, addEventListener() {}, removeEventListener() {} });
  globalThis.matchMedia = w.matchMedia;
  globalThis.__FE_NO_CHARTS = true; // jsdom has no canvas
  return dom;
}

export const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

export function click(el) {
  el.dispatchEvent(new window.MouseEvent("click", { bubbles: true }));
}

export function typeInto(el, value) {
  el.value = value;
  el.dispatchEvent(new window.Event("input", { bubbles: true }));
}

export function change(el, value) {
  if (typeof value === "boolean") el.checked = value;
  else el.value = value;
  el.dispatchEvent(new window.Event("change", { bubbles: true }));
}
