"""The trusted bootstrap that runs one untrusted harness inside the sandbox.

Executed as a script (``python -I -S runner.py``) by :mod:`.sandbox`, never
imported by the package: it must not import ``flashevolve_nb`` and uses the
standard library only. In order, it

1. reads its input (JSON on stdin: the training examples and the tasks);
2. imports the standard modules a harness may use (:data:`PRELOADED`) and
   drops privileges when started as root (``--drop UID:GID``): no
   supplementary groups, the unprivileged user, no new processes
   (``RLIMIT_NPROC`` 0);
3. installs an audit hook (``--guard``) that refuses, for the rest of the
   process's life, sockets, new processes, ``ctypes`` and any write or
   removal of a file outside the working directory;
4. compiles ``harness.py`` from the working directory (its syntax check:
   untrusted source is never even parsed outside the sandbox), imports it,
   feeds every training
   example to ``update_memory`` and asks ``build_context`` for every task;
5. writes one JSON object to its original stdout: the contexts, or the stage
   that failed with the error.

The harness's own prints go to stderr, so they cannot corrupt the answer.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import types
from typing import Any, NoReturn

MAX_SAMPLES = 5
PRELOADED = (
    "bisect",
    "collections",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "encodings.idna",
    "enum",
    "fractions",
    "functools",
    "hashlib",
    "heapq",
    "importlib.util",
    "itertools",
    "json",
    "math",
    "operator",
    "random",
    "re",
    "resource",
    "socket",
    "statistics",
    "string",
    "textwrap",
    "traceback",
    "typing",
    "unicodedata",
)
"""Imported before privileges are dropped: the unprivileged user may be unable to read
the interpreter's library (``/root/.pyenv``...), so these are what a harness can use."""
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_PATH_EVENTS = {
    "os.remove": 0, "os.rename": 0, "os.replace": 0, "os.rmdir": 0, "os.mkdir": 0,
    "os.chmod": 0, "os.chown": 0, "os.symlink": 1, "os.link": 1, "os.truncate": 0,
    "os.utime": 0, "shutil.rmtree": 0, "os.removexattr": 0, "os.setxattr": 0,
}  # fmt: skip
_REFUSED_PREFIXES = ("socket.", "subprocess.", "os.exec", "os.posix_spawn", "os.spawn", "ctypes")
_REFUSED = {"os.system", "os.fork", "os.forkpty", "os.kill", "os.killpg", "pty.spawn"}


def _inside(root: str, path: Any) -> bool:
    if isinstance(path, int):
        return True  # an already open descriptor: opening it was checked
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        return False
    full = os.path.realpath(os.path.join(root, os.fspath(path)))
    return full == root or full.startswith(root + os.sep)


def install_guard(root: str) -> None:
    """Refuse network, processes, ctypes and writes outside ``root`` (an audit hook
    cannot be removed once added)."""
    root = os.path.realpath(root)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in _REFUSED or event.startswith(_REFUSED_PREFIXES):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = (*tuple(args), None, None, None)[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writing and not _inside(root, path):
                raise PermissionError(f"sandbox: writing {path!r} outside the working directory")
        elif event in _PATH_EVENTS:
            for path in args[:2] if _PATH_EVENTS[event] else args[:1]:
                if not _inside(root, path):
                    raise PermissionError(f"sandbox: {event} on {path!r} outside the working dir")

    sys.addaudithook(hook)


def drop_privileges(uid: int, gid: int) -> None:
    import resource

    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise TypeError(
            f"build_context must return a non-empty list of messages, not {value!r:.80}"
        )
    out = []
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise TypeError(f"a message must be a dict with a str 'content', not {m!r:.80}")
        role = m.get("role", "user")
        if role not in ("system", "user", "assistant"):
            raise TypeError(f"a message role must be system, user or assistant, not {role!r:.40}")
        out.append({"role": role, "content": m["content"]})
    return out


def _failure(stage: str, exc: BaseException) -> dict[str, Any]:
    tb = traceback.format_exception(exc)
    return {
        "ok": False, "stage": stage, "error": f"{type(exc).__name__}: {exc}"[:500],
        "traceback": "".join(tb)[-2000:],
    }  # fmt: skip


def run(data: dict[str, Any]) -> dict[str, Any]:
    stage = "syntax"
    try:
        path = os.path.abspath("harness.py")
        with open(path, encoding="utf-8") as f:
            code = compile(f.read(), "harness.py", "exec", dont_inherit=True)
        stage = "import"
        module = types.ModuleType("harness")
        module.__file__ = path
        sys.modules["harness"] = module
        exec(code, module.__dict__)
        stage = "interface"
        build = getattr(module, "build_context", None)
        update = getattr(module, "update_memory", None)
        if not callable(build) or not callable(update):
            raise TypeError("the harness must define build_context(task, memory) and "
                            "update_memory(memory, example)")  # fmt: skip
        samples = getattr(module, "SAMPLES", 1)
        if not isinstance(samples, int) or isinstance(samples, bool):
            raise TypeError(f"SAMPLES must be an int, not {samples!r:.40}")
        if not 1 <= samples <= MAX_SAMPLES:
            raise ValueError(f"SAMPLES must be within 1..{MAX_SAMPLES} (got {samples})")
        stage = "update_memory"
        memory: Any = None
        for example in data["train"]:
            memory = update(memory, dict(example))
        stage = "build_context"
        contexts = []
        for task in data["tasks"]:
            contexts.append({"id": task["id"], "messages": _messages(build(dict(task), memory))})
    except BaseException as exc:  # the harness's failure, whatever it is, is the answer
        return _failure(stage, exc)
    return {"ok": True, "samples": samples, "contexts": contexts}


def main(argv: list[str]) -> NoReturn:
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # what the harness prints goes to stderr
    sys.stdout = sys.stderr
    sys.dont_write_bytecode = True
    data = json.load(sys.stdin)
    import importlib

    for name in PRELOADED:
        importlib.import_module(name)
    if "--drop" in argv:
        uid, gid = argv[argv.index("--drop") + 1].split(":")
        drop_privileges(int(uid), int(gid))
    if "--guard" in argv:
        install_guard(os.getcwd())
    result = run(data)
    try:
        text = json.dumps(result)
    except (TypeError, ValueError) as exc:
        text = json.dumps(_failure("output", exc))
    out.write(text)
    out.flush()
    # Now, without waiting for threads or exit handlers the harness may have left.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
