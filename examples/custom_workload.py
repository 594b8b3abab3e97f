"""A task and a metric of your own, evolved as a GEPA workload.

The task here: a support desk wants short replies in its house style. Each
ticket belongs to a queue (billing, outage, account...) and each queue has its
house rules; the metric is plain Python code scoring a reply against them and
writing feedback that names what was missed. That is all a task is
(``messages`` + ``score``, the ``Task`` protocol of
``flashevolve_nb.workloads.gepa``); the workload (GEPA: rollout, reflective
proposal, gate, validation) and the asynchronous engine do the rest.

The models are the offline simulator and the run is on a virtual clock, so
it is deterministic and quick; everything printed is simulated. The
simulated models only understand the rule book they were built with, so the
metric's feedback reuses those rules' sentences; with a real model (see
``examples/vllm_server.py``) any feedback text works.

    python3 examples/custom_workload.py
    python3 examples/custom_workload.py --minutes 30 --seed 3
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Mapping
from dataclasses import dataclass

from flashevolve_nb.clock import Clock, virtual_event_loop
from flashevolve_nb.engine import Budget, Pipeline, PipelineConfig, RunResult
from flashevolve_nb.sim import Simulator
from flashevolve_nb.sim.rules import RULES_BY_ID
from flashevolve_nb.workloads.gepa import GepaConfig, GepaWorkload

# Every reply must follow the first rules; each queue adds its own.
HOUSE = ("end_done", "max_words")
QUEUES: Mapping[str, tuple[str, ...]] = {
    "billing": ("iso_dates", "digits"),
    "outage": ("no_exclamation", "answer_tags"),
    "account": ("signature",),
    "refund": ("iso_dates", "signature"),
}
SUBJECTS = (
    "I was charged twice on 3 March",
    "the dashboard has been down since this morning",
    "please change the email address on my account",
    "I want my money back for last month's plan",
    "my invoice shows the wrong company name",
    "is the API outage over yet",
    "I cannot log in after resetting my password",
    "the refund I was promised never arrived",
)


@dataclass(frozen=True)
class Ticket:
    id: str
    queue: str
    input: str


@dataclass(frozen=True)
class Scored:
    score: float
    feedback: str


class SupportReplies:
    """The task: how to ask the model about a ticket, and the metric for its reply."""

    name = "support-replies"

    def messages(self, components: Mapping[str, str], instance: Ticket) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": components["system_prompt"]},
            {"role": "user", "content": f"[{instance.queue} queue] {instance.input}"},
        ]

    def score(self, instance: Ticket, output: str) -> Scored:
        rules = HOUSE + QUEUES[instance.queue]
        missed = [r for r in rules if not RULES_BY_ID[r].check(output)]
        if not missed:
            return Scored(1.0, "All rules satisfied.")
        lines = ["Violated rules:", *(RULES_BY_ID[r].feedback for r in missed)]
        return Scored(1.0 - len(missed) / len(rules), "\n".join(lines))


def tickets(n: int, rng: random.Random, prefix: str) -> list[Ticket]:
    queues = sorted(QUEUES)
    return [Ticket(f"{prefix}-{i:03d}", rng.choice(queues), rng.choice(SUBJECTS)) for i in range(n)]


def build(seed: int, minutes: float) -> Pipeline:
    rng = random.Random(seed)
    train, val = tickets(40, rng, "train"), tickets(20, rng, "val")
    clock = Clock(120.0)
    sim = Simulator(profile="vllm", seed=seed, clock=clock)
    workload = GepaWorkload(
        SupportReplies(),
        train,
        val,
        {"system_prompt": "You are a support agent. Reply to the customer's ticket."},
        task_lm=sim.llm("task"),
        reflection_lm=sim.llm("reflection"),
        repair_lm=sim.llm("repair"),
        config=GepaConfig(minibatch_size=3),
        seed=seed,
    )
    config = PipelineConfig(
        mode="async", depth=8, seed=seed, budget=Budget(max_sim_seconds=minutes * 60.0)
    )
    return Pipeline(workload, config, clock=clock)


def run(pipeline: Pipeline) -> RunResult:
    # A virtual clock: simulated waits take no real time, and the run is deterministic.
    loop = virtual_event_loop()
    try:
        return loop.run_until_complete(pipeline.run())
    finally:
        loop.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="simulated minutes of budget")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    pipeline = build(args.seed, args.minutes)
    result = run(pipeline)
    s = result.stats
    print(f"workload: {pipeline.workload.name}")
    print(
        f"simulated run: {s.proposals} proposals, {s.accepted} accepted in "
        f"{s.minutes:.1f} simulated minutes ({result.finish_reason})"
    )
    print(f"seed score {s.seed_score:.3f} -> best score {result.best_score:.3f}")
    print(f"best prompt ({result.best.id}):")
    print(result.best["system_prompt"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
