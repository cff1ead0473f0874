"""Job throughput beside the raw interpreter loop, as back-to-back pairs.

On a shared VM identical loops vary by a third, in spells of seconds. A ratio of two
figures measured a minute apart measures the spells; so each ratio here is the median of
several pairs, each pair measured back to back, in alternating order.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from bench.clients import BATCH
from bench.harness import Service
from bench.loops import (
    dataset,
    raw_loop,
    raw_loop_cnn,
    raw_loops_in_threads,
    run_cnn_jobs,
    run_jobs,
)

# (key, label, what the ratio is of)
ROWS = (
    ("mlp_raw_loop", "mlp raw loop, 128-step epochs", ""),
    ("mlp_raw_loop_save_each_epoch", "mlp raw loop + save signature an epoch", "raw loop"),
    ("mlp_one_job", "mlp one job", "raw loop"),
    ("mlp_one_job_polled", "mlp one job (status polled every 250 ms)", "raw loop + save"),
    ("mlp_two_jobs", "mlp two jobs at once", "one job"),
    ("mlp_raw_loops_two_threads", "mlp raw loops, two threads", "raw loop"),
    ("mlp_raw_loop_long_epochs", "mlp raw loop, 512-step epochs", ""),
    ("mlp_one_job_long_epochs", "mlp one job, 512-step epochs", "raw loop"),
    ("cnn_raw_loop", "cnn raw loop, 32-step epochs", ""),
    ("cnn_one_job", "cnn one job", "raw loop"),
    ("cnn_two_jobs", "cnn two jobs at once", "one job"),
    ("cnn_raw_loops_two_threads", "cnn raw loops, two threads", "raw loop"),
)


class Pairs:
    """Steps/s of each subject, and of the reference measured right before or after it."""

    def __init__(self) -> None:
        self.rates: dict[str, list[float]] = {}
        self.ratios: dict[str, list[float]] = {}

    def pair(self, ref: str, ref_run: Callable[[], float], sub: str,
             sub_run: Callable[[], float], flip: bool) -> None:
        if flip:
            s, r = sub_run(), ref_run()
        else:
            r, s = ref_run(), sub_run()
        self.rates.setdefault(ref, []).append(r)
        self.rates.setdefault(sub, []).append(s)
        self.ratios.setdefault(sub, []).append(s / r)

    def result(self) -> dict[str, Any]:
        return {"steps_per_s": {k: statistics.median(v) for k, v in self.rates.items()},
                "ratio": {k: statistics.median(v) for k, v in self.ratios.items()},
                "pairs": {k: len(v) for k, v in self.ratios.items()}}


def bench_jobs(svc: Service, mlp: bytes, cnn: bytes, mlp_id: str, cnn_id: str, *,
               quick: bool) -> dict[str, Any]:
    """MLP jobs run 4096 examples (128 steps and a checkpoint an epoch, 25-50 ms) for 16
    epochs, so that what a job pays once (its dataset load, its last checkpoint) is not the
    figure; and 16384 examples (512-step epochs) for 4: the same steps, a quarter the
    checkpoints. CNN jobs run 32-step epochs (0.3-0.5 s)."""
    short, long = dataset(4096), dataset(16384)
    epochs, long_epochs = (2, 1) if quick else (16, 4)
    p = Pairs()

    def raw() -> float:
        return raw_loop(mlp, short, epochs, BATCH)

    def one() -> float:
        return run_jobs(svc, mlp_id, short, epochs, BATCH, 1)

    for i in range(1 if quick else 8):
        flip = i % 2 == 1
        p.pair("mlp_raw_loop", raw, "mlp_one_job", one, flip)
        p.pair("mlp_raw_loop", raw, "mlp_raw_loop_save_each_epoch",
               lambda: raw_loop(mlp, short, epochs, BATCH, save=True), flip)
        # A job saves a checkpoint an epoch, and run_jobs polls its status every 250 ms.
        p.pair("mlp_raw_loop_save_each_epoch",
               lambda: raw_loop(mlp, short, epochs, BATCH, save=True), "mlp_one_job_polled",
               one, flip)
        p.pair("mlp_raw_loop", raw, "mlp_raw_loops_two_threads",
               lambda: raw_loops_in_threads(mlp, short, epochs, BATCH), flip)
        p.pair("mlp_one_job", one, "mlp_two_jobs",
               lambda: run_jobs(svc, mlp_id, short, epochs, BATCH, 2), flip)
        p.pair("mlp_raw_loop_long_epochs", lambda: raw_loop(mlp, long, long_epochs, BATCH),
               "mlp_one_job_long_epochs",
               lambda: run_jobs(svc, mlp_id, long, long_epochs, BATCH, 1), flip)
    for i in range(1 if quick else 3):
        flip = i % 2 == 1
        p.pair("cnn_raw_loop", lambda: raw_loop_cnn(cnn, 1), "cnn_one_job",
               lambda: run_cnn_jobs(svc, cnn_id, 1), flip)
        p.pair("cnn_raw_loop", lambda: raw_loop_cnn(cnn, 1), "cnn_raw_loops_two_threads",
               lambda: raw_loop_cnn(cnn, 2), flip)
        p.pair("cnn_one_job", lambda: run_cnn_jobs(svc, cnn_id, 1), "cnn_two_jobs",
               lambda: run_cnn_jobs(svc, cnn_id, 2), flip)
    out = p.result()
    out["mlp_epoch_steps"] = -(-len(short["x"]) // BATCH)
    return out


def print_jobs(j: dict[str, Any]) -> None:
    """The jobs table: median steps/s, and the median ratio of back-to-back pairs."""
    rate, ratio = j["steps_per_s"], j["ratio"]
    print(f"\njobs, batch {BATCH} (medians of {j['pairs']['mlp_one_job']} back-to-back pairs for "
          f"mlp, {j['pairs']['cnn_one_job']} for cnn)")
    print(f"  {'':40s} {'steps/s':>9} {'ratio':>7}  to")
    for key, label, of in ROWS:
        r = f"{ratio[key]:7.3f}" if key in ratio else ""
        print(f"  {label:40s} {rate[key]:9.1f} {r:>7}  {of}")
    steps, raw = j["mlp_epoch_steps"], rate["mlp_raw_loop"]

    def extra_ms(key: str) -> float:  # an epoch's cost beyond the raw loop
        return (1 / ratio[key] - 1) * steps / raw * 1000

    print(f"  an mlp epoch ({steps} steps, {steps / raw * 1000:.1f} ms raw) costs a job "
          f"{extra_ms('mlp_one_job'):.2f} ms more than the raw loop; the save signature alone "
          f"{extra_ms('mlp_raw_loop_save_each_epoch'):.2f} ms")
