"""Where a dashboard's model comes from: a live run, or a run read back from disk.

Both give the same things (a name, whether it has ended, the model's meta and
snapshot, its :class:`RunHistory`, and an answer to a page's command), so the
one widget shows a live run, a finished one, a stored one and a replay alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from flashevolve_nb.engine.events import Event, ItemQueued, RunStarted
from flashevolve_nb.engine.pool import PoolChange, PoolEntry, PoolSnapshot
from flashevolve_nb.engine.result import RunResult
from flashevolve_nb.engine.stats import RunStats
from flashevolve_nb.runtime.history import RunHistory
from flashevolve_nb.ui.model import (
    STAGE_HELP,
    clean_dict,
    knobs,
    lag_json,
    snapshot_json,
    stats_json,
    warnings,
)

if TYPE_CHECKING:
    from flashevolve_nb.runtime.run import Run
    from flashevolve_nb.store.reader import StoredRun
    from flashevolve_nb.ui.dashboard import Dashboard

__all__ = ["LiveSource", "RecordedSource", "Source", "replay"]

Ack = dict[str, Any]


class Source(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def done(self) -> bool: ...
    @property
    def history(self) -> RunHistory: ...
    def meta(self) -> dict[str, Any]: ...
    def snapshot_json(self) -> dict[str, Any]: ...
    def command(self, cmd: str, args: Mapping[str, Any]) -> Ack: ...


def _ok(message: str, warning: str = "", **extra: Any) -> Ack:
    return {"ok": True, "message": message, "warning": warning, **extra}


def _int(args: Mapping[str, Any], key: str) -> int:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError(f"{key} must be a whole number (got {value!r})")
    return int(value)


def _components(args: Mapping[str, Any]) -> dict[str, str]:
    comps = args.get("components")
    if not isinstance(comps, Mapping) or not comps:
        raise ValueError("components must map component names to their text")
    return {str(k): str(v) for k, v in comps.items()}


class LiveSource:
    """A :class:`Run` in this process (running or ended)."""

    def __init__(self, run: Run) -> None:
        self.run = run

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def done(self) -> bool:
        # The pipeline has ended even while the run's end hooks (the final view) still run.
        return self.run.done or self.run.pipeline.state in ("finished", "failed", "cancelled")

    @property
    def history(self) -> RunHistory:
        return self.run.history

    def meta(self) -> dict[str, Any]:
        p = self.run.pipeline
        snap = self.run.snapshot()
        backend = snap.backend
        return clean_dict({
            "name": self.run.name, "workload": snap.workload, "backend": backend,
            "simulated": "simulat" in backend.lower(), "time_scale": snap.time_scale,
            "mode": p.mode, "seed": p.seed, "stages": [s.name for s in p.stages],
            "instance_ids": list(snap.pool.instance_ids), "policies": list(snap.policies),
            "live": not self.done, "replay": False,
            "knobs": knobs(snap.controller_params),
            "stage_help": {s.name: STAGE_HELP.get(s.name, "") for s in p.stages},
        })  # fmt: skip

    def snapshot_json(self) -> dict[str, Any]:
        return snapshot_json(self.run.snapshot())

    def on_end(self, hook: Callable[[], None]) -> None:
        self.run.on_end(hook)

    # ---- steering ------------------------------------------------------------------
    def command(self, cmd: str, args: Mapping[str, Any]) -> Ack:
        try:
            return self._command(cmd, args)
        except Exception as exc:
            # The page shows it next to the control; the run goes on.
            return {"ok": False, "message": f"{type(exc).__name__}: {exc}", "warning": ""}

    def _warning(self) -> str:
        return "; ".join(warnings(self.run.snapshot(controller=False)))

    def _command(self, cmd: str, args: Mapping[str, Any]) -> Ack:
        run = self.run
        stage = args.get("stage")
        if stage is not None and not isinstance(stage, str):
            raise ValueError(f"stage must be a stage name or null (got {stage!r})")
        where = f"{stage!r}" if stage else "every stage"
        if cmd == "pause":
            run.pause(stage)
            return _ok(f"{where} paused", self._warning())
        if cmd == "resume":
            run.resume(stage)
            return _ok(f"{where} resumed", self._warning())
        if cmd == "workers":
            n = _int(args, "n")
            run.set_workers(_need(stage), n)
            return _ok(f"{stage!r}: {n} worker(s), held until you release it", self._warning())
        if cmd == "release":
            was = run.release_workers(_need(stage))
            text = "handed back to the controller" if was else "was not held"
            return _ok(f"{stage!r}: {text}")
        if cmd == "depth":
            n = _int(args, "n")
            run.set_depth(n)
            return _ok(f"depth {n}: up to {n} steps in flight")
        if cmd == "submit":
            parent = args.get("parent")
            art = run.submit(_components(args), parent=parent if parent else None,
                             note=str(args.get("note") or ""))  # fmt: skip
            return _ok(f"submitted as {art.id} (from {art.parents[0]})", self._warning(),
                       artifact_id=art.id)  # fmt: skip
        if cmd == "replace":
            item = str(args.get("item_id", ""))
            new = run.replace(item, _components(args), note=str(args.get("note") or ""))
            if new is None:
                return {"ok": False, "warning": "",
                        "message": f"item {item} is no longer waiting (a worker took it); "
                                   "submit your text as a new proposal instead"}  # fmt: skip
            return _ok(f"item {item} now carries {new.id}", self._warning(), artifact_id=new.id)
        if cmd == "drop":
            item = str(args.get("item_id", ""))
            if run.drop(item):
                return _ok(f"item {item} dropped")
            return {"ok": False, "warning": "",
                    "message": f"item {item} is no longer waiting (a worker took it)"}  # fmt: skip
        if cmd == "tune":
            changes = args.get("changes")
            if not isinstance(changes, Mapping) or not changes:
                raise ValueError("tune needs changes: {parameter: value}")
            run.tune(**{str(k): v for k, v in changes.items()})
            said = ", ".join(f"{k} = {v}" for k, v in changes.items())
            return _ok(f"controller: {said}")
        if cmd == "controller":
            on = bool(args.get("enabled"))
            run.set_controller(on)
            return _ok("adaptive controller " + ("on" if on else "off: worker counts stay put"))
        if cmd == "policy":
            name = str(args.get("name", ""))
            params = args.get("params") or {}
            if not isinstance(params, Mapping):
                raise ValueError("policy params must be {name: value}")
            run.set_policy(name, **{str(k): v for k, v in params.items()})
            said = "".join(f", {k} = {v}" for k, v in params.items())
            return _ok(f"staleness policy: {name}{said}")
        if cmd == "alpha":
            alpha = args.get("alpha")
            if not isinstance(alpha, int | float) or isinstance(alpha, bool):
                raise ValueError(f"alpha must be a number in (0, 1] (got {alpha!r})")
            run.set_alpha(_need(stage), float(alpha))
            return _ok(f"{stage!r} hands its output on after {float(alpha):.0%} of its requests")
        if cmd == "speculative_validation":
            on = bool(args.get("on"))
            run.set_speculative_validation(on)
            return _ok("speculative validation " + ("on" if on else "off"))
        if cmd == "stop":
            mode = str(args.get("mode", "drain"))
            run.stop(mode)  # type: ignore[arg-type]
            return _ok("stopping: " + ("steps in flight finish" if mode == "drain"
                                       else "steps in flight are dropped"))  # fmt: skip
        raise ValueError(f"unknown command {cmd!r}")

    def model(self) -> dict[str, Any]:
        hist, _ = self.history.full()
        return {"v": 1, "tick": 0, "meta": self.meta(), "snapshot": self.snapshot_json(), **hist}


def _need(stage: str | None) -> str:
    if not stage:
        raise ValueError("this control needs a stage name")
    return stage


class RecordedSource:
    """A run that has ended, from its record: events, pool changes and final figures.

    Made from a run read back with :func:`flashevolve_nb.open_run`
    (:meth:`from_stored`) or from a :class:`RunResult` in memory
    (:meth:`from_result`); the history is rebuilt from the events, so a
    replay shows the run as it happened.
    """

    def __init__(
        self,
        name: str,
        events: Sequence[Event],
        pool_changes: Iterable[tuple[PoolChange, PoolEntry]],
        *,
        stats: RunStats,
        pool: PoolSnapshot,
        state: str,
        finish_reason: str,
        workload: str = "",
        real_seconds: float = 0.0,
        config: Mapping[str, Any] | None = None,
        replay: bool = False,
    ) -> None:
        self._name = name
        self._events = events
        self._stats = stats
        self._pool = pool
        self._state = state
        self._finish_reason = finish_reason
        self._real = real_seconds
        self._config = dict(config or {})
        self.replay = replay
        stages: list[str] = []
        for e in events:
            if isinstance(e, ItemQueued) and e.stage not in stages:
                stages.append(e.stage)
        self._stages = stages
        self._history = RunHistory(stages)
        # Pool changes first: their rows carry per-instance scores, events only refer to them.
        for change, entry in pool_changes:
            self._history.pool_changed(change, entry)
        for e in events:
            self._history(e)
        self._started = next((e for e in reversed(events) if isinstance(e, RunStarted)), None)
        self._workload = workload or (self._started.workload if self._started else "")

    @classmethod
    def from_stored(cls, stored: StoredRun, *, replay: bool = False) -> RecordedSource:
        status = stored.status
        sessions = stored.sessions
        return cls(
            str(stored.run_dir.name), stored.events, stored.pool_changes(),
            stats=stored.stats, pool=stored.pool,
            state={"interrupted": "failed"}.get(status, status),
            finish_reason=stored.result().finish_reason, workload=stored.meta.workload,
            real_seconds=sum((s.ended_wall or s.started_wall) - s.started_wall for s in sessions),
            config=stored.config, replay=replay,
        )  # fmt: skip

    @classmethod
    def from_result(cls, result: RunResult, *, name: str = "run", replay: bool = False
                    ) -> RecordedSource:  # fmt: skip
        entries = sorted(result.pool.entries, key=lambda e: e.version)
        failed = result.finish_reason.startswith("failed")
        return cls(
            name, result.events, [("admit", e) for e in entries], stats=result.stats,
            pool=result.pool, state="failed" if failed else "finished",
            finish_reason=result.finish_reason, replay=replay,
        )  # fmt: skip

    @property
    def name(self) -> str:
        return self._name

    @property
    def done(self) -> bool:
        return True

    @property
    def history(self) -> RunHistory:
        return self._history

    def meta(self) -> dict[str, Any]:
        s = self._started
        backend = s.backend if s else ""
        return clean_dict({
            "name": self._name, "workload": self._workload, "backend": backend,
            "simulated": "simulat" in backend.lower(), "time_scale": 1.0,
            "mode": s.mode if s else "", "seed": s.seed if s else 0, "stages": self._stages,
            "instance_ids": list(self._pool.instance_ids), "policies": [],
            "live": False, "replay": self.replay, "knobs": [],
            "stage_help": {n: STAGE_HELP.get(n, "") for n in self._stages},
            "config": json.loads(json.dumps(self._config, default=str)),
        })  # fmt: skip

    def snapshot_json(self) -> dict[str, Any]:
        counts: dict[str, dict[str, int]] = {n: {"processed": 0, "failed": 0, "dropped": 0}
                                             for n in self._stages}  # fmt: skip
        keys = {"item_finished": "processed", "item_failed": "failed", "item_dropped": "dropped"}
        for e in self._events:
            stage = getattr(e, "stage", None)
            key = keys.get(e.kind)
            if key and stage in counts:
                counts[stage][key] += 1
        pool = self._pool
        return clean_dict({
            "state": self._state, "t": self._stats.sim_seconds, "real_seconds": self._real,
            "lagging": False, "clock_behind": lag_json(self._stats.clock_behind),
            "finish_reason": self._finish_reason, "error": "",
            "stats": stats_json(self._stats), "depth": None, "steps_in_flight": 0,
            "requests_in_flight": 0, "policy": "", "policy_params": {},
            "stages": [{"name": n, "queued": 0, "busy": 0, "workers": 0, "paused": False,
                        **counts[n], "requests": 0, "held": False, "alpha": 1.0, "items": []}
                       for n in self._stages],
            "pool": {"version": pool.version, "size": len(pool.entries), "best_id": pool.best_id,
                     "best_score": pool.best_score, "front_ids": list(pool.front_ids)},
            "controller": None, "speculation": None, "warnings": [], "errors": [],
        })  # fmt: skip

    def command(self, cmd: str, args: Mapping[str, Any]) -> Ack:
        return {"ok": False, "warning": "",
                "message": "this is a recorded run: there is nothing to steer (start or "
                           "resume a run to steer it)"}  # fmt: skip

    def model(self) -> dict[str, Any]:
        hist, _ = self.history.full()
        return {"v": 1, "tick": 0, "meta": self.meta(), "snapshot": self.snapshot_json(), **hist}


def replay(result: RunResult, *, name: str = "run") -> Dashboard:
    """A finished run's :class:`RunResult` in the dashboard, opened for replay (play,
    pause, scrub, speed): how a teacher walks through a run, staleness repairs and all."""
    from flashevolve_nb.ui.dashboard import Dashboard

    return Dashboard(RecordedSource.from_result(result, name=name, replay=True), autostart=False)
