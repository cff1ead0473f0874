"""Hostile inputs get the same answer on every backend: a control character in an id is a
404 (no such object can exist), in text a 422 naming the field; a number no field can hold is
a 422 naming the field; NaN and Infinity never reach a database. PostgreSQL refuses NUL in
text (psycopg's DataError was a 500 there while SQLite answered 404), so each case below runs
on both backends against one table of expected answers, and the server still serves after.
"""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
import pytest

from tests.helpers import assert_problem, new_session

HUGE = "9" * 5000  # past Python's 4,300-digit guard on int()
USER = "hostile"


def _npz() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(3)
    np.savez(buf, x=rng.random((8, 28, 28), dtype=np.float32),
             y=np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)])
    return buf.getvalue()


@pytest.fixture(scope="module")
def seeds(client: httpx.Client, mlp_id: str) -> dict[str, str]:
    """Real objects, so a hostile field is the only thing wrong with each request."""
    sid = new_session(client, USER, mlp_id)
    r = client.post(f"/v1/users/{USER}/datasets", files={"file": ("d.npz", _npz())},
                    data={"name": "ok"})
    assert r.status_code == 201, r.text
    return {"model": mlp_id, "session": sid, "dataset": r.json()["id"]}


# (method, path, needles) answered 404: the path holds a control character.
NOT_FOUND = [
    ("GET", "/v1/fleets/%00", ()),
    ("GET", "/v1/fleets/%00/report", ()),
    ("GET", "/v1/fleets/%00/events", ()),
    ("GET", "/v1/datasets/%00", ()),
    ("DELETE", "/v1/datasets/%00", ()),
    ("GET", "/v1/datasets/ds%1F", ()),
    ("GET", "/v1/datasets/ds%7F", ()),
    ("GET", "/v1/datasets/ds%C2%85", ()),  # U+0085, a C1 control
    ("GET", "/v1/checkpoints/%00", ()),
    ("GET", "/v1/checkpoints/%00/file", ()),
    ("GET", "/v1/jobs/%00", ()),
    ("GET", "/v1/jobs/%00/events", ()),
    ("GET", "/v1/models/%00", ()),
    ("GET", "/v1/sessions/%00", ()),
    ("POST", "/v1/sessions/%00/train", ()),
    ("GET", "/v1/users/%00/datasets", ()),
]


@pytest.mark.parametrize(("method", "path", "needles"), NOT_FOUND,
                         ids=[f"{m} {p}" for m, p, _ in NOT_FOUND])
def test_get_resource_with_a_control_character_in_its_id_is_not_found(
        client: httpx.Client, method: str, path: str, needles: tuple[str, ...]) -> None:
    assert_problem(client.request(method, path), 404, "control character", *needles)


# (path, field named in the 422) for text in a query.
QUERIES = [
    (f"/v1/users/{USER}/datasets?cursor=%00", "cursor"),
    (f"/v1/users/{USER}/checkpoints?cursor=ds%0A", "cursor"),
    ("/v1/models?cursor=%1B", "cursor"),
    (f"/v1/users/{USER}/checkpoints?model_id=%00", "model_id"),
    (f"/v1/users/{USER}/checkpoints?session_id=%00", "session_id"),
    ("/v1/fleets/compare?ids=%00,%00", "ids"),
    ("/v1/fleets/compare.html?ids=%1C%2C0", "ids"),
    ("/v1/fleets/compare?ids=flt_a,flt%C2%9F", "ids"),
]


@pytest.mark.parametrize(("path", "field"), QUERIES, ids=[p for p, _ in QUERIES])
def test_list_with_a_control_character_in_a_query_is_refused_naming_it(
        client: httpx.Client, path: str, field: str) -> None:
    body = assert_problem(client.get(path), 422, field)
    assert [e["loc"] for e in body["errors"]] == [["query", field]]


def _bodies(seeds: dict[str, str]) -> list[tuple[str, str, dict[str, Any], str]]:
    """(method, path, JSON body, the field named in the 422)."""
    session, dataset = f"/v1/sessions/{seeds['session']}", seeds["dataset"]
    job = {"dataset_id": dataset, "epochs": 1, "batch_size": 4}
    return [
        ("POST", f"{session}/checkpoints", {"label": "a\u0000b"}, "label"),
        ("POST", f"{session}/checkpoints", {"label": "line\nbreak"}, "label"),
        ("POST", f"/v1/users/{USER}/sessions", {"model_id": "\u0000"}, "model_id"),
        ("POST", f"/v1/users/{USER}/sessions",
         {"model_id": seeds["model"], "checkpoint_id": "ck\u0000"}, "checkpoint_id"),
        ("POST", f"{session}/restore", {"checkpoint_id": "\u0000"}, "checkpoint_id"),
        ("POST", f"{session}/jobs", {**job, "dataset_id": "\u0000"}, "dataset_id"),
        ("POST", f"/v1/users/{USER}/fleets",
         {"model_id": seeds["model"], "dataset_id": "ds\u0000"}, "dataset_id"),
    ]


def test_create_with_a_control_character_in_body_text_is_refused_naming_the_field(
        client: httpx.Client, seeds: dict[str, str]) -> None:
    for method, path, body, field in _bodies(seeds):
        r = client.request(method, path, json=body)
        problem = assert_problem(r, 422, field, "control character")
        assert [e["loc"][-1] for e in problem["errors"]] == [field], (path, body)


@pytest.mark.parametrize(("name", "model"), [("a\u0000b", False), ("tab\there", False),
                                             ("a\u0000b", True)])
def test_upload_with_a_control_character_in_its_name_is_refused_naming_it(
        client: httpx.Client, seeds: dict[str, str], mlp_bytes: bytes, name: str,
        model: bool) -> None:
    if model:
        r = client.post("/v1/models", files={"file": ("m.tflite", mlp_bytes)},
                        data={"name": name})
    else:
        r = client.post(f"/v1/users/{USER}/datasets", files={"file": ("d.npz", _npz())},
                        data={"name": name})
    body = assert_problem(r, 422, "name")
    assert [e["loc"] for e in body["errors"]] == [["body", "name"]]


def test_create_with_a_number_no_field_holds_is_refused_naming_it(
        client: httpx.Client, seeds: dict[str, str]) -> None:
    job = f'{{"dataset_id": "{seeds["dataset"]}", "epochs": 1, "batch_size": 4, "seed": {HUGE}}}'
    fleet = (f'{{"model_id": "{seeds["model"]}", "dataset_id": "{seeds["dataset"]}", '
             f'"clients": {HUGE}}}')
    for path, raw, field in [(f"/v1/sessions/{seeds['session']}/jobs", job, "seed"),
                             (f"/v1/users/{USER}/fleets", fleet, "clients"),
                             (f"/v1/users/{USER}/fleets", f'[1, {{"a": [-{HUGE}]}}]', "1.a.0")]:
        r = client.post(path, content=raw, headers={"content-type": "application/json"})
        body = assert_problem(r, 422, f"{field}: a number of 5000 digits")
        assert body["errors"][0]["loc"] == ["body", *[int(p) if p.isdigit() else p
                                                      for p in field.split(".")]]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_create_fleet_with_a_float_that_is_not_finite_is_refused_naming_it(
        client: httpx.Client, seeds: dict[str, str], value: str) -> None:
    raw = (f'{{"model_id": "{seeds["model"]}", "dataset_id": "{seeds["dataset"]}", '
           f'"rounds": 1, "clients": 2, "clients_per_round": 2, "round_deadline_s": {value}}}')
    r = client.post(f"/v1/users/{USER}/fleets", content=raw,
                    headers={"content-type": "application/json"})
    assert_problem(r, 422, "round_deadline_s")


def test_server_still_serves_after_hostile_inputs(client: httpx.Client,
                                                  seeds: dict[str, str]) -> None:
    for path in ("/v1/fleets/%00", f"/v1/users/{USER}/datasets?cursor=%00"):
        client.get(path)
    r = client.get(f"/v1/datasets/{seeds['dataset']}")
    assert r.status_code == 200 and r.json()["name"] == "ok"
    r = client.post(f"/v1/sessions/{seeds['session']}/checkpoints", json={"label": "plain"})
    assert r.status_code == 201 and r.json()["label"] == "plain"
