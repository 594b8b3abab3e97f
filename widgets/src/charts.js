// uPlot wrapper: created once per series layout, then setData on updates
// (keeps the person's zoom while live data keeps coming).
import { h } from "preact";
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";

function chartsAvailable() {
  if (globalThis.__FE_NO_CHARTS) return false;
  try {
    return !!document.createElement("canvas").getContext("2d");
  } catch {
    return false;
  }
}

function cssVar(el, name, fallback) {
  try {
    const v = getComputedStyle(el).getPropertyValue(name).trim();
    return v || fallback;
  } catch {
    return fallback;
  }
}

/**
 * props: title, lines: [{label, color}], data: [xs, ...ys], height, yRange: [min,max]|undefined,
 * xLabel, cursorX (a vertical marker, replay)
 */
export function Chart(props) {
  const box = useRef(null);
  const plot = useRef(null);
  const zoomed = useRef(false);
  const layoutKey = props.lines.map((l) => l.label + l.color).join("|") + "|" + (props.stepped ? "s" : "");
  const ok = chartsAvailable();

  useEffect(() => {
    if (!ok || !box.current) return;
    const el = box.current;
    const axisColor = cssVar(el, "--jp-ui-font-color2", "#777");
    const gridColor = "rgba(128,128,128,0.18)";
    const width = Math.max(200, el.clientWidth || 400);
    const opts = {
      width,
      height: props.height || 180,
      legend: { live: true },
      cursor: { drag: { x: true, y: false }, points: { size: 5 } },
      scales: { x: { time: false }, y: props.yRange ? { range: props.yRange } : { auto: true } },
      axes: [
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor }, label: props.xLabel || "", labelSize: 18, font: "11px sans-serif", labelFont: "11px sans-serif" },
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor }, font: "11px sans-serif", size: 44 },
      ],
      series: [
        { label: props.xLabel || "x", value: (u, v) => (v == null ? "–" : v.toFixed(2)) },
        ...props.lines.map((l) => ({
          label: l.label, stroke: l.color, width: 1.6, points: { show: false },
          paths: props.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined,
          value: (u, v) => (v == null ? "–" : Number.isInteger(v) ? String(v) : v.toFixed(2)),
        })),
      ],
      hooks: {
        setSelect: [() => (zoomed.current = true)],
      },
    };
    const u = new uPlot(opts, props.data, el);
    u.over.addEventListener("dblclick", () => (zoomed.current = false));
    plot.current = u;
    let ro;
    if (typeof ResizeObserver !== "undefined") {
      ro = new ResizeObserver(() => {
        const w = Math.max(200, el.clientWidth);
        if (Math.abs(w - u.width) > 2) u.setSize({ width: w, height: props.height || 180 });
      });
      ro.observe(el);
    }
    return () => {
      ro && ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [layoutKey, ok]);

  useEffect(() => {
    const u = plot.current;
    if (!u) return;
    u.setData(props.data, !zoomed.current);
  });

  return h(
    "div",
    { class: "fe-chart" },
    h("div", { class: "fe-chart-title" }, props.title),
    ok ? h("div", { class: "fe-chart-plot", ref: box }) : h("div", { class: "fe-chart-off" }, "(chart)"),
  );
}
