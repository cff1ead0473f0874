"""What a dataset upload costs: POST to answer for an .npz at the array bound (accepted) and
for one of 10,000 arrays (refused from the zip's directory, before any array is read), and
the parse alone, in process, to show it grows linearly with the arrays."""

from __future__ import annotations

import io
import statistics
import time
from typing import Any

import httpx
import numpy as np

from app.runtime.datasets import read_npz
from bench.harness import Service

REPEATS = 5
BOUND = 256  # FLEETLITE_MAX_DATASET_ARRAYS's default


def npz(arrays: int, examples: int = 64) -> bytes:
    """An .npz of `arrays` uint8 arrays of `examples` examples each."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, **{f"a{i:06d}": rng.integers(0, 255, examples, dtype=np.uint8)  # type: ignore[arg-type]
                     for i in range(arrays)})
    return buf.getvalue()


def _post_ms(api: httpx.Client, data: bytes, status: int) -> float:
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        r = api.post("/v1/users/bench/datasets", files={"file": ("d.npz", data)},
                     data={"name": "bench"})
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == status, r.text
    return statistics.median(times)


def _parse_ms(data: bytes) -> float:
    t0 = time.perf_counter()
    read_npz(data)
    return (time.perf_counter() - t0) * 1000


def bench_uploads(svc: Service) -> dict[str, Any]:
    """Median POST-to-answer ms for both uploads, and the unbounded parse at 2,500 to 10,000."""
    accepted, refused = npz(BOUND), npz(10_000, examples=1)
    with httpx.Client(base_url=svc.url, timeout=120) as api:
        out: dict[str, Any] = {
            "accepted_256_arrays_ms": _post_ms(api, accepted, 201),
            "refused_10000_arrays_ms": _post_ms(api, refused, 422),
            "sizes_bytes": {"accepted": len(accepted), "refused": len(refused)}}
    out["parse_ms_by_arrays"] = {n: _parse_ms(npz(n, examples=1)) for n in (2500, 5000, 10_000)}
    return out


def print_uploads(res: dict[str, Any]) -> None:
    """The upload rows."""
    print("\ndataset uploads (POST to answer, median of 5)")
    print(f"  {BOUND} arrays, accepted: {res['accepted_256_arrays_ms']:.1f} ms "
          f"({res['sizes_bytes']['accepted'] / 1e3:.0f} kB)")
    print(f"  10,000 arrays, refused (422): {res['refused_10000_arrays_ms']:.1f} ms "
          f"({res['sizes_bytes']['refused'] / 1e6:.1f} MB)")
    parse = ", ".join(f"{n:,} arrays {ms:.0f} ms" for n, ms in res["parse_ms_by_arrays"].items())
    print(f"  the parse alone, unbounded (linear in the arrays): {parse}")


def main() -> None:
    """`python -m bench.uploads`: the upload rows alone."""
    svc = Service()
    try:
        print_uploads(bench_uploads(svc))
    finally:
        svc.close()


if __name__ == "__main__":
    main()
