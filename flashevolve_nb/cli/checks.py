"""What the subcommands share: option types, the event loop per clock, and errors
worded with the command line's flags rather than the configuration's field names."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = [
    "VIRTUAL_CLOCK_HINT",
    "at_least",
    "check_clock",
    "in_flags",
    "json_target",
    "new_loop",
    "positive_number",
]

VIRTUAL_CLOCK_HINT = (
    "--clock virtual needs the 'looptime' package, which is not installed: "
    "pip install 'flashevolve_nb[virtual]' (or: pip install looptime), "
    "or leave --clock out to run on the real clock"
)


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int (got {text!r})") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum} (got {value})")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


def positive_number(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (got {text!r})") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0 (got {text})")
    return value


def json_target(text: str) -> Path | None:
    """``--json PATH``: ``-`` is stdout (None); a file must be writable, checked now, before
    the run, so a mistake costs no run."""
    if text == "-":
        return None
    path = Path(text).expanduser()
    folder = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is a directory; give a file name, or - for stdout"
        )
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(
            f"cannot write {text}: the folder {folder} does not exist (create it first, "
            "or give - for stdout)"
        )
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"cannot write {text}: permission denied")
    return path


def new_loop(clock: str) -> asyncio.AbstractEventLoop:
    """A fresh event loop: the real clock, or a virtual one (looptime, an optional extra)."""
    if clock == "virtual":
        try:
            import looptime
        except ImportError:
            raise ValueError(VIRTUAL_CLOCK_HINT) from None
        loop: asyncio.AbstractEventLoop = looptime.new_event_loop(start=0.0)
        return loop
    if clock != "real":
        raise ValueError(f"--clock must be 'real' or 'virtual' (got {clock!r})")
    return asyncio.new_event_loop()


def check_clock(clock: str) -> None:
    """Fail before any run if ``clock`` cannot be had here."""
    new_loop(clock).close()


# Configuration names that are not simply their flag's dest.
_ALIASES = {
    "policy": "staleness",
    "validation": "speculative_validation",
    "max_sim_seconds": "minutes",
}
_OWNERS = r"(?:DemoConfig|SpeculationConfig|PipelineConfig|GepaConfig|Budget)"


def _flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> its longest option string, e.g. ``time_scale`` -> ``--time-scale``."""
    out: dict[str, str] = {}
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            out[action.dest] = max(action.option_strings, key=len)
    for name, dest in _ALIASES.items():
        if dest in out and name not in out:
            out[name] = out[dest]
    return out


def in_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """``message`` with configuration field names replaced by ``parser``'s flags.

    ``DemoConfig.time_scale must be ... e.g. time_scale=120`` becomes
    ``--time-scale must be ... e.g. --time-scale 120``; a field with no flag keeps its
    bare name (a key of a config file, for ``run``).
    """
    flags: Mapping[str, str] = _flags(parser)

    def flag(name: str) -> str:
        return flags.get(name, name)

    text = re.sub(r"^speculation: ", "", message)
    text = re.sub(r"\bresume=True(?: \(--resume\))?", flag("resume"), text)
    text = re.sub(rf"\b{_OWNERS}\.(\w+)", lambda m: flag(m.group(1)), text)
    text = re.sub(r"alpha=\{'(\w+)': ([\d.]+)\}", lambda m: f"{flag('alpha')} {m[1]}={m[2]}", text)

    def example(m: re.Match[str]) -> str:
        name, value = m.group(1), m.group(2).strip("'\"")
        return f"e.g. {flags[name]} {value}" if name in flags else m.group(0)

    text = re.sub(r"e\.g\. (\w+)=(\S+?)(?=[;,)]?(?:\s|$))", example, text)
    # "workers must be >= 1" / "policy: unknown ...": a field name leading a sentence
    return re.sub(
        r"(^|: )(\w+)(?= must\b|: )",
        lambda m: m.group(1) + (flags[m.group(2)] if m.group(2) in flags else m.group(2)),
        text,
    )
