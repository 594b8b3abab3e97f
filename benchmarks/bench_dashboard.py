"""What the live dashboard costs: comm messages/s it sends, and the run's throughput lost.

Runs the simulated GEPA demo (``flashevolve_nb.start``) to its budget several
times, alternately without and with ``run.dashboard()`` refreshing at its
default rate, at the default time scale and at one high enough that the
engine itself is CPU-bound ("full speed": any CPU the dashboard takes is
taken from the run). The page draws every view from the same model, so what
the kernel sends does not depend on the tab a person looks at: tabs are not
switched here. Also printed: how long building the dashboard takes while the
run goes on, and the size of the front-end bundle.

How messages are counted: outside a kernel, ipywidgets sends through the
``comm`` package's ``DummyComm``, which drops messages. Before any widget
exists, this script replaces ``comm.create_comm`` (the hook ipykernel itself
replaces) with a ``DummyComm`` subclass whose ``publish_msg`` counts every
message a widget would hand to the kernel (opens, state updates, custom
messages, closes) and serialises it to JSON as ipykernel's session would, so
the serialisation cost is in the measured CPU too. Jupyter Server drops iopub
messages above 1,000/s averaged over 3 s; the goal here is well under 100/s.

    python3 benchmarks/bench_dashboard.py            # about two and a half minutes
    python3 benchmarks/bench_dashboard.py --reps 1   # quicker, noisier
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import comm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class CountingComm(comm.DummyComm):  # type: ignore[misc]
    """Counts what would go to the browser (see the module docstring)."""

    lock: ClassVar[threading.Lock] = threading.Lock()
    times: ClassVar[list[float]] = []
    labels: ClassVar[Counter[str]] = Counter()
    label: ClassVar[str] = "build"
    nbytes: ClassVar[int] = 0

    def publish_msg(
        self,
        msg_type: str,
        data: Any = None,
        metadata: Any = None,
        buffers: Any = None,
        **keys: Any,
    ) -> None:
        size = len(json.dumps({"data": data, "metadata": metadata}, default=str))
        size += sum(len(memoryview(b).cast("B")) for b in buffers or ())
        with CountingComm.lock:
            CountingComm.times.append(time.monotonic())
            CountingComm.labels[CountingComm.label] += 1
            CountingComm.nbytes += size

    @classmethod
    def reset(cls, label: str) -> None:
        with cls.lock:
            cls.times = []
            cls.labels = Counter()
            cls.label = label
            cls.nbytes = 0


comm.create_comm = lambda *a, **k: CountingComm(*a, **k)

from flashevolve_nb.demo import DemoConfig  # noqa: E402
from flashevolve_nb.runtime import start  # noqa: E402


@dataclass
class Outcome:
    dashboard: bool
    proposals_per_min: float
    llm_calls_per_real_s: float
    real_seconds: float
    cpu_share: float
    messages: int = 0
    message_seconds: float = 0.0
    peak_3s: float = 0.0
    kbytes: float = 0.0
    built: int = 0
    build_seconds: float = 0.0
    steady_calls_per_real_s: float = 0.0
    """LLM calls per real second from WARM seconds after the start (the dashboard built)."""
    ui_cpu: float = 0.0
    """CPU seconds the dashboard took: its refresher thread, plus the snapshots it asked
    the run's loop thread for."""


WARM = 3.0
"""Real seconds after the start from which the steady rate is measured."""


def one_run(config: DemoConfig, with_dashboard: bool) -> Outcome:
    c0 = time.process_time()
    run = start(config)
    t_start = time.monotonic()
    dash = None
    built = 0
    build_seconds = 0.0
    if with_dashboard:
        CountingComm.reset("build")
        dash = run.dashboard(autostart=False)
        build_seconds = time.monotonic() - t_start
        cpu_used = _instrument(run, dash)
        dash.start()
        built = CountingComm.labels["build"]
    # Building the dashboard is a one-off cost; the steady rate is measured after it.
    time.sleep(max(0.0, WARM - (time.monotonic() - t_start)))
    calls0 = run.snapshot().stats.llm_calls
    w0 = time.monotonic()
    if dash is not None:
        CountingComm.reset("running")
        t_count = time.monotonic()
        run.wait()
        count_seconds = time.monotonic() - t_count
    result = run.wait()
    w1 = time.monotonic()
    cpu = time.process_time() - c0
    real = run.real_seconds
    out = Outcome(
        dashboard=with_dashboard,
        proposals_per_min=result.stats.proposals_per_min,
        llm_calls_per_real_s=result.stats.llm_calls / real,
        real_seconds=real,
        cpu_share=cpu / real,
        built=built,
        build_seconds=build_seconds,
        steady_calls_per_real_s=(result.stats.llm_calls - calls0) / (w1 - w0),
    )
    if dash is not None:
        dash.stop()
        out.ui_cpu = sum(cpu_used)
        times = list(CountingComm.times)
        out.messages = len(times)
        out.message_seconds = count_seconds
        out.peak_3s = _peak(times, 3.0) / 3.0
        out.kbytes = CountingComm.nbytes / 1000
        dash.close()
    return out


def _instrument(run: Any, dash: Any) -> list[float]:
    """Add up the CPU time of every refresh and of the snapshots it takes on the loop."""
    used: list[float] = []
    refresh, snapshot_now = dash.refresh, run._snapshot_now

    def timed_refresh() -> None:
        c0 = time.thread_time()
        refresh()
        used.append(time.thread_time() - c0)

    def timed_snapshot(*args: Any) -> Any:
        c0 = time.thread_time()  # runs on the loop's thread
        try:
            return snapshot_now(*args)
        finally:
            used.append(time.thread_time() - c0)

    dash.refresh = timed_refresh
    run._snapshot_now = timed_snapshot
    return used


def _peak(times: list[float], window: float) -> int:
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def measure(scale: float, seconds: float, reps: int) -> list[Outcome]:
    config = DemoConfig(minutes=seconds * scale / 60.0, time_scale=scale)
    outcomes = []
    for r in range(reps):
        # Alternate, so that drift on the machine hits both sides alike.
        for with_dashboard in (False, True) if r % 2 == 0 else (True, False):
            o = one_run(config, with_dashboard)
            outcomes.append(o)
            side = "with dashboard   " if with_dashboard else "without dashboard"
            extra = f", {o.messages / o.message_seconds:5.1f} msg/s" if with_dashboard else ""
            print(
                f"  x{scale:g} rep {r + 1} {side}: {o.proposals_per_min:5.2f} proposals/sim-min, "
                f"{o.llm_calls_per_real_s:6.1f} LLM calls/real s, CPU {o.cpu_share:4.0%}{extra}",
                flush=True,
            )
    return outcomes


def report(scale: float, outcomes: list[Outcome]) -> None:
    base = [o for o in outcomes if not o.dashboard]
    dash = [o for o in outcomes if o.dashboard]

    def line(label: str, key: str, fmt: str) -> None:
        a = [getattr(o, key) for o in base]
        b = [getattr(o, key) for o in dash]
        ma, mb = statistics.median(a), statistics.median(b)
        # Runs of one rep ran back to back: their ratio is less exposed to load that
        # comes and goes on a shared machine than the medians are.
        paired = statistics.median(1 - y / x for x, y in zip(a, b, strict=True))
        print(
            f"  {label:<27}without {ma:{fmt}} ({min(a):{fmt}}-{max(a):{fmt}}), "
            f"with {mb:{fmt}} ({min(b):{fmt}}-{max(b):{fmt}}): {(ma - mb) / ma:+.1%} lost; "
            f"paired by rep: {paired:+.1%}"
        )

    print(f"\ntime scale x{scale:g}, {len(base)} runs each way (median, range):")
    line("proposals / simulated min", "proposals_per_min", ".2f")
    line("LLM calls / real second", "llm_calls_per_real_s", ".0f")
    line(f"  the same after {WARM:g} s", "steady_calls_per_real_s", ".0f")
    print(
        f"  {'building the dashboard':<27}"
        f"{statistics.median(o.build_seconds for o in dash):.2f} s (median), while the run goes"
    )
    print(
        f"  {'process CPU share':<27}without {statistics.median(o.cpu_share for o in base):.0%}, "
        f"with {statistics.median(o.cpu_share for o in dash):.0%} (2 cores = 200%)"
    )
    ui = sum(o.ui_cpu for o in dash) / sum(o.real_seconds for o in dash)
    print(
        f"  {'dashboard CPU':<27}{ui * 1000:.0f} ms per real second = {ui:.1%} of one core "
        "(refresher + its snapshots on the run's loop)"
    )
    rate = sum(o.messages for o in dash) / sum(o.message_seconds for o in dash)
    kb = sum(o.kbytes for o in dash) / sum(o.message_seconds for o in dash)
    print(
        f"  {'comm messages sent':<27}{rate:.1f}/s on average, at most "
        f"{max(o.peak_3s for o in dash):.1f}/s over any 3 s, {kb:.1f} kB/s; "
        f"{dash[0].built} to build the dashboard"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="runs each way per time scale")
    ap.add_argument(
        "--scales", type=float, nargs="+", default=[120.0, 1000.0],
        help="time scales: the demo's default, and one where the engine is CPU-bound",
    )  # fmt: skip
    ap.add_argument(
        "--seconds", type=float, default=15.0, help="real seconds per run (the budget is "
        "this many seconds times the time scale, on the simulated clock)",
    )  # fmt: skip
    args = ap.parse_args()
    # Import and build once before timing (imports are a one-off cost of the session).
    warm = start(DemoConfig(minutes=0.5, time_scale=1000.0))
    warm.dashboard(autostart=False).close()
    warm.wait()
    print(
        "Simulated GEPA demo (rulebook task, vllm profile, seed 0), "
        f"{args.seconds:g} real seconds per run; dashboard refresh at 4 Hz.",
        flush=True,
    )
    static = Path(__file__).resolve().parents[1] / "flashevolve_nb" / "ui" / "static"
    for f in sorted(static.glob("dashboard.*")):
        raw = f.read_bytes()
        print(f"front-end bundle {f.name}: {len(raw) / 1000:.1f} kB, "
              f"{len(gzip.compress(raw, 9)) / 1000:.1f} kB gzipped")  # fmt: skip
    results = {s: measure(s, args.seconds, args.reps) for s in args.scales}
    for scale, outcomes in results.items():
        report(scale, outcomes)


if __name__ == "__main__":
    main()
