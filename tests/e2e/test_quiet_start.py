"""A quiet start: `make run` and the CLI say what the service does, and nothing of TensorFlow's
start-up noise (cuFFT/cuDNN/cuBLAS "already registered", a failed cuInit, TFLite's INFO lines)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import new_session, upload

ROOT = Path(__file__).resolve().parents[2]
NOISE = ("cuFFT", "cuDNN", "cuBLAS", "cuInit", "computation placer", "absl::InitializeLog",
         "TfLiteFlexDelegate", "Created TensorFlow Lite", "I0000 ")


def assert_quiet(text: str) -> None:
    noisy = [line for line in text.splitlines() if any(n in line for n in NOISE)]
    assert not noisy, "\n".join(noisy)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_make_run_starts_and_stops_without_tensorflow_noise(tmp_path: Path,
                                                           mlp_bytes: bytes) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLEETLITE_", "TF_CPP_"))}
    env.update(FLEETLITE_DATABASE_URL=f"sqlite:///{tmp_path / 'fleetlite.db'}",
               FLEETLITE_STORE_URL=str(tmp_path / "store"),
               FLEETLITE_WORK_DIR=str(tmp_path / "tmp"))
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        # -o: the install stamp counts as fresh, so the test never installs anything
        make = subprocess.Popen(["make", "-o", ".venv/.installed", "run", f"PORT={port}"],
                                cwd=ROOT, env=env, stdout=stdout, stderr=stderr,
                                start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while True:
                assert make.poll() is None, err.read_text()
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, err.read_text()
                time.sleep(0.2)
            with httpx.Client(base_url=url, timeout=60) as c:  # the first interpreter too
                sid = new_session(c, "alice", upload(c, mlp_bytes, "mlp"))
                for call in ("train", "infer"):  # the first interpreter's delegates log
                    r = c.post(f"/v1/sessions/{sid}/{call}", json={"inputs": {
                        "x": [[[0.5] * 28] * 28], **({"y": [[1.0] + [0.0] * 9]}
                                                     if call == "train" else {})}})
                    assert r.status_code == 200, r.text
        finally:
            os.killpg(make.pid, signal.SIGINT)  # Ctrl-C in the terminal
            make.wait(90)
    logs = err.read_text() + out.read_text()
    assert_quiet(logs)
    for line in ("fleetlite ready: database sqlite:///", "FLEETLITE_ADMIN_TOKEN is not set",
                 f"Uvicorn running on http://127.0.0.1:{port}", "Application startup complete",
                 "Application shutdown complete"):
        assert line in logs, (line, logs)


@pytest.mark.slow
@pytest.mark.parametrize("command", [["fleetlite", "models", "build", "mlp"],
                                     ["python", "-m", "models", "build", "mlp"]])
def test_building_a_model_locally_prints_no_tensorflow_noise(tmp_path: Path,
                                                              command: list[str]) -> None:
    program = str(Path(sys.executable).with_name(command[0]))
    run = subprocess.run([program, *command[1:], str(tmp_path / "m.tflite")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, check=False,
                         env={k: v for k, v in os.environ.items() if not k.startswith("TF_")})
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "m.tflite").stat().st_size > 100_000
    assert_quiet(run.stderr + run.stdout)
    assert run.stderr == ""
