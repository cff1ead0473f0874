"""``make demo-privacy``: what user-level differential privacy costs in accuracy, over HTTP.

scikit-learn's bundled digits at 28x28: a fifth is the pooled test set, the rest is dealt to
100 devices (iid), 20 of them a round. The same population is trained with DP-FedAvg at
noise multipliers 0, 0.5 and 1.0 (adaptive clipping, Andrew et al.'s defaults), and the
table puts each fleet's test accuracy beside its epsilon at delta 1e-5, with the compare
page's link (GET /v1/fleets/compare shows them side by side).

Run against a server started with ``make run``: ``python -m app.demo_privacy --url URL``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx
import numpy as np

from app.cli.output import pct, table
from app.demo import digits_28
from app.demo_fleet import USER, upload, wait

NOISE = (0.0, 0.5, 1.0)
COLUMNS = ("noise z", "test accuracy", "epsilon (delta 1e-5)", "rounds", "fleet")


def run(url: str, *, rounds: int = 30, seed: int = 0,
        headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Upload the MLP and the data, run one fleet per noise multiplier; their rows."""
    import models

    images, labels = digits_28()
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = len(order) // 5
    test, train = order[:cut], order[cut:]
    rows = []
    with httpx.Client(base_url=url, timeout=120, headers=headers) as client:
        r = client.post("/v1/models", files={"file": ("mlp.tflite", models.build_cached("mlp"))},
                        data={"name": "mlp (privacy demo)"})
        r.raise_for_status()
        base = {"model_id": r.json()["id"],
                "dataset_id": upload(client, "digits-population", images[train], labels[train]),
                "test_dataset_id": upload(client, "digits-test", images[test], labels[test]),
                "clients": 100, "clients_per_round": 20, "rounds": rounds, "batch_size": 16,
                "seed": seed, "strategy": {"name": "fedavgm", "server_lr": 1.0, "momentum": 0.9}}
        for z in NOISE:
            spec = {**base, "name": f"DP-FedAvg z={z:g}",
                    "privacy": {"noise_multiplier": z, "clipping": {"kind": "adaptive"}}}
            r = client.post(f"/v1/users/{USER}/fleets", json=spec)
            r.raise_for_status()
            print(f"z={z:g}: fleet {r.json()['id']} ...", file=sys.stderr, flush=True)
            fleet = wait(client, r.json()["id"])
            report = client.get(f"/v1/fleets/{fleet['id']}/report").json()
            eps = (report.get("epsilon") or [None])[-1]
            rows.append({"z": z, "accuracy": (report.get("final") or {}).get("global_accuracy"),
                         "epsilon": eps, "rounds": report["rounds"], "fleet": fleet["id"],
                         "status": fleet["status"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    try:
        rows = run(args.url, rounds=args.rounds)
    except httpx.HTTPError as exc:
        sys.exit(f"demo failed against {args.url}: {exc} (is `make run` serving there?)")
    print(f"100 devices (iid digits), 20 a round for {args.rounds} rounds, DP-FedAvg with "
          "adaptive clipping and server momentum 0.9")
    table(COLUMNS, [(f"{r['z']:g}", pct(r["accuracy"]),
                     "no guarantee" if r["epsilon"] is None else f"{r['epsilon']:.2f}",
                     r["rounds"], r["fleet"]) for r in rows])
    ids = ",".join(r["fleet"] for r in rows)
    print(f"side by side: {args.url.rstrip('/')}/v1/fleets/compare.html?ids={ids}")
    if any(r["status"] != "succeeded" for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
