"""Quiet start-up: TensorFlow's logs below warnings and its known start-up noise kept off stderr.

TensorFlow 2.19 prints lines on every start that look like failures and are not: cuFFT, cuDNN
and cuBLAS factories "already registered", "computation placer already registered", a failed
cuInit on a machine without a GPU, and TFLite's INFO lines when the first interpreter takes the
Flex delegate. TF_CPP_MIN_LOG_LEVEL reaches only some of them (the absl lines are written
before absl::InitializeLog, which nothing configures, and TFLite logs on its own), so stderr
also goes through a filter that drops exactly those lines. The filter is a child process: what
the process writes just before it dies (a fatal error, a core dump's message) is still passed on.

Run as ``python -m app.quiet``, this module is that filter: stdin to stdout, noise dropped.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress

NOISE = re.compile(
    rb"Unable to register cu(?:FFT|DNN|BLAS) factory"
    rb"|computation placer already registered"
    rb"|All log messages before absl::InitializeLog\(\) is called"
    rb"|failed call to cuInit"
    rb"|^INFO: (?:Created TensorFlow Lite |TfLiteFlexDelegate delegate)"  # Flex, XNNPACK
    rb"|^I\d{4} [\d:.]+ +\d+ \S+:\d+\] "  # absl's INFO lines: below warnings
    rb"|\] Ignored (?:output_format|drop_control_dependency)\.$"  # the converter's own flags
)
PARTIAL_LINE_SECONDS = 0.05  # a line without its newline yet is passed on after this pause
DRAIN_SECONDS = 5.0  # at exit, how long the filter may take to write what it still holds


def configure_tensorflow() -> None:
    """Before TensorFlow is imported: its C++ logs at errors only (TF_CPP_MIN_LOG_LEVEL=2,
    as app.runtime and models set it, unless it is set already), its Python and absl
    loggers at WARNING."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("tensorflow", "absl"):
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def _start_filter() -> subprocess.Popen[bytes]:
    """Point fd 2 at a pipe into a new filter process that writes to the old fd 2."""
    sys.stderr.flush()
    read, write = os.pipe()
    child = subprocess.Popen([sys.executable, "-m", "app.quiet"], stdin=read, stdout=2,
                             start_new_session=True)  # signals to the group do not stop it
    os.close(read)
    os.dup2(write, 2)
    os.close(write)
    return child


def filter_stderr() -> None:
    """For the rest of this process: TensorFlow quiet, and stderr through the filter, which
    has written everything by the time the process is gone (an exit, or SIGTERM once uvicorn
    has shut down and raises it again), so whoever reads the log then finds its last lines."""
    configure_tensorflow()
    child = _start_filter()

    def drain() -> None:
        sys.stderr.flush()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)  # the pipe's last write end: the filter writes the rest and exits
        os.close(null)
        with suppress(subprocess.TimeoutExpired):
            child.wait(DRAIN_SECONDS)

    def on_sigterm(signum: int, frame: object) -> None:
        drain()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    atexit.register(drain)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, on_sigterm)


@contextmanager
def filtered_stderr() -> Iterator[None]:
    """TensorFlow quiet, and stderr through the filter while the block runs."""
    configure_tensorflow()
    saved = os.dup(2)
    child = _start_filter()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the filter drains and exits
        os.close(saved)
        child.wait()


def keep(lines: list[bytes], dropped: bool) -> tuple[list[bytes], bool]:
    """The lines to pass on, and whether the last line was dropped (TFLite ends its delegate
    line with an empty one, which goes with it)."""
    kept = []
    for line in lines:
        if NOISE.search(line) or (dropped and not line.strip()):
            dropped = True
            continue
        dropped = False
        kept.append(line)
    return kept, dropped


def pump(source: int, target: int) -> None:
    """Copy source to target line by line until end of file, without the noise."""
    pending, dropped = b"", False
    while True:
        ready, _, _ = select.select([source], [], [], PARTIAL_LINE_SECONDS if pending else None)
        if not ready:  # a prompt or a progress line: pass it on as it is
            _write(target, pending)
            pending, dropped = b"", False
            continue
        chunk = os.read(source, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        kept, dropped = keep(lines, dropped)
        if kept:
            _write(target, b"".join(line + b"\n" for line in kept))
    if pending and not NOISE.search(pending):
        _write(target, pending)


def _write(target: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(target, view):]


def main() -> None:
    """The filter process: ends when every writer of its stdin has gone."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # Ctrl-C stops the server; this drains after it
    with suppress(BrokenPipeError):
        pump(0, 1)


if __name__ == "__main__":
    main()
