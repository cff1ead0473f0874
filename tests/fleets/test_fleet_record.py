"""A fleet is a record: inputs kept while it runs (409), unchanged reads once they are deleted,
failed updates recorded and not fatal, non-finite models refused, its devices' train calls
refused while it runs, one driver per fleet, end states that land, nothing left when deleted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.errors import ServiceUnavailable
from app.services import fleet as fleet_service
from app.services import lifecycle, maintenance
from app.services.fleet import rows as fleet_rows
from tests.fleets.support import digits, finish, follow, start, upload_dataset
from tests.helpers import LiveServer, assert_problem, until


def _spec(mlp_id: str, train: str, test: str, **over: Any) -> dict[str, Any]:
    return {"model_id": mlp_id, "dataset_id": train, "test_dataset_id": test, "clients": 8,
            "clients_per_round": 4, "rounds": 3, "batch_size": 32, "holdout": 0.2,
            "partition": {"kind": "shards", "classes_per_client": 2}, "seed": 3, **over}


def _reads(client: httpx.Client, fleet_id: str) -> dict[str, Any]:
    out = {name: client.get(f"/v1/fleets/{fleet_id}/{name}").json()
           for name in ("rounds", "clients", "report")}
    out["client"] = client.get(f"/v1/fleets/{fleet_id}/clients/1").json()
    out["fleet"] = client.get(f"/v1/fleets/{fleet_id}").json()
    page = client.get(f"/v1/fleets/{fleet_id}/report.html")
    assert page.status_code == 200
    out["page_size"] = len(page.text) > 1000
    return out


def test_inputs_of_a_running_fleet_are_kept_and_an_ended_fleet_reads_the_same_without_them(
        client: httpx.Client, mlp_id: str) -> None:
    data = digits(400)
    train = upload_dataset(client, "rec", data)
    test = upload_dataset(client, "rec", {"x": data["x"][:100], "y": data["y"][:100]}, "t")
    long = start(client, "rec", **_spec(mlp_id, train, test, rounds=400, local_epochs=5))
    ckpts = until(lambda: client.get(f"/v1/fleets/{long['id']}").json()
                   ["global_checkpoint_ids"], "no round finished")
    for path, name in ((f"/v1/datasets/{train}", train), (f"/v1/datasets/{test}", test),
                       (f"/v1/checkpoints/{ckpts[-1]}", ckpts[-1])):
        assert_problem(client.delete(path), 409, name, long["id"])
    assert_problem(client.delete(f"/v1/models/{mlp_id}"), 409, mlp_id)
    assert client.post(f"/v1/fleets/{long['id']}/cancel").status_code == 202
    assert follow(client, long["id"])[-1][1]["status"] == "cancelled"

    ended = finish(client, start(client, "rec", **_spec(mlp_id, train, test))["id"])
    other = finish(client, start(client, "rec", **_spec(mlp_id, train, test, seed=4))["id"])
    before = _reads(client, ended["id"])
    compare = client.get(f"/v1/fleets/compare?ids={ended['id']},{other['id']}").json()
    assert client.delete(f"/v1/datasets/{train}").status_code == 204
    assert client.delete(f"/v1/datasets/{test}").status_code == 204
    assert _reads(client, ended["id"]) == before
    assert client.get(f"/v1/fleets/compare?ids={ended['id']},{other['id']}").json() == compare


def test_deleting_a_fleet_leaves_nothing_in_the_store(server: LiveServer, client: httpx.Client,
                                                      mlp_id: str) -> None:
    train = upload_dataset(client, "gone", digits(200))
    fleet = finish(client, start(client, "gone", model_id=mlp_id, dataset_id=train,
                                 clients=4, clients_per_round=2, rounds=2,
                                 personal=["dense_2/"])["id"])
    prefix = f"users/gone/fleets/{fleet['id']}/"
    assert server.ctx.store.keys(prefix)
    assert client.delete(f"/v1/fleets/{fleet['id']}").status_code == 204
    assert server.ctx.store.keys(prefix) == []
    if server.settings.store_url.startswith("s3://"):
        return
    assert not (Path(server.settings.store_url) / prefix).exists()


def test_failed_updates_are_recorded_and_the_round_aggregates_the_others(
        client: httpx.Client, mlp_id: str) -> None:
    data = digits(480)
    bad = data["writer"] == 3
    data["x"][bad] = np.inf  # writer 3's device trains on Inf: a non-finite loss
    train = upload_dataset(client, "fail", data)
    spec = {"model_id": mlp_id, "dataset_id": train, "clients_per_round": 8, "rounds": 2,
            "batch_size": 16, "partition": {"kind": "natural", "by": "writer"}}
    fleet = finish(client, start(client, "fail", **spec)["id"])
    rounds = client.get(f"/v1/fleets/{fleet['id']}/rounds").json()["items"]
    for r in rounds:
        assert r["outcomes"]["failed"] == 1 and r["outcomes"]["completed"] == 7
        assert 3 not in r["completed"]
        assert r["failures"][0]["client_id"] == 3
        assert "non-finite" in r["failures"][0]["reason"]
    report = client.get(f"/v1/fleets/{fleet['id']}/report").json()
    assert report["failed_updates"]["count"] == 2
    timeline = client.get(f"/v1/fleets/{fleet['id']}/clients/3").json()["timeline"]
    assert [t["outcome"] for t in timeline] == ["failed", "failed"]

    strict = start(client, "fail", **spec, accept_failures=False)
    end = follow(client, strict["id"])[-1][1]
    assert end["status"] == "failed"
    assert "round 1" in end["error"] and "client 3" in end["error"], end["error"]


def test_a_global_model_that_turns_non_finite_fails_the_fleet(client: httpx.Client,
                                                             mlp_id: str) -> None:
    train = upload_dataset(client, "nan", digits(200))
    fleet = start(client, "nan", model_id=mlp_id, dataset_id=train, clients=4,
                  clients_per_round=4, rounds=3,
                  strategy={"name": "fedavgm", "server_lr": 1e308, "momentum": 0.9})
    end = follow(client, fleet["id"])[-1][1]
    assert end["status"] == "failed"
    assert "non-finite" in end["error"] and "round" in end["error"], end["error"]


def test_a_running_fleets_devices_refuse_train_calls_and_answer_infer(
        client: httpx.Client, mlp_id: str) -> None:
    train = upload_dataset(client, "busy", digits(200))
    fleet = start(client, "busy", model_id=mlp_id, dataset_id=train, clients=4,
                  clients_per_round=4, rounds=300, local_epochs=5)
    until(lambda: client.get(f"/v1/fleets/{fleet['id']}").json()["global_checkpoint_ids"],
           "no round finished")
    sid = client.get(f"/v1/fleets/{fleet['id']}/clients").json()["items"][0]["session_id"]
    x = np.zeros((1, 28, 28), np.float32).tolist()
    y = np.eye(10, dtype=np.float32)[:1].tolist()
    assert_problem(client.post(f"/v1/sessions/{sid}/train", json={"inputs": {"x": x, "y": y}}),
                   409, fleet["id"])
    assert client.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": x}}).status_code == 200
    client.post(f"/v1/fleets/{fleet['id']}/cancel")
    follow(client, fleet["id"])
    r = client.post(f"/v1/sessions/{sid}/train", json={"inputs": {"x": x, "y": y}})
    assert r.status_code == 200, r.text


def test_one_fleet_has_one_driver_whatever_submits_it(server: LiveServer, client: httpx.Client,
                                                      mlp_id: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = server.ctx
    train = upload_dataset(client, "once", digits(200))
    fleet = start(client, "once", model_id=mlp_id, dataset_id=train, clients=4,
                  clients_per_round=2, rounds=200, local_epochs=3)
    before = ctx.fleets.drivers
    assert ctx.fleets.submit(fleet["id"]) is ctx.fleets.submit(fleet["id"])
    # A start-up whose fleet resume fails once: jobs are not queued again, fleets once more.
    calls = {"jobs": 0, "fleets": 0}
    jobs_resume, fleets_resume = maintenance.jobs.resume_all, maintenance.fleet.resume_all

    def count_jobs(c: Any) -> int:
        calls["jobs"] += 1
        return jobs_resume(c)  # type: ignore[no-any-return]

    def fail_once(c: Any) -> int:
        calls["fleets"] += 1
        if calls["fleets"] == 1:
            raise ServiceUnavailable("the database does not answer")
        return fleets_resume(c)  # type: ignore[no-any-return]

    monkeypatch.setattr(maintenance.jobs, "resume_all", count_jobs)
    monkeypatch.setattr(maintenance.fleet, "resume_all", fail_once)
    ctx.jobs_resumed = ctx.fleets_resumed = False
    asyncio.run(maintenance._resume_jobs(ctx))
    asyncio.run(maintenance._resume_jobs(ctx))
    asyncio.run(maintenance._resume_jobs(ctx))
    assert calls == {"jobs": 1, "fleets": 2}
    assert ctx.fleets.drivers == before  # the running fleet was never handed out again
    client.post(f"/v1/fleets/{fleet['id']}/cancel")
    assert follow(client, fleet["id"])[-1][1]["status"] == "cancelled"


def test_an_end_state_whose_write_fails_lands_on_a_retry(client: httpx.Client, mlp_id: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "FIRST_WAIT_S", 0.01)
    finish_row, failed = fleet_rows.finish, []

    def fail_first(ctx: Any, fleet_id: str, status: str, error: str | None = None) -> None:
        if not failed:
            failed.append(status)
            raise ServiceUnavailable("the database does not answer")
        finish_row(ctx, fleet_id, status, error)

    monkeypatch.setattr(fleet_rows, "finish", fail_first)
    train = upload_dataset(client, "land", digits(200))
    fleet = finish(client, start(client, "land", model_id=mlp_id, dataset_id=train, clients=4,
                                 clients_per_round=2, rounds=2)["id"])
    assert failed == ["succeeded"]
    assert client.get(f"/v1/fleets/{fleet['id']}").json()["status"] == "succeeded"


def test_plan_reads_do_not_touch_the_dataset(server: LiveServer, client: httpx.Client,
                                              mlp_id: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    train = upload_dataset(client, "plan", digits(200))
    fleet = finish(client, start(client, "plan", model_id=mlp_id, dataset_id=train, clients=4,
                                 clients_per_round=2, rounds=2)["id"])
    fleet_service.record.PLANS.drop(fleet["id"])  # as after a restart
    blob = server.ctx.store.get

    def no_datasets(key: str) -> bytes:
        assert "/datasets/" not in key, key
        return blob(key)

    monkeypatch.setattr(server.ctx.store, "get", no_datasets)
    for path in ("clients", "report", "rounds", "clients/0", "report.html"):
        assert client.get(f"/v1/fleets/{fleet['id']}/{path}").status_code == 200


def test_fedpers_global_holds_the_example_weighted_mean_of_the_devices_personal_values(
        client: httpx.Client, mlp_id: str, mlp_bytes: bytes) -> None:
    from tests.fleets.support import checkpoint_bytes, initial_weights, read_ckpt

    train = upload_dataset(client, "fedper", digits(240))
    fleet = finish(client, start(client, "fedper", model_id=mlp_id, dataset_id=train,
                                 partition={"kind": "natural", "by": "writer"},
                                 clients_per_round=8, rounds=2, batch_size=16,
                                 personal=["dense_2/"])["id"])
    items = client.get(f"/v1/fleets/{fleet['id']}/clients").json()["items"]
    total = sum(c["num_train"] for c in items)
    own = [(read_ckpt(checkpoint_bytes(client, c["checkpoint_id"])), c["num_train"])
           for c in items]
    final = read_ckpt(checkpoint_bytes(client, fleet["global_checkpoint_ids"][-1]))
    initial = read_ckpt(initial_weights(mlp_bytes))
    for name in (k for k in final if k.startswith("dense_2/")):
        expected = sum(w[name].astype(np.float64) * n for w, n in own) / total
        assert float(np.max(np.abs(final[name] - expected))) < 1e-6, name
        assert not np.array_equal(final[name], initial[name])  # no longer the initial head


def test_a_store_error_on_one_updates_blobs_is_a_failed_update(
        client: httpx.Client, mlp_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.executor import update as executor_update
    from app.store.blobs import StoreUnavailable

    start_weights = executor_update.start_weights

    def flaky(update: Any, *args: Any) -> bytes:
        if update.client_id == 2 and update.round == 2:
            raise StoreUnavailable("s3 store s3://bucket/prefix: connection refused")
        return start_weights(update, *args)

    monkeypatch.setattr(executor_update, "start_weights", flaky)
    train = upload_dataset(client, "flaky", digits(200))
    # personal: from round 2 on, a device's start merges its own checkpoint's blob
    fleet = finish(client, start(client, "flaky", model_id=mlp_id, dataset_id=train, clients=4,
                                 clients_per_round=4, rounds=3, personal=["dense_2/"])["id"])
    rounds = client.get(f"/v1/fleets/{fleet['id']}/rounds").json()["items"]
    assert [r["outcomes"]["failed"] for r in rounds] == [0, 1, 0]
    assert rounds[1]["completed"] == [0, 1, 3]
    (failure,) = rounds[1]["failures"]
    assert failure["client_id"] == 2
    assert failure["reason"].startswith("StoreUnavailable: s3 store")
    assert "connection refused" in failure["reason"] and "/prefix" not in failure["reason"]


def test_a_fleet_from_before_plans_were_recorded_reads_from_a_plan_built_once(
        server: LiveServer, client: httpx.Client, mlp_id: str) -> None:
    from sqlalchemy import update

    from app.db.tables import FleetRow

    train = upload_dataset(client, "legacy", digits(200))
    fleet = finish(client, start(client, "legacy", model_id=mlp_id, dataset_id=train,
                                 clients=4, clients_per_round=2, rounds=2)["id"])
    before = client.get(f"/v1/fleets/{fleet['id']}/clients").json()
    with server.ctx.db.begin() as db:  # as migration 0007 leaves an older fleet's row
        db.execute(update(FleetRow).where(FleetRow.id == fleet["id"]).values(plan=None))
    fleet_service.record.PLANS.drop(fleet["id"])
    assert client.get(f"/v1/fleets/{fleet['id']}/clients").json() == before
    with server.ctx.db.begin() as db:
        assert db.get(FleetRow, fleet["id"]).plan is not None  # recorded for the next read
