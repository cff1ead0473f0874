"""Fixtures of the command line tests: files, and a model, dataset and session made by the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import Result

from tests.cli.support import USER, cli, field, ok
from tests.helpers import LiveServer


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, mlp_bytes: bytes) -> Path:
    """A directory with mlp.tflite and digits.npz (x [200,28,28], y one-hot [200,10])."""
    root = tmp_path_factory.mktemp("cli-files")
    (root / "mlp.tflite").write_bytes(mlp_bytes)
    rng = np.random.default_rng(0)
    x = rng.random((200, 28, 28), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 200)]
    np.savez(root / "digits.npz", x=x, y=y)
    return root


@pytest.fixture(scope="module")
def upload_result(server: LiveServer, files: Path) -> Result:
    """`models upload` of the MLP (one smoke run per module)."""
    return ok(cli(server, "models", "upload", str(files / "mlp.tflite"), "--name", "mlp-cli"))


@pytest.fixture(scope="module")
def model_id(upload_result: Result) -> str:
    """The id the upload printed."""
    return field(upload_result.stdout, "model")


@pytest.fixture(scope="module")
def dataset_id(server: LiveServer, files: Path, model_id: str) -> str:
    """The .npz uploaded for USER, checked against the model."""
    out = ok(cli(server, "datasets", "upload", USER, str(files / "digits.npz"),
                 "--model", model_id)).stdout
    assert field(out, "examples") == "200"
    assert re.search(r"^\s+x\s+float32\[200,28,28\]$", out, re.M), out
    return field(out, "dataset")


@pytest.fixture
def session_id(server: LiveServer, model_id: str) -> str:
    """A fresh session of USER on the MLP."""
    return field(ok(cli(server, "sessions", "create", USER, "--model", model_id)).stdout,
                 "session")
