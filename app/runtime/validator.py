"""Parent side of model validation: a long-lived probe child, replaced when it dies."""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO

from app.errors import InvalidModel
from app.runtime.signatures import Signatures, signatures_from_json

log = logging.getLogger("fleetlite.validator")


class ModelValidator:
    """Smoke-runs uploaded models in a child process, one at a time."""

    def __init__(
        self,
        timeout: float,
        recycle_after: int = 100,
        *,
        command: Sequence[str] | None = None,
    ) -> None:
        self._timeout = timeout
        # The child's argv; tests substitute a process that crashes or hangs.
        self._command = (
            list(command) if command is not None else [sys.executable, "-m", "app.runtime.probe"]
        )
        self._recycle_after = recycle_after
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._served = 0

    def validate(self, model: bytes) -> Signatures:
        """The model's signatures, or InvalidModel with the reason."""
        with self._lock:
            proc = self._ensure()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(len(model).to_bytes(8, "big") + model)
                proc.stdin.flush()
                line = self._read_line(proc.stdout)
            except (BrokenPipeError, OSError):
                line = b""
            self._served += 1
            if not line:
                code = self._reap()
                log.warning("model probe died (exit %s) on a %d-byte upload", code, len(model))
                raise InvalidModel(
                    f"the model crashed the TFLite interpreter during its smoke run (exit {code})"
                )
            if self._served >= self._recycle_after:
                self._reap()
        reply = json.loads(line)
        if not reply["ok"]:
            raise InvalidModel(reply["reason"])
        return signatures_from_json(reply["signatures"])

    def start(self) -> None:
        """Start the child now, so its TensorFlow import overlaps the server's start."""
        with self._lock:
            self._ensure()

    def close(self) -> None:
        """Stop the child."""
        with self._lock:
            self._reap()

    def _read_line(self, stream: IO[bytes]) -> bytes:
        ready, _, _ = select.select([stream], [], [], self._timeout)
        if not ready:
            self._reap()
            raise InvalidModel(f"the smoke run did not finish within {self._timeout:g} s")
        return stream.readline()

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
            self._proc = subprocess.Popen(
                self._command,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )
            self._served = 0
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
