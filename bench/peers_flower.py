"""Flower's side of ``make bench-peers``: one federated run with Flower's documented API only.

Runs inside the peers virtualenv (flwr[simulation]==1.42.0, Ray, TensorFlow 2.19.1, Keras 3.15),
never in the project's: ``python -m bench.peers_flower --data D.npz --mode per-call --out R``.
The ServerApp is Flower's quickstart-tensorflow one (FedAvg's ``strategy.start``) with a
server-side ``evaluate_fn`` on the held-out digits; the ClientApp trains with ``model.fit``
either as the quickstart does (``clear_session``, a model built and compiled per call) or
keeping one compiled model per Ray actor. Nothing from ``app/`` is imported here.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402 - after the log level, as Flower's quickstart does
import numpy as np  # noqa: E402
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402

DATA_ENV, CONFIG_ENV = "PEERS_DATA", "PEERS_CONFIG"  # read by the Ray actors too
_cache: dict[str, Any] = {}  # per process: the data, and (per-actor mode) the one model


def load_model(learning_rate: float) -> keras.Model:
    """The blog's MLP in Keras: 28x28 -> Dense 128 relu -> Dense 10, softmax cross-entropy,
    plain SGD (the .tflite's own optimizer and learning rate)."""
    model = keras.Sequential([
        keras.Input(shape=(28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _data() -> Any:
    if "data" not in _cache:
        _cache["data"] = dict(np.load(os.environ[DATA_ENV]))
    return _cache["data"]


def _config() -> dict[str, Any]:
    return json.loads(os.environ[CONFIG_ENV])  # type: ignore[no-any-return]


def load_partition(partition_id: int) -> tuple[np.ndarray, np.ndarray]:
    """A client's examples: the same iid split fleetlite's fleet makes (client_of)."""
    d = _data()
    mine = np.flatnonzero(d["client_of"] == partition_id)
    return d["x"][mine], d["y"][mine]


client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received global model on this node's examples for the local epochs."""
    cfg = _config()
    x, y = load_partition(int(context.node_config["partition-id"]))
    if cfg["mode"] == "per-call":  # Flower's quickstart-tensorflow, line for line
        keras.backend.clear_session()
        model = load_model(cfg["learning_rate"])
    else:  # one compiled model per actor process, reused by every call it serves
        if "model" not in _cache:
            _cache["model"] = load_model(cfg["learning_rate"])
        model = _cache["model"]
    model.set_weights(msg.content["arrays"].to_numpy_ndarrays())
    history = model.fit(x, y, epochs=cfg["local_epochs"], batch_size=cfg["batch_size"],
                        verbose=0)
    metrics = {"num-examples": len(x), "train_loss": float(history.history["loss"][-1])}
    content = RecordDict({"arrays": ArrayRecord(model.get_weights()),
                          "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


server_app = ServerApp()
result: dict[str, Any] = {}  # filled by the ServerApp, read by main() in the same process


@server_app.main()
def main_server(grid: Grid, context: Context) -> None:
    """FedAvg for the configured rounds, the global model evaluated after each."""
    cfg = _config()
    d = _data()
    init = [d[f"init_{i}"] for i in range(4)]  # fleetlite's initial checkpoint, Keras order
    evaluator = load_model(cfg["learning_rate"])
    ends: dict[int, float] = {}
    accuracy: dict[int, float] = {}

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        evaluator.set_weights(arrays.to_numpy_ndarrays())
        _, acc = evaluator.evaluate(d["x_test"], d["y_test"], verbose=0)
        ends[server_round] = time.perf_counter()
        accuracy[server_round] = float(acc)
        return MetricRecord({"accuracy": float(acc)})

    strategy = FedAvg(fraction_train=cfg["fraction_train"], fraction_evaluate=0.0,
                      min_train_nodes=cfg["per_round"], min_available_nodes=cfg["clients"])
    run = strategy.start(grid=grid, initial_arrays=ArrayRecord(init),
                         num_rounds=cfg["rounds"], evaluate_fn=evaluate)
    # A round whose every reply failed (say, a Ray worker killed for memory) has no train
    # metrics: the run is then not a measurement of the workload, and the driver says so.
    result.update(round_ends=ends, accuracy=accuracy,
                  rounds_trained=len(run.train_metrics_clientapp))


def main() -> None:
    """Run one simulation and write its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--config", required=True, help="JSON: mode, clients, rounds, ...")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.environ[DATA_ENV], os.environ[CONFIG_ENV] = args.data, args.config
    # Imported by module name, so the Ray actors import the same module (its _cache lives
    # on in each actor between calls) instead of receiving pickled copies of __main__.
    from flwr.simulation import run_simulation

    from bench import peers_flower as me

    cfg = json.loads(args.config)
    started = time.perf_counter()
    run_simulation(server_app=me.server_app, client_app=me.client_app,
                   num_supernodes=cfg["clients"],
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": cfg["cpus"]}})
    wall = time.perf_counter() - started
    ends, acc = me.result["round_ends"], me.result["accuracy"]
    last = max(ends)
    with open(args.out, "w") as f:
        json.dump({"wall_s": wall, "rounds_2_on_s": ends[last] - ends[1],
                   "final_accuracy": acc[last], "accuracy": acc,
                   "rounds_trained": me.result["rounds_trained"],
                   "flwr": __import__("flwr").__version__, "keras": keras.__version__}, f)


if __name__ == "__main__":
    main()
