"""Helpers of the fleet tests: digits data, fleets started and followed to their end,
checkpoints read as named arrays, and FedAvg-style updates run on plain interpreters."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from httpx_sse import connect_sse

from app.demo import digits_28
from app.runtime.interpreter import LiteSession


def npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def digits(n: int | None = None, *, offset: int = 0) -> dict[str, np.ndarray]:
    """scikit-learn's digits at 28x28, one-hot labels, and a `writer` array (8 writers)."""
    x, y = digits_28()
    x, y = x[offset:], y[offset:]
    if n is not None:
        x, y = x[:n], y[:n]
    return {"x": x, "y": np.eye(10, dtype=np.float32)[y],
            "writer": (np.arange(len(y)) * 7 % 8).astype(np.int64)}


def upload_dataset(client: httpx.Client, user: str, arrays: dict[str, np.ndarray],
                   name: str = "digits") -> str:
    r = client.post(f"/v1/users/{user}/datasets", files={"file": ("d.npz", npz(**arrays))},
                    data={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["id"]  # type: ignore[no-any-return]


def start(client: httpx.Client, user: str, **spec: Any) -> dict[str, Any]:
    r = client.post(f"/v1/users/{user}/fleets", json=spec)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/fleets/{r.json()['id']}"
    return r.json()  # type: ignore[no-any-return]


def follow(client: httpx.Client, fleet_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The fleet's event stream to its end: [(event, data)]."""
    with connect_sse(client, "GET", f"/v1/fleets/{fleet_id}/events", timeout=300) as src:
        assert src.response.status_code == 200
        return [(e.event, orjson.loads(e.data)) for e in src.iter_sse()]


def finish(client: httpx.Client, fleet_id: str) -> dict[str, Any]:
    """The fleet's final state (its stream's `end` event), asserted to have succeeded."""
    events = follow(client, fleet_id)
    assert events[-1][0] == "end", events[-3:]
    fleet = events[-1][1]
    assert fleet["status"] == "succeeded", fleet
    return fleet  # type: ignore[no-any-return]


def checkpoint_bytes(client: httpx.Client, checkpoint_id: str) -> bytes:
    r = client.get(f"/v1/checkpoints/{checkpoint_id}/file")
    assert r.status_code == 200, r.text
    return r.content


def read_ckpt(data: bytes) -> dict[str, np.ndarray]:
    """A checkpoint's variables, read by TensorFlow itself."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.ckpt"
        path.write_bytes(data)
        reader = tf.train.load_checkpoint(str(path))
        return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def local_update(model: bytes, start: bytes, x: np.ndarray, y: np.ndarray, batch: int,
                 epochs: int = 1) -> dict[str, np.ndarray]:
    """What one client does, written out with a plain interpreter: restore `start`, train
    its examples in dataset order (the last partial batch too), save."""
    lite = LiteSession(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.ckpt"
        path.write_bytes(start)
        lite.restore(path)
        for _ in range(epochs):
            for i in range(0, len(x), batch):
                lite.run("train", {"x": x[i:i + batch], "y": y[i:i + batch]})
        lite.save(path)
        return read_ckpt(path.read_bytes())


def initial_weights(model: bytes) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "i.ckpt"
        LiteSession(model).save(path)
        return path.read_bytes()
