"""The benchmark's outputs: JSON (everything), a Markdown table, an HTML report with plotly figures.

Tables show the median over seeds with the range, and the seed-by-seed
ratio to ``gepa`` (same server, same seed). Every text that reaches the HTML
(system names, notes, errors, the command) is escaped; the figures' labels
are escaped as well before plotly renders them.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flashevolve_nb.bench.metrics import CPU_BOUND, FIGURES, Figure, degraded, paired_ratios, spread
from flashevolve_nb.bench.runner import BenchResult, RunRecord

__all__ = [
    "clock_behind", "cpu_bound", "goals", "markdown", "render_html", "summary", "tables",
    "to_json", "write_reports",
]  # fmt: skip

_BY_KEY = {f.key: f for f in FIGURES}
_MAIN = (
    "proposals_per_min", "accepted_per_min", "sweeps_per_min", "mean_in_flight",
    "peak_in_flight", "running_util", "token_util", "tokens_per_proposal",
    "tokens_per_accepted", "wasted_share", "of_limit", "best_val", "best_test",
    "client_cpu", "server_cpu", "client_lag", "server_lag",
)  # fmt: skip
_RATIOS = ("proposals_per_min", "accepted_per_min", "sweeps_per_min", "mean_in_flight")
_CALLS = ("metric_calls", "sim_minutes", "proposals", "accepted_per_min", "best_val", "best_test")


Group = tuple[str, str, float, int | None]
"""(profile, budget kind, time scale, metric-call budget or None): one table."""


def _groups(result: BenchResult) -> list[Group]:
    seen: dict[Group, None] = {}
    for r in result.records:
        seen[(r.profile, r.budget, r.time_scale, r.call_budget)] = None
    return list(seen)


def _runs(result: BenchResult, group: Group, system: str) -> list[RunRecord]:
    return [
        r
        for r in result.records
        if (r.profile, r.budget, r.time_scale, r.call_budget, r.system) == (*group, system)
    ]


def _by_seed(runs: Iterable[RunRecord]) -> dict[int, dict[str, float]]:
    return {r.seed: r.figures for r in runs if r.figures}


def summary(result: BenchResult) -> list[dict[str, Any]]:
    """Per group and system: each figure's spread over seeds and its ratio to gepa's."""
    out = []
    for group in _groups(result):
        gepa = _by_seed(_runs(result, group, "gepa"))
        for system in result.meta["systems"]:
            runs = _runs(result, group, system)
            if not runs:
                continue
            mine = _by_seed(runs)
            errors = sorted({r.error for r in runs if r.error})
            out.append(
                {
                    "profile": group[0],
                    "budget": group[1],
                    "time_scale": group[2],
                    "call_budget": group[3],
                    "system": system,
                    "error": "; ".join(errors),
                    "figures": {
                        f.key: spread([m[f.key] for m in mine.values()]).as_dict() for f in FIGURES
                    },
                    "ratio_to_gepa": {
                        f.key: paired_ratios(mine, gepa, f.key).as_dict()
                        for f in FIGURES
                        if f.ratio
                    },
                }
            )
    return out


def _clean(x: Any) -> Any:
    """JSON without NaN (null instead), which strict parsers refuse."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def to_json(result: BenchResult) -> dict[str, Any]:
    data = {
        "schema": "flashevolve-bench/1",
        "simulated": True,
        "meta": result.meta,
        "runs": [asdict(r) for r in result.records],
        "summary": summary(result),
        "goals": goals(result),
    }
    cleaned: dict[str, Any] = _clean(data)
    return cleaned


def _fmt(value: float, fmt: str) -> str:
    if math.isnan(value):
        return "n/a"
    return format(value, fmt)


def _cell(s: dict[str, float], fig: Figure, show_range: bool) -> str:
    text = _fmt(s["median"], fig.fmt)
    if show_range and s["n"] and s["n"] > 1 and s["min"] != s["max"]:
        text += f" ({_fmt(s['min'], fig.fmt)}–{_fmt(s['max'], fig.fmt)})"
    return text


def _ratio_cell(s: dict[str, float]) -> str:
    return "n/a" if s["n"] == 0 or math.isnan(s["median"]) else f"{s['median']:.2f}x"


def tables(result: BenchResult) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) per group: the Markdown and HTML tables' content."""
    rows_by_group: dict[Group, list[dict[str, Any]]] = {}
    for row in summary(result):
        key = (row["profile"], row["budget"], row["time_scale"], row["call_budget"])
        rows_by_group.setdefault(key, []).append(row)
    out = []
    for (profile, budget, scale, calls), rows in rows_by_group.items():
        keys = _MAIN if budget == "time" else _CALLS
        header = ["system"]
        for k in keys:
            header.append(_BY_KEY[k].label)
            if k in _RATIOS and budget == "time":
                header.append("×gepa")
        body = []
        for row in rows:
            if row["error"]:
                body.append([row["system"], f"not run: {row['error']}"] + [""] * (len(header) - 2))
                continue
            cells = [row["system"]]
            for k in keys:
                cells.append(_cell(row["figures"][k], _BY_KEY[k], show_range=True))
                if k in _RATIOS and budget == "time":
                    cells.append(_ratio_cell(row["ratio_to_gepa"][k]))
            body.append(cells)
        if budget == "time":
            title = (f"{profile} profile, equal simulated time ({result.meta['minutes']:g} "
                     f"simulated minutes), time scale {scale:g}x")  # fmt: skip
        else:
            title = f"{profile} profile, equal metric calls ({calls}), time scale {scale:g}x"
        out.append((title, header, body))
    return out


def goals(result: BenchResult) -> list[dict[str, Any]]:
    """The issue's goals, each with the measured value (compared by people, never asserted)."""
    by = {(r["profile"], r["budget"], r["time_scale"], r["call_budget"], r["system"]): r
          for r in summary(result)}  # fmt: skip
    out: list[dict[str, Any]] = []

    def add(text: str, value: float, goal: float, unit: str = "x") -> None:
        ok = None if math.isnan(value) else value >= goal
        out.append({"goal": text, "measured": value, "target": goal, "unit": unit, "met": ok,
                    "degraded": _degraded_runs(result, group)})  # fmt: skip

    for scale in result.meta["time_scales"]:
        for profile in result.meta["profiles"]:
            group: Group = (profile, "time", scale, None)
            row = by.get((*group, "flash"))
            if row is None:
                continue
            r, f = row["ratio_to_gepa"], row["figures"]
            tag = f"{profile} @ {scale:g}x"
            if profile == "vllm":
                add(f"{tag}: flash proposals/min vs gepa >= 5x",
                    r["proposals_per_min"]["median"], 5.0)  # fmt: skip
                add(f"{tag}: flash accepted/min vs gepa >= 5x",
                    r["accepted_per_min"]["median"], 5.0)  # fmt: skip
                add(f"{tag}: flash tokens/s / capacity >= 85%",
                    f["token_util"]["median"], 0.85, "")  # fmt: skip
                add(f"{tag}: flash proposals/min vs gepa past the paper's 3.5x",
                    r["proposals_per_min"]["median"], 3.5)  # fmt: skip
            else:
                add(f"{tag}: flash proposals/min vs gepa >= 7x",
                    r["proposals_per_min"]["median"], 7.0)  # fmt: skip
                add(f"{tag}: flash proposals/min vs gepa past the paper's 4.9x",
                    r["proposals_per_min"]["median"], 4.9)  # fmt: skip
            add(f"{tag}: flash best val at equal time vs gepa >= 1x",
                r["best_val"]["median"], 1.0)  # fmt: skip
            # A time scale is honest only while the client keeps up: its CPU, and the
            # ratio against the first scale's (the same run on a slower clock).
            cpu = f["client_cpu"]["max"]
            if cpu is not None and not math.isnan(cpu):
                out.append({"goal": f"{tag}: flash client CPU < 70%", "measured": cpu,
                            "target": 0.70, "unit": "", "met": cpu < 0.70,
                            "degraded": []})  # fmt: skip
            first = result.meta["time_scales"][0]
            base_row = by.get((profile, "time", first, None, "flash"))
            if scale != first and base_row is not None:
                here = r["proposals_per_min"]["median"]
                there = base_row["ratio_to_gepa"]["proposals_per_min"]["median"]
                share = here / there if there and not math.isnan(there) else math.nan
                out.append({
                    "goal": f"{tag}: flash/gepa proposals/min within 20% of {first:g}x's "
                            "(share of it)",
                    "measured": share, "target": 0.8, "unit": "",
                    "met": None if math.isnan(share) else abs(share - 1) <= 0.2,
                    "degraded": _degraded_runs(result, group),
                })  # fmt: skip
    for group in _groups(result):
        profile, kind, _, calls = group
        gepa = by.get((*group, "gepa"))
        if kind != "calls" or gepa is None:
            continue
        base = gepa["figures"]["best_val"]
        for system, target, want in (
            ("flash", base["median"], "median best val >= gepa's median"),
            # sync runs gepa's algorithm on other random draws: inside gepa's own
            # seed-to-seed range is what "the same" can mean over a few seeds
            ("sync", base["min"], "median best val within gepa's seed range "
                                  f"({_fmt(base['min'], '.3f')}-{_fmt(base['max'], '.3f')})"),
        ):  # fmt: skip
            row = by.get((*group, system))
            if row is None:
                continue
            value = row["figures"]["best_val"]["median"]
            ok = None if math.isnan(value) or math.isnan(target) else value >= target
            if system == "sync" and ok:
                ok = value <= base["max"]
            out.append({
                "goal": f"{profile} @ {calls} metric calls: {system} {want}",
                "measured": value, "target": target, "unit": "score", "met": ok,
                "degraded": _degraded_runs(result, group, (system, "gepa")),
            })  # fmt: skip
    return out


def _degraded_runs(
    result: BenchResult, group: Group, systems: Sequence[str] = ("flash", "gepa")
) -> list[str]:
    """The runs of ``systems`` a goal of ``group`` rests on whose figures are degraded."""
    return [
        f"{r.system} seed {r.seed}"
        for system in systems
        for r in _runs(result, group, system)
        if r.figures and degraded(r.figures)
    ]


def clock_behind(result: BenchResult) -> list[str]:
    """Runs whose real clock fell behind the simulated one (client's or server's loop)."""
    lines = []
    for r in result.records:
        lag = [why for why in degraded(r.figures) if "fell behind" in why]
        if lag:
            lines.append(
                f"- {r.profile} {r.budget} {r.time_scale:g}x seed {r.seed} {r.system}: "
                f"{'; '.join(lag)}, so every simulated latency stretched and its figures "
                "are degraded; use a lower scale"
            )
    return lines


def cpu_bound(result: BenchResult) -> list[str]:
    """Runs whose client or server process was the bottleneck (busy >= CPU_BOUND)."""
    lines = []
    for row in summary(result):
        f = row["figures"]
        for key, who in (("client_cpu", "client"), ("server_cpu", "server")):
            value = f[key]["max"]
            if value is not None and not math.isnan(value) and value >= CPU_BOUND:
                lines.append(
                    f"- {row['profile']} {row['budget']} {row['time_scale']:g}x {row['system']}: "
                    f"the {who} process was busy {value:.0%} of real time, so this run measured "
                    "the machine at that time scale, not the scheduling; use a lower scale"
                )
    return lines


def _goal_lines(result: BenchResult) -> list[str]:
    lines = []
    for g in goals(result):
        mark = {True: "met", False: "NOT met", None: "n/a"}[g["met"]]
        value = g["measured"]
        if math.isnan(value):
            shown = "n/a"
        elif g["unit"] == "x":
            shown = f"{value:.2f}x"
        elif g["unit"] == "score":
            shown = f"{value:.3f}"
        else:
            shown = f"{value:.0%}"
        rests = g.get("degraded") or []
        tail = (f"; rests on degraded runs (clock behind or CPU-bound): {', '.join(rests)}"
                if rests else "")  # fmt: skip
        lines.append(f"- {g['goal']}: {shown} ({mark}{tail})")
    return lines


def _meta_lines(meta: dict[str, Any]) -> list[str]:
    v = meta["versions"]
    return [
        f"- command: `{meta['command']}`",
        f"- simulated servers (profiles {', '.join(meta['profiles'])}), time scales "
        f"{', '.join(f'{s:g}x' for s in meta['time_scales'])} (simulated seconds per real "
        f"second), {meta['minutes']:g} simulated minutes per run, seeds "
        f"{', '.join(map(str, meta['seeds']))}",
        f"- versions: flashevolve_nb {v['flashevolve_nb']}, gepa {v['gepa']}, openai "
        f"{v['openai']}, turbo-gepa {v['turbo-gepa']}; Python {meta['python']}",
        f"- machine: {meta['platform']}, {meta['cpus']} CPUs; load average at start "
        f"{meta['loadavg_start'][0]:.2f}, at end {meta['loadavg_end'][0]:.2f}, highest "
        f"after a run {meta.get('loadavg_max', float('nan')):.2f}; "
        f"{meta['wall_seconds']:.0f} s in all",
    ]


def markdown(result: BenchResult) -> str:
    lines = ["# flashevolve bench (simulated)", "", *_meta_lines(result.meta), ""]
    for title, header, body in tables(result):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]  # fmt: skip
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
        lines.append("")
    lines += ["## Goals (printed, never asserted)", "", *_goal_lines(result), ""]
    bound = cpu_bound(result)
    if bound:
        lines += ["## CPU-bound runs", "", *bound, ""]
    behind = clock_behind(result)
    if behind:
        lines += ["## Runs whose clock fell behind", "", *behind, ""]
    return "\n".join(lines)


def _figure_html(fig: Any, first: bool) -> str:
    out: str = fig.to_html(full_html=False, include_plotlyjs=first)
    return out


def _figures(result: BenchResult) -> list[tuple[str, Any]]:
    import plotly.graph_objects as go

    out: list[tuple[str, Any]] = []
    scale = result.meta["time_scales"][0]
    seed = result.meta["seeds"][0]
    for profile in result.meta["profiles"]:
        runs = [r for r in result.records if (r.profile, r.budget, r.time_scale, r.seed)
                == (profile, "time", scale, seed) and r.figures]  # fmt: skip
        score = go.Figure()
        inflight = go.Figure()
        for r in runs:
            name = html.escape(r.system)
            xs = [0.0] + [t / 60 for t, _ in r.curve] + [r.figures["sim_minutes"]]
            ys = [r.curve[0][1] if r.curve else math.nan] + [s for _, s in r.curve]
            ys.append(ys[-1])
            score.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line_shape="hv", name=name))
            inflight.add_trace(go.Scatter(x=[t / 60 for t, _, _ in r.series],
                                          y=[n for _, n, _ in r.series], mode="lines",
                                          name=name))  # fmt: skip
        score.update_layout(title=f"{profile}: best validation score over simulated time "
                            f"(seed {seed}, {scale:g}x)", xaxis_title="simulated minutes",
                            yaxis_title="best val score")  # fmt: skip
        inflight.update_layout(title=f"{profile}: requests in flight at the server "
                               f"(seed {seed}, {scale:g}x)", xaxis_title="simulated minutes",
                               yaxis_title="in flight")  # fmt: skip
        out += [(f"score-{profile}", score), (f"inflight-{profile}", inflight)]
    bars = go.Figure()
    rows = [r for r in summary(result) if r["budget"] == "time" and r["time_scale"] == scale
            and not r["error"]]  # fmt: skip
    for key in ("proposals_per_min", "accepted_per_min"):
        bars.add_trace(go.Bar(
            name=html.escape(_BY_KEY[key].label),
            x=[html.escape(f"{r['profile']}/{r['system']}") for r in rows],
            y=[r["figures"][key]["median"] for r in rows],
        ))  # fmt: skip
    bars.update_layout(title=f"throughput, median over seeds ({scale:g}x)", barmode="group")
    out.append(("throughput", bars))
    return out


def render_html(result: BenchResult) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>flashevolve bench (simulated)</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}</style></head><body>",
        "<h1>flashevolve bench <small>(simulated servers)</small></h1><ul>",
    ]
    parts += [f"<li>{esc(line[2:])}</li>" for line in _meta_lines(result.meta)]
    parts.append("</ul>")
    for title, header, body in tables(result):
        parts.append(f"<h2>{esc(title)}</h2><table><tr>")
        parts += [f"<th>{esc(h)}</th>" for h in header]
        parts.append("</tr>")
        for row in body:
            parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Goals (printed, never asserted)</h2><ul>")
    parts += [f"<li>{esc(line[2:])}</li>" for line in _goal_lines(result)]
    parts.append("</ul>")
    bound = cpu_bound(result)
    if bound:
        parts.append("<h2>CPU-bound runs</h2><ul>")
        parts += [f"<li>{esc(line[2:])}</li>" for line in bound]
        parts.append("</ul>")
    behind = clock_behind(result)
    if behind:
        parts.append("<h2>Runs whose clock fell behind</h2><ul>")
        parts += [f"<li>{esc(line[2:])}</li>" for line in behind]
        parts.append("</ul>")
    for i, (name, fig) in enumerate(_figures(result)):
        parts.append(f"<div id='{esc(name)}'>{_figure_html(fig, i == 0)}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(result: BenchResult, out: Path) -> Sequence[Path]:
    """``bench.json``, ``bench.md`` and ``bench.html`` in ``out`` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "bench.json", out / "bench.md", out / "bench.html"]
    paths[0].write_text(json.dumps(to_json(result), indent=1, allow_nan=False) + "\n")
    paths[1].write_text(markdown(result))
    paths[2].write_text(render_html(result))
    return paths
