"""A fleet device's step counter counts each committed update once: updates of a round that
never commits (the fleet failed, or the process stopped mid-round and will run it again)
reach neither its session row, through the flusher or autosave, nor its next answer."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.db.tables import FleetClientRow, SessionRow
from app.services import maintenance
from app.services.fleet import write as fleet_write
from tests.fleets.support import digits, follow, start, upload_dataset
from tests.helpers import LiveServer

FAILING_ROUND = 3


def test_updates_of_a_round_that_never_commits_are_not_counted(
        server: LiveServer, client: httpx.Client, mlp_id: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = server.ctx
    # 4 devices of 8 training examples each, all in every round, one step per update: a
    # device's steps must equal the rounds it took part in.
    dataset = upload_dataset(client, "cato", digits(40))
    write = fleet_write._write

    def fail_from_round_3(ctx_: Any, row: Any, staged: Any, acc: Any) -> list[str]:
        if staged.plan.round >= FAILING_ROUND:
            raise RuntimeError("the database went away")
        return write(ctx_, row, staged, acc)

    monkeypatch.setattr(fleet_write, "_write", fail_from_round_3)
    fleet = start(client, "cato", model_id=mlp_id, dataset_id=dataset, clients=4,
                  clients_per_round=4, rounds=6, batch_size=16, holdout=0.2,
                  partition={"kind": "iid"}, seed=3)
    end = follow(client, fleet["id"])[-1][1]
    assert end["status"] == "failed" and "went away" in end["error"], end
    assert len(end["global_checkpoint_ids"]) == FAILING_ROUND - 1

    maintenance.flush_counters(ctx)  # what the periodic flusher and a shutdown would write
    with ctx.db.begin() as db:
        devices = db.execute(select(FleetClientRow.rounds_participated, SessionRow.steps)
                             .join(SessionRow, SessionRow.id == FleetClientRow.session_id)
                             .where(FleetClientRow.fleet_id == fleet["id"])).all()
    assert sorted(devices) == [(FAILING_ROUND - 1, FAILING_ROUND - 1)] * 4
    for c in range(4):  # a device's session answers from what its fleet committed
        sid = client.get(f"/v1/fleets/{fleet['id']}/clients/{c}").json()["session_id"]
        assert client.get(f"/v1/sessions/{sid}").json()["steps"] == FAILING_ROUND - 1
