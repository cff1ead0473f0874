"""``make demo``: one base model, two users, two different personalizations, over HTTP.

Uses scikit-learn's bundled 8x8 digits (no download), scaled to the blog's 28x28.
Run against a server started with ``make run``: ``python -m app.demo --url http://127.0.0.1:8000``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

import httpx
import numpy as np

from app import quiet

USERS = {"birdwatcher": (0, 1, 2), "fruitlover": (7, 8, 9)}


def digits_28() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as float32 [n, 28, 28] in [0, 1], with int labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = digits.images.astype(np.float32) / 16.0
    big = np.kron(small, np.ones((1, 3, 3), np.float32))  # 24x24
    return np.pad(big, ((0, 0), (2, 2), (2, 2))), digits.target.astype(np.int64)


SAMPLE_WRITERS = 20
SAMPLE_TEST_FRACTION = 0.2


def sample_digits(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """digits.npz and digits_test.npz's arrays: `make demo-fleet`'s split of the digits (a
    fifth held out), x [n,28,28] float32, y one-hot [n,10]; the population also has `group`,
    SAMPLE_WRITERS writer-like ids (each with its own mix of digits and its own number of
    examples, a seeded Dirichlet(0.5) draw) for the `natural` partition."""
    images, labels = digits_28()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    cut = int(len(order) * SAMPLE_TEST_FRACTION)
    test, train = order[:cut], order[cut:]
    mix = np.random.default_rng(seed + 1).dirichlet(np.full(10, 0.5), SAMPLE_WRITERS)  # [g,10]
    chance = mix[:, labels[train]].T  # [n, g]: how likely each writer wrote each digit
    chance /= chance.sum(axis=1, keepdims=True)
    draws = np.random.default_rng(seed + 2).random(len(train))[:, None]
    group = np.minimum((chance.cumsum(axis=1) < draws).sum(axis=1), SAMPLE_WRITERS - 1)
    onehot = np.eye(10, dtype=np.float32)
    return ({"x": images[train], "y": onehot[labels[train]], "group": group.astype(np.int64)},
            {"x": images[test], "y": onehot[labels[test]]})


def split(labels: np.ndarray, classes: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train and held-out indices (80/20) of the examples of the given classes."""
    idx = np.flatnonzero(np.isin(labels, classes))
    np.random.default_rng(seed).shuffle(idx)
    cut = int(len(idx) * 0.8)
    return idx[:cut], idx[cut:]


@dataclass
class UserResult:
    """What one user's personalization achieved."""

    user_id: str
    session_id: str
    classes: tuple[int, ...]
    steps: int
    final_loss: float
    accuracy: float


@dataclass
class DemoResult:
    """Both users and how differently they now see the same images."""

    model_id: str
    users: list[UserResult]
    disagreement: float
    compared: int


def predict(client: httpx.Client, session_id: str, images: np.ndarray) -> np.ndarray:
    """Class predictions of a session's infer signature."""
    preds = []
    for start in range(0, len(images), 256):
        r = client.post(f"/v1/sessions/{session_id}/infer",
                        json={"inputs": {"x": images[start:start + 256].tolist()}})
        r.raise_for_status()
        preds.append(np.argmax(np.asarray(r.json()["outputs"]["output"]), axis=1))
    return np.concatenate(preds)


def personalize(client: httpx.Client, model_id: str, user_id: str, classes: tuple[int, ...],
                images: np.ndarray, labels: np.ndarray, *, epochs: int, seed: int) -> UserResult:
    """Create a session for the user and train it on their classes, batch by batch."""
    train_idx, test_idx = split(labels, classes, seed)
    r = client.post(f"/v1/users/{user_id}/sessions", json={"model_id": model_id})
    r.raise_for_status()
    session_id = r.json()["id"]
    rng = np.random.default_rng(seed)
    onehot = np.eye(10, dtype=np.float32)
    step, loss = 0, float("nan")
    for _ in range(epochs):
        order = rng.permutation(train_idx)
        for start in range(0, len(order), 32):
            batch = order[start:start + 32]
            r = client.post(f"/v1/sessions/{session_id}/train", json={"inputs": {
                "x": images[batch].tolist(), "y": onehot[labels[batch]].tolist()}})
            r.raise_for_status()
            step, loss = r.json()["step"], r.json()["outputs"]["loss"]
    accuracy = float(np.mean(predict(client, session_id, images[test_idx]) == labels[test_idx]))
    return UserResult(user_id, session_id, classes, step, loss, accuracy)


def run(url: str, model_bytes: bytes | None = None, *, epochs: int = 8, seed: int = 0,
        headers: dict[str, str] | None = None) -> DemoResult:
    """Upload the MLP, personalize it for two users, compare their predictions."""
    if model_bytes is None:
        import models

        with quiet.filtered_stderr():  # a first build imports TensorFlow and converts
            model_bytes = models.build_cached("mlp")
    images, labels = digits_28()
    with httpx.Client(base_url=url, timeout=120, headers=headers) as client:
        r = client.post("/v1/models", files={"file": ("mlp.tflite", model_bytes)},
                        data={"name": "mlp (demo)"})
        r.raise_for_status()
        model_id = r.json()["id"]
        users = [personalize(client, model_id, u, c, images, labels, epochs=epochs, seed=seed)
                 for u, c in USERS.items()]
        held_out = np.concatenate([split(labels, u.classes, seed)[1] for u in users])
        a, b = (predict(client, u.session_id, images[held_out]) for u in users)
    return DemoResult(model_id, users, float(np.mean(a != b)), len(held_out))


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("FLEETLITE_URL", "http://127.0.0.1:8000"),
                        help="the server (default: $FLEETLITE_URL, else http://127.0.0.1:8000)")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    try:
        result = run(args.url, epochs=args.epochs)
    except httpx.HTTPError as exc:
        sys.exit(f"demo failed against {args.url}: {exc} (is `make run` serving there?)")
    print(f"base model {result.model_id}")
    for u in result.users:
        print(f"  {u.user_id:12s} classes {u.classes}: {u.steps} train steps, "
              f"final loss {u.final_loss:.3f}, accuracy on held-out own classes {u.accuracy:.1%}"
              f"  (session {u.session_id})")
    print(f"  on the same {result.compared} held-out images their predictions differ "
          f"{result.disagreement:.1%} of the time")


if __name__ == "__main__":
    main()
