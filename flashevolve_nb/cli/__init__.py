"""The ``flashevolve`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import flashevolve_nb
from flashevolve_nb.cli import bench, demo, run, sim_server
from flashevolve_nb.cli.checks import in_flags

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flashevolve",
        description="Fast, observable, steerable asynchronous LLM-based evolution (FlashEvolve).",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {flashevolve_nb.__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo.add_parser(sub)
    sim_server.add_parser(sub)
    run.add_parser(sub)
    bench.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except ValueError as exc:
        # Configuration mistakes: say what is wrong, in the command's own terms (its flags,
        # its usage line), without a traceback.
        command: argparse.ArgumentParser = getattr(args, "command_parser", parser)
        command.error(in_flags(str(exc), command))
    return code
