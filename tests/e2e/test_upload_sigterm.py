"""A SIGTERM while a dataset upload is in flight: the server finishes or refuses it cleanly
(never a 500) and exits within the graceful-shutdown window the Dockerfile gives it."""

from __future__ import annotations

import io
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.test_restart import ServerProcess, env_for
from tests.helpers import backend_settings

pytestmark = pytest.mark.slow

GRACE_S = 20  # uvicorn --timeout-graceful-shutdown in the Dockerfile and docker-compose.yml
ARRAYS = 256  # the most an upload may hold: the slowest parse a client can ask for


def _npz(arrays: int, examples: int) -> bytes:
    rng = np.random.default_rng(5)
    data = {f"a{i:06d}": rng.integers(0, 255, examples, dtype=np.uint8) for i in range(arrays)}
    buf = io.BytesIO()
    np.savez(buf, **data)  # type: ignore[arg-type]
    return buf.getvalue()


def _multipart(data: bytes, boundary: str) -> tuple[bytes, bytes]:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"d.npz\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    return head + data, f"\r\n--{boundary}--\r\n".encode()


@pytest.fixture
def server(tmp_path: Path, s3_endpoint: str) -> Iterator[ServerProcess]:
    with backend_settings("sqlite-local", tmp_path, s3_endpoint) as s:
        env = env_for(s) | {"UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN": str(GRACE_S)}  # as deployed
    live = ServerProcess(env, tmp_path / "server.log")
    try:
        yield live
    finally:
        live.kill_if_running()


# 256 arrays of 40,000 examples (about 10 MB): the array bound at its fullest, stored; 100,000
# one-element arrays (about 20 MB): took 226 s of CPU to parse, and a SIGTERM then 62 s and a 500.
UPLOADS = {"at-the-bound": (ARRAYS, 40_000, 201), "100000-arrays": (100_000, 1, 422)}


@pytest.mark.parametrize("case", list(UPLOADS))
def test_sigterm_during_a_dataset_upload_ends_in_the_window_without_a_500(
        server: ServerProcess, case: str) -> None:
    arrays, examples, status = UPLOADS[case]
    body, tail = _multipart(_npz(arrays, examples), "fleetlite-upload")
    half = len(body) // 2
    sent_half, signalled = threading.Event(), threading.Event()

    def stream() -> Iterator[bytes]:
        yield body[:half]
        sent_half.set()
        assert signalled.wait(60)  # the rest only once the server has its SIGTERM
        yield body[half:]
        yield tail

    answer: list[httpx.Response | Exception] = []

    def upload() -> None:
        try:
            answer.append(httpx.post(
                f"{server.url}/v1/users/ann/datasets", content=stream(), timeout=120,
                headers={"content-type": "multipart/form-data; boundary=fleetlite-upload"}))
        except httpx.HTTPError as exc:
            answer.append(exc)

    client = threading.Thread(target=upload)
    client.start()
    assert sent_half.wait(60)
    signalled_at = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    signalled.set()
    client.join(GRACE_S + 30)
    code = server.proc.wait(GRACE_S + 30)
    took = time.monotonic() - signalled_at
    assert took < GRACE_S + 10, f"shutdown took {took:.1f} s"
    assert code in (0, -signal.SIGTERM)
    assert b"Application shutdown complete" in Path(server.log.name).read_bytes()
    (result,) = answer
    assert isinstance(result, httpx.Response), result  # the upload in flight is answered
    assert result.status_code in (status, 503), result.text
    if result.status_code == 201:
        assert len(result.json()["arrays"]) == ARRAYS
    if result.status_code == 422:
        assert f"{arrays} arrays" in result.json()["detail"]

