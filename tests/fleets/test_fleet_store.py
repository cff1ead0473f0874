"""A store that refuses writes in the middle of a fleet (remounted read-only, or full) pauses
the fleet with the reason, makes /readyz fail, and once it takes writes again the fleet goes
on from its last committed round and ends as its uninterrupted twin. The store is a real
filesystem: a small tmpfs mounted for the test (the suite runs as root, as CI does)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.db.migrate import upgrade
from app.services.fleet import run as fleet_run
from tests.fleets.support import digits, finish, start, upload_dataset
from tests.helpers import LiveServer, until, upload


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs for the store, unmounted afterwards."""
    point = tmp_path / "store"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(point)], check=True)
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture
def server(tmp_path: Path, mount: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setattr(fleet_run, "FIRST_RETRY_S", 0.05)
    monkeypatch.setattr(fleet_run, "LONGEST_RETRY_S", 0.2)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    live = LiveServer(Settings(database_url=url, store_url=str(mount),  # type: ignore[call-arg]
                               work_dir=str(tmp_path / "tmp"), autosave_seconds=3600)).start()
    try:
        yield live
    finally:
        live.stop()


def _remount(point: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(point)], check=True)


def _fill(point: Path, name: str) -> Path:
    filler = point / name
    # in 4 KB blocks, so that not even a page is left (a 1 MB block left up to 1 MB free)
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=30000"],
                   check=False, capture_output=True)
    return filler


@pytest.mark.parametrize("trouble", ["read-only", "full"])
def test_a_store_that_refuses_writes_pauses_the_fleet_until_it_takes_them_again(
        server: LiveServer, mount: Path, mlp_bytes: bytes, trouble: str) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        model = upload(c, mlp_bytes, "mlp")
        train = upload_dataset(c, "st", digits(300))
        spec = {"model_id": model, "dataset_id": train, "clients": 6, "clients_per_round": 3,
                "rounds": 40, "batch_size": 16, "local_epochs": 10, "seed": 2,
                "personal": ["dense_2/"]}
        fleet = start(c, "st", **spec)
        until(lambda: len(c.get(f"/v1/fleets/{fleet['id']}").json()
                           ["global_checkpoint_ids"]) >= 2, "no round finished")
        fillers = []
        if trouble == "read-only":
            _remount(mount, "ro")
        else:
            fillers.append(_fill(mount, "filler"))
        seen: list[Any] = []

        def paused_now() -> Any:
            seen[:] = [c.get(f"/v1/fleets/{fleet['id']}").json()]
            return seen[0]["status"] == "paused" and seen[0]

        paused = until(paused_now, lambda: f"the fleet did not pause: {seen}")
        assert "store" in paused["error"] and str(mount) not in paused["error"], paused

        def refusing() -> bool:
            if trouble == "full":  # writes under way when the store filled up held pages
                # that their failure gave back (on a busy machine, enough for /readyz's small
                # probe, and so are the paused fleet's own probes): take those too, as the
                # next writer on a full disk would
                fillers.append(_fill(mount, f"top-up-{len(fillers)}"))
            return c.get("/readyz").status_code == 503

        until(refusing, "/readyz did not fail while the store refused writes")
        if trouble == "read-only":
            _remount(mount, "rw")
        for filler in fillers:
            filler.unlink()
        until(lambda: c.get("/readyz").status_code == 200, "the store did not come back")
        resumed = finish(c, fleet["id"])
        twin = finish(c, start(c, "st", **spec)["id"])
        sha = [[c.get(f"/v1/checkpoints/{k}").json()["sha256"] for k in f["global_checkpoint_ids"]]
               for f in (resumed, twin)]
        assert sha[0] == sha[1] and len(sha[0]) == 40
