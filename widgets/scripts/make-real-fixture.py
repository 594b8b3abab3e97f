"""Make test/fixtures/real-run.json: the model of a real (simulated-backend) run, trimmed.

    cd /work/main && python3 widgets/scripts/make-real-fixture.py

A 25-simulated-minute run (seed 0, time scale 300; the exact shape varies a little
from run to run): 120-150 artifacts, a seed with many children, four or five
generations. Trimmed to stay under 300 kB: every 4th artifact keeps one feedback row
(the others none), long texts are cut, stories are kept when they name an artifact
outside the pool (and every 4th of the rest) with their first 3 `since_ids`, the event
log keeps admissions, failures, controller and run start/end events only, and numbers
are rounded. What the lineage draws (ids, parents, pool, stories' artifacts) is whole.
"""

import json
import pathlib

from flashevolve_nb import start

OUT = pathlib.Path(__file__).resolve().parents[1] / "test" / "fixtures" / "real-run.json"
KEEP_EVENTS = {
    "admitted",
    "proposal_failed",
    "controller_action",
    "stage_control",
    "run_started",
    "run_finished",
    "budget_exhausted",
}


def cut(s, n):
    return s if not isinstance(s, str) or len(s) <= n else s[: n - 1] + "…"


def rounded(x):
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, list):
        return [rounded(v) for v in x]
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    return x


def main():
    r = start(minutes=25, seed=0, time_scale=300)
    r.wait()
    d = r.dashboard(autostart=False)
    m = json.loads(json.dumps(d.archive))
    d.close()
    for i, a in enumerate(m["artifacts"].values()):
        a["components"] = {k: cut(v, 500) for k, v in a["components"].items()}
        a["feedback"] = (
            [{k: cut(v, 80) for k, v in f.items()} for f in a["feedback"][:1]] if i % 4 == 0 else []
        )
    m["events"] = [e for e in m["events"] if e["kind"] in KEEP_EVENTS]
    # stories naming an artifact outside the pool (the lineage draws those), a quarter of the rest
    pool = {r["id"] for r in m["pool"]}
    m["stories"] = [
        s
        for i, s in enumerate(m["stories"])
        if i % 4 == 0
        or any(
            x and x not in pool
            for x in (
                s.get("stale_id"),
                s.get("replacement_id"),
                s.get("parent_id"),
                s.get("best_id"),
            )
        )
    ]
    for s in m["stories"]:
        for k in ("request", "answer", "reason"):
            s[k] = cut(s.get(k, ""), 100)
        s["outcome"] = {k: v for k, v in s.get("outcome", {}).items() if v not in ("", None)}
        s["since_ids"] = s.get("since_ids", [])[:3]
    m = rounded(m)
    OUT.write_text(json.dumps(m, separators=(",", ":"), sort_keys=True) + "\n")
    size, arts, pool = OUT.stat().st_size, len(m["artifacts"]), len(m["pool"])
    print(OUT, size, "bytes,", arts, "artifacts,", pool, "in the pool")


if __name__ == "__main__":
    main()
