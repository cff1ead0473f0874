"""``make demo-fleet``: FedAvg, local-only and FedPer on one label-skewed population, over HTTP,
compared in one table.

scikit-learn's bundled digits (no download) at 28x28: a fifth is the pooled test set, the
rest is dealt to devices two classes each (the `shards` split of McMahan et al.), every
device keeping a quarter of its examples to judge the model it ends with. The same
population is trained three ways: FedAvg (one global model for everyone), local only (every
device alone) and FedPer (FedAvg with the last layer kept on each device).

Run against a server started with ``make run``: ``python -m app.demo_fleet --url URL``.
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from httpx_sse import connect_sse

from app.cli.output import pct, table
from app.demo import digits_28

USER = "fleet-demo"
STRATEGIES: dict[str, dict[str, Any]] = {
    "FedAvg": {"strategy": {"name": "fedavg"}},
    "local only": {"strategy": {"name": "local"}},
    "FedPer": {"strategy": {"name": "fedavg"}, "personal": ["dense_2/"]},
}
COLUMNS = ("strategy", "test accuracy", "clients' mean", "clients' p10", "helped", "hurt",
           "fleet")


@dataclass
class Size:
    """How big a population, and how long it trains."""

    clients: int = 24
    per_round: int = 12
    rounds: int = 30
    test_fraction: float = 0.2


QUICK = Size(clients=12, per_round=6, rounds=6, test_fraction=0.5)


@dataclass
class Outcome:
    """What one strategy gave: the global model on the test set, and each device's own model
    (personalized where there is personalization) on its held-out examples."""

    strategy: str
    fleet_id: str
    status: str
    test_accuracy: float | None
    clients_mean: float | None
    clients_p10: float | None
    helped: float | None
    hurt: float | None


def npz(arrays: dict[str, np.ndarray]) -> bytes:
    """Arrays as an .npz file's bytes."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def upload(client: httpx.Client, name: str, x: np.ndarray, y: np.ndarray) -> str:
    """One of USER's datasets: images and one-hot labels; its id."""
    onehot = np.eye(10, dtype=np.float32)[y]
    r = client.post(f"/v1/users/{USER}/datasets", data={"name": name},
                    files={"file": (f"{name}.npz", npz({"x": x, "y": onehot}))})
    r.raise_for_status()
    return str(r.json()["id"])


def wait(client: httpx.Client, fleet_id: str) -> dict[str, Any]:
    """The fleet's final state, from the last event of its stream."""
    fleet: dict[str, Any] = {}
    with connect_sse(client, "GET", f"/v1/fleets/{fleet_id}/events",
                     timeout=httpx.Timeout(30.0, read=None)) as events:
        events.response.raise_for_status()
        for event in events.iter_sse():
            if event.data:
                fleet = event.json()
    return fleet


def outcome(client: httpx.Client, strategy: str, fleet: dict[str, Any]) -> Outcome:
    """The row of the table for one finished fleet."""
    r = client.get(f"/v1/fleets/{fleet['id']}/report")
    r.raise_for_status()
    final = r.json()["final"] or {}
    mine = final.get("client_accuracy_personal") or {}
    trained = fleet["spec"]["strategy"]["name"] != "local"  # local: the global model is untouched
    return Outcome(strategy, fleet["id"], fleet["status"],
                   final.get("global_accuracy") if trained else None,
                   mine.get("mean"), mine.get("p10"), final.get("helped"), final.get("hurt"))


def run(url: str, model_bytes: bytes | None = None, *, size: Size | None = None, seed: int = 0,
        headers: dict[str, str] | None = None) -> list[Outcome]:
    """Upload the MLP and the data, run the population three ways, one after the other."""
    size = size or Size()
    if model_bytes is None:
        import models

        model_bytes = models.build_cached("mlp")
    images, labels = digits_28()
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = int(len(order) * size.test_fraction)
    test, train = order[:cut], order[cut:]
    with httpx.Client(base_url=url, timeout=120, headers=headers) as client:
        r = client.post("/v1/models", files={"file": ("mlp.tflite", model_bytes)},
                        data={"name": "mlp (fleet demo)"})
        r.raise_for_status()
        base = {"model_id": r.json()["id"],
                "dataset_id": upload(client, "digits-population", images[train], labels[train]),
                "test_dataset_id": upload(client, "digits-test", images[test], labels[test]),
                "partition": {"kind": "shards", "classes_per_client": 2},
                "clients": size.clients, "clients_per_round": size.per_round,
                "rounds": size.rounds, "holdout": 0.25, "batch_size": 16, "seed": seed}
        results = []
        for name, strategy in STRATEGIES.items():
            r = client.post(f"/v1/users/{USER}/fleets", json={**base, **strategy})
            r.raise_for_status()
            print(f"{name}: fleet {r.json()['id']} ...", file=sys.stderr, flush=True)
            results.append(outcome(client, name, wait(client, r.json()["id"])))
    return results


def print_table(results: list[Outcome]) -> None:
    """The comparison, one row per strategy."""
    table(COLUMNS, [(o.strategy, pct(o.test_accuracy), pct(o.clients_mean), pct(o.clients_p10),
                     pct(o.helped), pct(o.hurt), o.fleet_id if o.status == "succeeded"
                     else f"{o.fleet_id} ({o.status})") for o in results])


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smaller population for a quick look ({QUICK.clients} clients, "
                             f"{QUICK.rounds} rounds)")
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else Size()
    if args.rounds:
        size = Size(size.clients, size.per_round, args.rounds, size.test_fraction)
    try:
        results = run(args.url, size=size)
    except httpx.HTTPError as exc:
        sys.exit(f"demo failed against {args.url}: {exc} (is `make run` serving there?)")
    print(f"{size.clients} devices, 2 digit classes each; {size.per_round} of them a round for "
          f"{size.rounds} rounds")
    print_table(results)
    print("clients' mean, p10: each device's own model (FedPer: with its own last layer) on "
          "its held-out examples")
    print("helped / hurt: the devices whose own model beats / trails the global one (local "
          "only: none to compare)")
    print("report pages:")
    for o in results:
        print(f"  {o.strategy:<10}  {args.url.rstrip('/')}/v1/fleets/{o.fleet_id}/report.html")
    if any(o.status != "succeeded" for o in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
