"""Fleets over HTTP: every refusal docs/api.md lists (and nothing left behind by one), FedPer,
client sessions that answer like their checkpoints, progress events, cancel and delete."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from app.db.tables import CheckpointRow, FleetRow, SessionRow
from app.runtime.interpreter import LiteSession
from tests.fleets.support import (
    checkpoint_bytes,
    digits,
    finish,
    follow,
    read_ckpt,
    start,
    upload_dataset,
)
from tests.helpers import LiveServer, assert_problem


@pytest.fixture(scope="module")
def data(client: httpx.Client) -> dict[str, Any]:
    train, test = digits(1000), digits(300, offset=1000)
    return {"train": upload_dataset(client, "fia", train),
            "test": upload_dataset(client, "fia", {"x": test["x"], "y": test["y"]}, "test"),
            "bad_test": upload_dataset(client, "fia", {"x": test["x"][:, :20], "y": test["y"]},
                                       "narrow"),
            "other": upload_dataset(client, "oz", train, "oz's"), "arrays": train}


def spec(mlp_id: str, data: dict[str, Any], **over: Any) -> dict[str, Any]:
    base = {"model_id": mlp_id, "dataset_id": data["train"], "clients": 10,
            "clients_per_round": 5, "rounds": 2, "batch_size": 32}
    return {**base, **over}


def _footprint(server: LiveServer) -> tuple[int, int, int, int]:
    ctx = server.ctx
    with ctx.db.begin() as db:
        counts = [db.scalar(select(func.count()).select_from(t))
                  for t in (FleetRow, SessionRow, CheckpointRow)]
    return (*counts, len(ctx.store.keys("users/")))  # type: ignore[return-value]


REFUSED = [
    ({"clients_per_round": 11}, "clients_per_round"),
    ({"clients": 1001}, "partition"),
    ({"strategy": {"name": "fedsgd"}}, "strategy.name"),
    ({"strategy": {"name": "fedadam", "eta": 0.1}}, "strategy.eta"),
    ({"personal": ["dense_9/"]}, "personal"),
    ({"partition": {"kind": "natural", "by": "city"}}, "partition.by"),
    ({"partition": {"kind": "natural", "by": "y"}}, "partition.by"),  # one value per example
    ({"partition": {"kind": "shards"}, "label": "z"}, "label"),
    ({"partition": {"kind": "dirichlet", "alpha": -1}}, "partition.alpha"),
    ({"batch_size": 0}, "batch_size"),
    ({"holdout": 1.0}, "holdout"),
    ({"rounds": 0}, "rounds"),
    ({"min_completed": 6}, "min_completed"),
    ({"faults": {"kind": "gremlins"}}, "faults.kind"),
    ({"unknown_field": 1}, "unknown_field"),
]


@pytest.mark.parametrize(("change", "field"), REFUSED)
def test_bad_spec_is_422_naming_the_field_and_leaves_nothing(
        server: LiveServer, client: httpx.Client, mlp_id: str, data: dict[str, Any],
        change: dict[str, Any], field: str) -> None:
    before = _footprint(server)
    assert_problem(client.post("/v1/users/fia/fleets", json=spec(mlp_id, data, **change)), 422,
                   field)
    assert _footprint(server) == before  # no fleet, session, checkpoint or blob of it


def test_test_dataset_that_does_not_fit_is_422(server: LiveServer, client: httpx.Client,
                                               mlp_id: str, data: dict[str, Any]) -> None:
    before = _footprint(server)
    r = client.post("/v1/users/fia/fleets", json=spec(mlp_id, data,
                                                      test_dataset_id=data["bad_test"]))
    assert_problem(r, 422, "test_dataset_id")
    assert _footprint(server) == before


def test_what_the_user_cannot_see_is_404(server: LiveServer, client: httpx.Client,
                                         mlp_id: str, data: dict[str, Any]) -> None:
    before = _footprint(server)
    assert_problem(client.post("/v1/users/fia/fleets", json=spec(mlp_id, data,
                                                                 dataset_id=data["other"])),
                   404, data["other"])
    assert_problem(client.post("/v1/users/fia/fleets", json=spec("mdl_nope", data)), 404,
                   "mdl_nope")
    assert_problem(client.post("/v1/users/fia/fleets", json=spec(
        mlp_id, data, test_dataset_id=data["other"])), 404, data["other"])
    assert_problem(client.get("/v1/fleets/flt_missing"), 404, "flt_missing")
    assert_problem(client.get("/v1/fleets/flt_missing/report"), 404)
    assert _footprint(server) == before


def test_fedper_keeps_personal_layers_and_personalization_helps(
        client: httpx.Client, mlp_id: str, mlp_bytes: bytes, data: dict[str, Any]) -> None:
    fleet = finish(client, start(client, "fia", **spec(
        mlp_id, data, partition={"kind": "shards", "classes_per_client": 2}, clients=10,
        clients_per_round=10, rounds=6, holdout=0.25, batch_size=16, personal=["dense_2/"],
        test_dataset_id=data["test"], seed=3))["id"])
    final = read_ckpt(checkpoint_bytes(client, fleet["global_checkpoint_ids"][-1]))
    clients = client.get(f"/v1/fleets/{fleet['id']}/clients").json()["items"]
    assert [c["client_id"] for c in clients] == list(range(10))
    heads = []
    for c in clients:
        mine = read_ckpt(checkpoint_bytes(client, c["checkpoint_id"]))
        for name in ("dense_1/kernel", "dense_1/bias"):  # shared: exactly the final global
            assert np.array_equal(mine[name], final[name]), (c["client_id"], name)
        heads.append(mine["dense_2/kernel"])
    assert all(not np.array_equal(heads[0], h) for h in heads[1:])  # personal: its own
    report = client.get(f"/v1/fleets/{fleet['id']}/report").json()
    final_block = report["final"]
    assert final_block["client_accuracy_personal"]["mean"] > \
        final_block["client_accuracy_global"]["mean"]
    assert final_block["helped"] > final_block["hurt"]
    assert report["rounds"] == 6 and len(report["global_accuracy"]) == 6
    page = client.get(f"/v1/fleets/{fleet['id']}/report.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.count("<svg") >= 4 and "<script" not in page.text


def test_client_session_answers_like_its_checkpoint_in_a_plain_interpreter(
        client: httpx.Client, mlp_id: str, mlp_bytes: bytes, data: dict[str, Any],
        tmp_path: Any) -> None:
    fleet = finish(client, start(client, "fia", **spec(
        mlp_id, data, personal=["dense_2/"], finetune_epochs=1, holdout=0.1))["id"])
    c = client.get(f"/v1/fleets/{fleet['id']}/clients/4").json()
    x = data["arrays"]["x"][:5]
    served = client.post(f"/v1/sessions/{c['session_id']}/infer",
                         json={"inputs": {"x": x.tolist()}}).json()["outputs"]["output"]
    phone = LiteSession(mlp_bytes)
    path = tmp_path / "c.ckpt"
    path.write_bytes(checkpoint_bytes(client, c["checkpoint_id"]))
    phone.restore(path)
    assert np.array_equal(np.asarray(served, dtype=np.float32), phone.run("infer", {"x": x})
                          ["output"])
    session = client.get(f"/v1/sessions/{c['session_id']}").json()
    assert session["user_id"] == "fia" and session["head_checkpoint_id"] == c["checkpoint_id"]


def test_progress_events_then_the_end(client: httpx.Client, mlp_id: str,
                                      data: dict[str, Any]) -> None:
    # long enough (a second or more: 12 rounds of 5 updates of 7 x 40 steps, on two lanes)
    # to outlast the streams' 0.2 s between events
    fleet = start(client, "fia", **spec(mlp_id, data, rounds=12, local_epochs=40))
    events = follow(client, fleet["id"])
    names = [e for e, _ in events]
    assert names[-1] == "end" and names.count("end") == 1 and "progress" in names
    rounds_seen = {d["progress"]["round"] for e, d in events if e == "progress"}
    assert rounds_seen & set(range(1, 13))
    assert events[-1][1]["progress"]["round"] == 12
    rounds = client.get(f"/v1/fleets/{fleet['id']}/rounds").json()["items"]
    assert [r["round"] for r in rounds] == list(range(1, 13))
    assert all(len(r["selected"]) == 5 and r["completed"] == r["selected"] for r in rounds)


def test_cancel_keeps_finished_rounds_and_delete_takes_everything(
        server: LiveServer, client: httpx.Client, mlp_id: str, data: dict[str, Any]) -> None:
    fleet = start(client, "fia", **spec(mlp_id, data, rounds=500, clients_per_round=10))
    assert_problem(client.delete(f"/v1/fleets/{fleet['id']}"), 409, "cancel")
    r = client.post(f"/v1/fleets/{fleet['id']}/cancel")
    assert r.status_code == 202
    end = follow(client, fleet["id"])[-1][1]
    assert end["status"] == "cancelled" and end["progress"]["round"] < 500
    rounds = client.get(f"/v1/fleets/{fleet['id']}/rounds").json()["items"]
    assert len(rounds) == len(end["global_checkpoint_ids"])
    sessions = [c["session_id"] for c in client.get(
        f"/v1/fleets/{fleet['id']}/clients").json()["items"] if c["session_id"]]
    assert client.delete(f"/v1/fleets/{fleet['id']}").status_code == 204
    assert_problem(client.get(f"/v1/fleets/{fleet['id']}"), 404)
    for sid in sessions:
        assert_problem(client.get(f"/v1/sessions/{sid}"), 404)
    for ckpt in end["global_checkpoint_ids"]:
        assert_problem(client.get(f"/v1/checkpoints/{ckpt}"), 404)
    assert not server.ctx.store.keys(f"users/fia/fleets/{fleet['id']}/")


def test_two_identical_fleets_are_bit_identical(client: httpx.Client, mlp_id: str,
                                                data: dict[str, Any]) -> None:
    body = spec(mlp_id, data, partition={"kind": "dirichlet", "alpha": 0.3}, rounds=3,
                strategy={"name": "fedadam"}, holdout=0.2, seed=11)
    a, b = (finish(client, start(client, "fia", **body)["id"]) for _ in range(2))
    for x, y in zip(a["global_checkpoint_ids"], b["global_checkpoint_ids"], strict=True):
        assert x != y
        assert client.get(f"/v1/checkpoints/{x}").json()["sha256"] == \
            client.get(f"/v1/checkpoints/{y}").json()["sha256"]
