"""Health, readiness, metrics, docs, and problem+json for unknown routes."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from app.config import Settings
from app.db.migrate import upgrade
from tests.helpers import LiveServer, assert_problem, new_session


def test_healthz_answers_ok(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_checks_database_and_store(client: httpx.Client) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready" and body["checks"] == {"database": "ok", "store": "ok"}
    assert body["auth"].startswith("open")


def test_metrics_count_train_steps(client: httpx.Client, mlp_id: str) -> None:
    def steps() -> float:
        text = client.get("/metrics").text
        line = next(x for x in text.splitlines() if x.startswith("fleetlite_train_steps_total"))
        return float(line.split()[-1])

    before = steps()
    sid = new_session(client, "metrics", mlp_id)
    body = {"inputs": {"x": [[[0.0] * 28] * 28], "y": [[1.0] + [0.0] * 9]}}
    for _ in range(3):
        assert client.post(f"/v1/sessions/{sid}/train", json=body).status_code == 200
    assert steps() == before + 3
    assert "fleetlite_live_sessions" in client.get("/metrics").text


def test_unknown_route_answers_problem_json(client: httpx.Client) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404)
    assert_problem(client.put("/v1/models"), 405)


def test_openapi_and_swagger_ui_are_served(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v1/sessions/{session_id}/train" in spec["paths"]
    train = spec["paths"]["/v1/sessions/{session_id}/train"]["post"]
    assert "inputs" in str(train["requestBody"])
    assert "swagger-ui" in client.get("/docs").text


def test_readyz_names_the_store_when_it_does_not_answer(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    settings = Settings(database_url=url, store_url="s3://nowhere",  # type: ignore[call-arg]
                        s3_endpoint=f"http://127.0.0.1:{closed}", s3_access_key_id="x",
                        s3_secret_access_key="y", work_dir=str(tmp_path / "tmp"))
    server = LiveServer(settings).start()
    try:
        r = httpx.get(f"{server.url}/readyz", timeout=30)
        body = assert_problem(r, 503, "store")
        assert body["checks"]["database"] == "ok" and body["checks"]["store"] != "ok"
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()
