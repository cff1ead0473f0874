"""Per-user keys: nobody reaches another user's objects, proven by walking every route."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.helpers import BACKENDS, LiveServer, assert_problem, running_server

ADMIN = "admin-token-for-tests-0123456789"
X = np.random.default_rng(3).random((4, 28, 28), dtype=np.float32)
Y = np.eye(10, dtype=np.float32)[[1, 2, 3, 4]]


@pytest.fixture(scope="module", params=BACKENDS)
def secured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            s3_endpoint: str) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp(f"auth-{request.param}")
    with running_server(request.param, root, s3_endpoint, admin_token=ADMIN) as server:
        yield server


def client(server: LiveServer, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, timeout=60, headers=headers)


def make_key(server: LiveServer, user: str) -> str:
    with client(server, ADMIN) as admin:
        r = admin.post(f"/v1/users/{user}/keys")
        assert r.status_code == 201, r.text
        return r.json()["key"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def world(secured: LiveServer, mlp_bytes: bytes) -> dict[str, Any]:
    """alice with one of everything; bob with a key of his own."""
    with client(secured, ADMIN) as admin:
        model_id = admin.post("/v1/models", files={"file": ("m.tflite", mlp_bytes)},
                              data={"name": "mlp"}).json()["id"]
    alice_key, bob_key = make_key(secured, "alice"), make_key(secured, "bob")
    with client(secured, alice_key) as a:
        sid = a.post("/v1/users/alice/sessions", json={"model_id": model_id}).json()["id"]
        a.post(f"/v1/sessions/{sid}/train", json={"inputs": {"x": X.tolist(), "y": Y.tolist()}})
        ckpt = a.post(f"/v1/sessions/{sid}/checkpoints", json={"label": "alice-secret"}).json()
        buf = io.BytesIO()
        np.savez(buf, x=np.repeat(X, 8, axis=0), y=np.repeat(Y, 8, axis=0))
        ds = a.post("/v1/users/alice/datasets", files={"file": ("d.npz", buf.getvalue())},
                    data={"name": "alice-data"}).json()
        job = a.post(f"/v1/sessions/{sid}/jobs", json={"dataset_id": ds["id"], "epochs": 1,
                                                       "batch_size": 8}).json()
        fleet = a.post("/v1/users/alice/fleets", json={
            "model_id": model_id, "dataset_id": ds["id"], "clients": 2, "clients_per_round": 2,
            "rounds": 1, "batch_size": 8}).json()
        for kind, oid in (("jobs", job["id"]), ("fleets", fleet["id"])):
            deadline = time.monotonic() + 60
            while a.get(f"/v1/{kind}/{oid}").json()["status"] in ("queued", "running"):
                assert time.monotonic() < deadline
                time.sleep(0.1)
    with client(secured, ADMIN) as admin:
        key_id = admin.get("/v1/users/alice/keys").json()["items"][0]["id"]
    return {"model_id": model_id, "session_id": sid, "checkpoint": ckpt, "dataset": ds,
            "job_id": job["id"], "fleet_id": fleet["id"], "key_id": key_id, "alice": alice_key,
            "bob": bob_key}


def test_no_key_answers_401_but_health_stays_open(secured: LiveServer) -> None:
    with client(secured, None) as anon:
        assert_problem(anon.get("/v1/models"), 401)
        assert anon.get("/v1/models").headers["www-authenticate"] == "Bearer"
        assert anon.get("/healthz").status_code == 200
        assert anon.get("/readyz").json()["auth"] == "keys"


def test_key_is_shown_once_and_only_its_hash_is_stored(secured: LiveServer) -> None:
    with client(secured, ADMIN) as admin:
        created = admin.post("/v1/users/carol/keys").json()
        assert created["key"].startswith("flk_") and created["prefix"] in created["key"]
        listed = admin.get("/v1/users/carol/keys").json()["items"]
        assert [k["id"] for k in listed] == [created["id"]]
        assert "key" not in listed[0] and created["key"] not in str(listed)
    from app.db.tables import KeyRow

    with secured.ctx.db.begin() as db:
        row = db.get(KeyRow, created["id"])
        assert row.key_hash != created["key"] and created["key"] not in str(vars(row))


def test_user_key_reaches_own_objects_and_reads_models(secured: LiveServer,
                                                       world: dict[str, Any]) -> None:
    with client(secured, world["alice"]) as a:
        assert a.get(f"/v1/sessions/{world['session_id']}").status_code == 200
        assert a.get("/v1/users/alice/checkpoints").json()["items"]
        assert a.get(f"/v1/models/{world['model_id']}").status_code == 200
        assert_problem(a.post("/v1/models", files={"file": ("m", b"x")}, data={"name": "x"}),
                       403)
        assert_problem(a.delete(f"/v1/models/{world['model_id']}"), 403)
        assert_problem(a.post("/v1/users/alice/keys"), 403)


def test_other_users_object_looks_exactly_like_a_missing_one(secured: LiveServer,
                                                             world: dict[str, Any]) -> None:
    sid = world["session_id"]
    missing = "ses_" + "0" * 22
    with client(secured, world["bob"]) as b:
        theirs = b.get(f"/v1/sessions/{sid}")
        nothing = b.get(f"/v1/sessions/{missing}")
    assert theirs.status_code == nothing.status_code == 404
    assert theirs.json()["detail"].replace(sid, "ID") == nothing.json()["detail"].replace(
        missing, "ID")


def test_tritonclient_works_with_a_key(secured: LiveServer, world: dict[str, Any]) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    url = f"{secured.url.removeprefix('http://')}/v1/sessions/{world['session_id']}"
    c = httpclient.InferenceServerClient(url=url)
    inp = httpclient.InferInput("x", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    out = c.infer("infer", [inp], headers={"Authorization": f"Bearer {world['alice']}"})
    assert out.as_numpy("output").shape == (4, 10)
    with pytest.raises(InferenceServerException):
        c.infer("infer", [inp], headers={"Authorization": f"Bearer {world['bob']}"})


def fill(path: str, world: dict[str, Any]) -> str:
    values = {"user_id": "alice", "session_id": world["session_id"],
              "checkpoint_id": world["checkpoint"]["id"], "dataset_id": world["dataset"]["id"],
              "job_id": world["job_id"], "model_id": world["model_id"],
              "key_id": world["key_id"], "signature": "infer", "model_name": "infer",
              "model_version": "1", "fleet_id": world["fleet_id"], "client_id": "0"}
    url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
    if path.startswith("/v1/fleets/compare"):  # alice's fleets, twice: bob sees neither
        url += f"?ids={world['fleet_id']},{world['fleet_id']}"
    return url


def routes(server: LiveServer) -> list[tuple[str, str]]:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    return [(method.upper(), path) for path, ops in spec["paths"].items() for method in ops
            if path not in ("/healthz", "/readyz", "/metrics")]


def secrets_of(world: dict[str, Any]) -> list[str]:
    c, d = world["checkpoint"], world["dataset"]
    return [c["sha256"], c["created_at"], "alice-secret", d["sha256"], "alice-data"]


def call(c: httpx.Client, method: str, url: str) -> httpx.Response:
    body = {"inputs": {"x": X.tolist()}}
    return c.request(method, url, json=body if method in ("POST", "PUT", "PATCH") else None)


def test_every_route_refuses_another_users_key(secured: LiveServer,
                                               world: dict[str, Any]) -> None:
    walked = 0
    with client(secured, world["bob"]) as b:
        for method, path in routes(secured):
            if (path.startswith("/v1/models") and method == "GET") or path in (
                    "/v1/devices", "/v1/privacy/epsilon"):
                continue  # models, the device catalogue and the planner serve every key
            r = call(b, method, fill(path, world))
            walked += 1
            # Exactly what a missing id answers; 403 where only the admin may act at all.
            admin_only = path.startswith(("/v1/models", "/v1/users/{user_id}/keys"))
            assert r.status_code == (403 if admin_only else 404), (method, path, r.text)
            for secret in secrets_of(world):
                assert secret not in r.text, (method, path, secret)
    assert walked >= 35
    with client(secured, world["alice"]) as a:  # and alice still has everything
        assert a.get(f"/v1/sessions/{world['session_id']}").status_code == 200


@pytest.mark.parametrize("who", ["none", "revoked", "garbage"])
def test_every_route_refuses_no_key_and_revoked_keys(secured: LiveServer, world: dict[str, Any],
                                                     who: str) -> None:
    token = {"none": None, "garbage": "flk_deadbeef_" + "x" * 40}.get(who)
    if who == "revoked":
        token = make_key(secured, "dave")
        with client(secured, token) as d:
            assert d.get("/v1/users/dave/sessions").status_code == 200
        with client(secured, ADMIN) as admin:
            key_id = admin.get("/v1/users/dave/keys").json()["items"][0]["id"]
            assert admin.delete(f"/v1/users/dave/keys/{key_id}").status_code == 204
    with client(secured, token) as c:
        for method, path in routes(secured):
            r = call(c, method, fill(path, world))
            assert r.status_code == 401, (method, path, r.status_code, r.text)
