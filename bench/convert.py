"""Bring your own model: how long a Keras file takes to convert (in the server's child, as
POST /v1/models/convert runs it), and the converted CNN's train step beside the hand-written
CNN of models/cnn.py (the same network, loss and SGD; the target is within 10 %)."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import models
from app.runtime.interpreter import LiteSession
from app.runtime.keras_child import convert_keras
from app.runtime.keras_options import parse_options
from bench.clients import BATCH, batches
from bench.harness import measure

STEPS = 200  # train steps of each model, in turns
OPTIONS = {"loss": "categorical_crossentropy", "from_logits": True, "label": {"name": "label"},
           "optimizer": {"name": "sgd", "learning_rate": 0.01}}


def keras_cnn() -> bytes:
    """models/cnn.py written in Keras, as a user would, saved as a .keras file."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    image = keras.Input((64, 64, 3), name="image")
    h = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(image)
    h = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(h)
    model = keras.Model(image, layers.Dense(10)(layers.Flatten()(h)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cnn.keras"
        model.save(path)
        return path.read_bytes()


def bench_convert(seconds: float = 2.0) -> dict[str, Any]:
    """Conversion seconds and train steps/s of the converted and the hand-written CNN."""
    data = keras_cnn()
    t0 = time.perf_counter()
    converted = convert_keras(data, parse_options(OPTIONS))
    convert_s = time.perf_counter() - t0
    hand = LiteSession(models.build_cached("cnn"))
    ours = LiteSession(converted.tflite)
    batch = batches("cnn")[0]
    hand_rate = measure("hand-written cnn train", lambda: hand.run("train", batch),
                        seconds=seconds)
    ours_rate = measure("converted cnn train", lambda: ours.run("train", batch),
                        seconds=seconds)
    # Step by step in turns, timed in this thread's CPU time: on a shared machine the
    # neighbours' load then weighs on both models alike and not on the ratio.
    hand_ms: list[float] = []
    ours_ms: list[float] = []
    for _ in range(STEPS):
        for lite, out in ((hand, hand_ms), (ours, ours_ms)):
            t0 = time.thread_time()
            lite.run("train", batch)
            out.append((time.thread_time() - t0) * 1000)
    hand_cpu, ours_cpu = statistics.median(hand_ms), statistics.median(ours_ms)
    return {"convert_s": convert_s, "keras_bytes": len(data),
            "tflite_bytes": len(converted.tflite), "hand_steps_per_s": hand_rate.per_s,
            "converted_steps_per_s": ours_rate.per_s, "hand_cpu_ms": hand_cpu,
            "converted_cpu_ms": ours_cpu, "ratio": hand_cpu / ours_cpu}


def print_convert(res: dict[str, Any]) -> None:
    """The conversion rows."""
    print(f"\nbring your own model (Keras CNN = models/cnn.py, batch {BATCH})")
    print(f"  conversion in the child: {res['convert_s']:.1f} s "
          f"({res['keras_bytes'] / 1e3:.0f} kB .keras -> {res['tflite_bytes'] / 1e3:.0f} kB "
          ".tflite)")
    print(f"  train steps/s (wall clock): hand-written {res['hand_steps_per_s']:.1f}, "
          f"converted {res['converted_steps_per_s']:.1f}")
    print(f"  train step, CPU ms (median of {STEPS} in turns): hand-written "
          f"{res['hand_cpu_ms']:.2f}, converted {res['converted_cpu_ms']:.2f}: converted "
          f"{res['ratio']:.3f}x the hand-written speed "
          f"[{'PASS' if res['ratio'] >= 0.90 else 'MISS'}] within 10 %")


def main() -> None:
    """`python -m bench.convert`: the conversion rows alone."""
    print_convert(bench_convert())


if __name__ == "__main__":
    main()
