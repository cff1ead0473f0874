"""Parent side of model validation: a probe child started by the first upload that needs it,
replaced when it dies, and stopped after a quiet spell (it holds TensorFlow, ~0.6 GB)."""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from app.errors import InvalidModel
from app.runtime.signatures import Signatures, signatures_from_json

log = logging.getLogger("fleetlite.validator")


@dataclass(frozen=True)
class Probed:
    """What the smoke run found: the signatures, and the train signature's time per example
    on this server (median of a short run at a fixed batch; None if it could not be timed)."""

    signatures: Signatures
    train_ms_per_example: float | None


class ModelValidator:
    """Smoke-runs uploaded models in a child process, one at a time."""

    def __init__(
        self,
        timeout: float,
        recycle_after: int = 100,
        *,
        idle_seconds: float = 60.0,
        command: Sequence[str] | None = None,
    ) -> None:
        self._timeout = timeout
        self._idle_seconds = idle_seconds  # 0: once started, the child stays
        # The child's argv; tests substitute a process that crashes or hangs.
        self._command = (
            list(command) if command is not None else [sys.executable, "-m", "app.runtime.probe"]
        )
        self._recycle_after = recycle_after
        # The lock owns _proc, _served, _last_used and _timer: every touch holds it.
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._served = 0
        self._started = 0
        self._last_used = 0.0
        self._timer: threading.Timer | None = None

    def validate(self, model: bytes) -> Signatures:
        """The model's signatures, or InvalidModel with the reason."""
        return self.probe(model).signatures

    def probe(self, model: bytes) -> Probed:
        """The model's signatures and measured train time, or InvalidModel with the reason."""
        with self._lock:
            proc = self._ensure()
            line = self._exchange(proc, len(model).to_bytes(8, "big") + model)
            self._served += 1
            if line is None:
                code = self._reap()
                log.warning("model probe died (exit %s) on a %d-byte upload", code, len(model))
                raise InvalidModel(
                    f"the model crashed the TFLite interpreter during its smoke run (exit {code})"
                )
            try:
                reply = json.loads(line)
                ok = bool(reply["ok"])
            except (ValueError, KeyError, TypeError):
                self._reap()
                raise InvalidModel("the smoke run ended in an unreadable state") from None
            if self._served >= self._recycle_after:
                self._reap()
            self._idle_from_now()
        if not ok:
            raise InvalidModel(str(reply.get("reason", "rejected")))
        ms = reply.get("train_ms_per_example")
        return Probed(signatures_from_json(reply["signatures"]),
                      float(ms) if isinstance(ms, int | float) else None)

    def _exchange(self, proc: subprocess.Popen[bytes], payload: bytes) -> bytes | None:
        """Send the request and read one reply line within the time limit; None if the
        child died first. Non-blocking both ways, so a stuck child cannot stall us."""
        assert proc.stdin is not None and proc.stdout is not None
        out_fd, in_fd = proc.stdin.fileno(), proc.stdout.fileno()
        os.set_blocking(out_fd, False)
        deadline = time.monotonic() + self._timeout
        view, sent, reply = memoryview(payload), 0, bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._reap()
                raise InvalidModel(f"the smoke run did not finish within {self._timeout:g} s")
            writing = [out_fd] if sent < len(view) else []
            readable, writable, _ = select.select([in_fd], writing, [], remaining)
            if writable:
                try:
                    sent += os.write(out_fd, view[sent:sent + (1 << 16)])
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    return None
            if readable:
                chunk = os.read(in_fd, 1 << 16)
                if not chunk:
                    return None
                reply += chunk
                if b"\n" in reply:
                    return bytes(reply[:reply.index(b"\n")])

    @property
    def running(self) -> bool:
        """Whether a probe child is alive now."""
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    @property
    def children_started(self) -> int:
        """How many probe children this validator has started (cold starts)."""
        return self._started

    def start(self) -> None:
        """Start the child now (a warm first upload); it stops again after the idle time."""
        with self._lock:
            self._ensure()
            self._idle_from_now()

    def close(self) -> None:
        """Stop the child."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._reap()

    def _idle_from_now(self) -> None:
        """Arm the idle stop: the child goes once nothing used it for idle_seconds."""
        self._last_used = time.monotonic()
        if self._idle_seconds <= 0 or self._proc is None or self._timer is not None:
            return  # a timer already armed re-checks _last_used when it fires
        self._arm(self._idle_seconds)

    def _arm(self, delay: float) -> None:
        self._timer = threading.Timer(delay, self._stop_if_idle)
        self._timer.daemon = True
        self._timer.start()

    def _stop_if_idle(self) -> None:
        with self._lock:
            self._timer = None
            if self._proc is None:
                return
            quiet = time.monotonic() - self._last_used
            if quiet >= self._idle_seconds:
                log.info("model probe idle %.0f s: stopped", quiet)
                self._reap()
            else:
                self._arm(self._idle_seconds - quiet)

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
            self._proc = subprocess.Popen(
                self._command,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0,
                env=env, start_new_session=True,
            )
            self._served = 0
            self._started += 1
        return self._proc

    def _reap(self) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        return code
