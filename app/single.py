"""One process serves: live sessions, their strands and the job workers are this process's
memory, so a second process on the same state would answer from other weights. Refuse it,
saying why: uvicorn's --workers (or WEB_CONCURRENCY) above 1, or a second server on the same
work directory."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import sys
from pathlib import Path
from typing import IO

WHY = ("fleetlite runs in one process: sessions live in its memory and calls on a session "
       "must run one at a time; its own threads use every core.")


def requested_workers(argv: list[str], environ: dict[str, str]) -> int:
    """The worker count uvicorn was asked for on its command line or in WEB_CONCURRENCY."""
    count = environ.get("WEB_CONCURRENCY", "1")
    for i, arg in enumerate(argv):
        if arg == "--workers" and i + 1 < len(argv):
            count = argv[i + 1]
        elif arg.startswith("--workers="):
            count = arg.split("=", 1)[1]
    try:
        return int(count)
    except ValueError:
        return 1


def refuse_many_workers() -> None:
    """Exit, saying why, in a worker of a multi-process uvicorn; and stop its supervisor,
    which would otherwise start the worker again forever."""
    workers = requested_workers(sys.argv, dict(os.environ))
    if workers <= 1:
        return
    print(f"error: {WHY} (asked for {workers} workers)", file=sys.stderr, flush=True)
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid == os.getppid():  # uvicorn's supervisor
        os.kill(parent.pid, signal.SIGTERM)
    raise SystemExit(3)


def lock_work_dir(work_dir: Path) -> IO[str]:
    """Hold an exclusive lock on the work directory for the life of the process; a second
    server there fails at start with the reason. The caller keeps the file open."""
    path = work_dir / "fleetlite.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeError(f"another fleetlite process serves from {work_dir}. {WHY}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
