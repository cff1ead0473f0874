"""Schemathesis against the service's own OpenAPI schema: no 5xx, responses as documented.

One server (sqlite-local, to keep time down) is seeded with a real model, session, checkpoint,
dataset, finished job and two finished fleets; path parameters, list filters and compare's ids
are sometimes swapped for those real ids, so the fuzzer reaches the code behind the 404s too.
Those cases are bounded by max_examples per operation and seeded per operation, so CI runs the
same cases each time.
tests/fuzz/test_schemathesis_run.py runs `schemathesis run --checks all` as a user would.
"""

from __future__ import annotations

import io
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import models
from app.config import Settings
from app.main import create_app
from tests.fuzz.hooks import SMALL
from tests.helpers import LiveServer, assert_problem, backend_settings, new_session, upload

MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
BODY_IDS = ("model_id", "checkpoint_id", "dataset_id")
CASES: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()
BY_OP: dict[str, Counter[int]] = {}


@dataclass(frozen=True)
class Seeds:
    """Real objects on the server, all the user's."""

    user_id: str
    model_id: str
    session_id: str
    checkpoint_id: str
    dataset_id: str
    job_id: str
    fleet_ids: tuple[str, str]


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Our own server on the embedded backend; the module's cases all go to it."""
    root = tmp_path_factory.mktemp("schemathesis")
    with backend_settings("sqlite-local", root, None, max_jobs_per_user=2) as settings_:
        server = LiveServer(settings_).start()
        yield server
        server.stop()


@pytest.fixture(scope="module")
def seeds(live: LiveServer) -> Seeds:
    """A model, a trained session with a checkpoint, a dataset, a finished job and two
    finished fleets (one round of two clients each)."""
    rng = np.random.default_rng(0)
    x = rng.random((8, 28, 28), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]
    with httpx.Client(base_url=live.url, timeout=60) as c:
        model_id = upload(c, models.build_cached("mlp"), "mlp")
        sid = new_session(c, "alice", model_id)
        r = c.post(f"/v1/sessions/{sid}/train", json={"inputs": {"x": x.tolist(),
                                                                  "y": y.tolist()}})
        assert r.status_code == 200, r.text
        r = c.post(f"/v1/sessions/{sid}/checkpoints", json={"label": "seed"})
        assert r.status_code == 201, r.text
        ckpt = r.json()["id"]
        r = c.post("/v1/users/alice/datasets", files={"file": ("d.npz", _npz(x=x, y=y))},
                   data={"name": "seed"})
        assert r.status_code == 201, r.text
        ds = r.json()["id"]
        r = c.post(f"/v1/sessions/{sid}/jobs", json={"dataset_id": ds, "epochs": 1,
                                                     "batch_size": 4})
        assert r.status_code == 202, r.text
        job = r.json()["id"]
        deadline = time.monotonic() + 60
        while c.get(f"/v1/jobs/{job}").json()["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, "seed job did not finish"
            time.sleep(0.1)
        fleets = [c.post("/v1/users/alice/fleets", json={
            "model_id": model_id, "dataset_id": ds, "rounds": 1, "clients": 2,
            "clients_per_round": 2, "batch_size": 4, "seed": n}) for n in range(2)]
        assert all(r.status_code == 202 for r in fleets), [r.text for r in fleets]
        fleet_ids = (fleets[0].json()["id"], fleets[1].json()["id"])
        for fleet in fleet_ids:
            while c.get(f"/v1/fleets/{fleet}").json()["status"] in ("queued", "running"):
                assert time.monotonic() < deadline, "seed fleet did not finish"
                time.sleep(0.1)
    return Seeds("alice", model_id, sid, ckpt, ds, job, fleet_ids)


def _real_values(seeds: Seeds) -> dict[str, list[str]]:
    """For each path parameter name, the real values worth trying."""
    return {
        "user_id": [seeds.user_id],
        "model_id": [seeds.model_id],
        "session_id": [seeds.session_id],
        "checkpoint_id": [seeds.checkpoint_id],
        "dataset_id": [seeds.dataset_id],
        "job_id": [seeds.job_id],
        "fleet_id": list(seeds.fleet_ids),
        "model_name": ["infer", "train", "save"],
        "signature": ["infer", "train", "logits"],
        "model_version": ["1"],
    }


@pytest.fixture(scope="module")
def api_schema(live: LiveServer, seeds: Seeds) -> Any:
    """The schema as the running server serves it, with hooks that reach the seeded objects."""
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    schema.config.update(base_url=live.url)
    real = _real_values(seeds)

    @schema.hook
    def flatmap_path_parameters(ctx: Any, path_parameters: dict[str, Any] | None) -> Any:
        # DELETEs keep their random ids (they would remove the seeds), except the model's:
        # the seeded session uses it, so that delete answers 409 and changes nothing.
        if not path_parameters:
            return st.just(path_parameters)
        method = ctx.operation.method.upper() if ctx.operation else "GET"
        options: dict[str, st.SearchStrategy[Any]] = {}
        for name, value in path_parameters.items():
            values = real.get(name)
            if not values or (method == "DELETE" and name != "model_id"):
                options[name] = st.just(value)
            else:
                options[name] = st.sampled_from([value, *values])
        return st.fixed_dictionaries(options)

    @schema.hook
    def flatmap_query(ctx: Any, query: dict[str, Any] | None) -> Any:
        # compare's ids name the seeded fleets half the time; a list's filters their objects.
        if not query:
            return st.just(query)
        pick = {"ids": ",".join(seeds.fleet_ids), "model_id": seeds.model_id,
                "session_id": seeds.session_id}
        return st.fixed_dictionaries({
            k: st.sampled_from([v, pick[k]]) if k in pick and isinstance(v, str)
            else st.just(v) for k, v in query.items()})

    @schema.hook
    def flatmap_body(ctx: Any, body: Any) -> Any:
        # Ids in JSON bodies (a session's model, a restore's checkpoint, a job's dataset) point
        # at real objects half the time; jobs and fleets are kept small so none runs for long.
        if not isinstance(body, dict):
            return st.just(body)
        options = {k: st.sampled_from([v, *real[k]]) if k in BODY_IDS and isinstance(v, str)
                   else st.just(v) for k, v in body.items()}
        for key, cap in SMALL.items():  # a fleet's or a job's work kept small, as the CLI's
            value = body.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > cap:
                options[key] = st.just(cap)
        return st.fixed_dictionaries(options)

    return schema


# What a parameter's schema says beyond "a string": something a request can break.
_PLAIN = {"type", "title", "description", "examples", "example"}


def _has_inputs(operation: dict[str, Any]) -> bool:
    """Whether a request can break the schema: a body, a query, header or cookie parameter,
    or a path parameter with a constraint (a plain string in a path cannot be made invalid)."""
    return "requestBody" in operation or any(
        p["in"] != "path" or set(p.get("schema", {})) - _PLAIN
        for p in operation.get("parameters", []))


def _cases() -> list[tuple[str, GenerationMode]]:
    """(operation label, mode) from the app's routes, collected without a server: every
    operation with valid data, and those a request can break with invalid data too."""
    spec = create_app(Settings()).openapi()
    out = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            label = f"{method.upper()} {path}"
            out.append((label, GenerationMode.POSITIVE))
            if _has_inputs(operation):
                out.append((label, GenerationMode.NEGATIVE))
    return out


CASES_TO_RUN = _cases()
OPERATIONS = sorted({label for label, _ in CASES_TO_RUN})


@pytest.mark.parametrize(("label", "mode"), CASES_TO_RUN,
                         ids=[f"{label}-{mode.value}" for label, mode in CASES_TO_RUN])
def test_operation_conforms(api_schema: Any, label: str, mode: GenerationMode) -> None:
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]

    @seed(zlib.crc32(f"{label} {mode.value}".encode()))  # the same cases on every run
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        response = case.call(timeout=60)
        CASES[label] += 1
        STATUSES[response.status_code] += 1
        BY_OP.setdefault(label, Counter())[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    run()


def test_served_schema_has_the_collected_operations(api_schema: Any) -> None:
    served = {f"{op.ok().method.upper()} {op.ok().path}"
              for op in api_schema.get_all_operations()}
    assert served == set(OPERATIONS)


def test_case_count(live: LiveServer) -> None:
    """After the operations above (in file order): the count, and the server still answers."""
    assert httpx.get(f"{live.url}/healthz", timeout=10).status_code == 200
    if set(CASES) != set(OPERATIONS):
        pytest.skip("only some operations were selected; nothing to count")
    print(f"\nschemathesis: {sum(CASES.values())} cases over {len(CASES)} operations; "
          f"statuses {dict(sorted(STATUSES.items()))}")
    for label, statuses in BY_OP.items():
        print(f"  {label}: {dict(statuses)}")


@pytest.mark.parametrize("body", [
    b'{"model_id": "mdl_x", "checkpoint_id": 18446744073709551616}',  # past 64 bits
    b'{"checkpoint_id": -9223372036854775809}',
    b'{"model_id": "\\udbbc"}',  # a lone surrogate: stdlib json lets it through
    b'{"label": "\\ud800x"}',
    b'{"dataset_id": "\\udfff", "epochs": 1, "batch_size": 1}',
    b'{"\\ud800": 1}',
])
def test_bodies_orjson_cannot_echo_are_problems_not_500s(live: LiveServer, seeds: Seeds,
                                                          body: bytes) -> None:
    """Found by the fuzzing above: these made the 422 handler (or the database) raise."""
    sid = seeds.session_id
    for url in (f"/v1/users/{seeds.user_id}/sessions", f"/v1/sessions/{sid}/restore",
                f"/v1/sessions/{sid}/checkpoints", f"/v1/sessions/{sid}/jobs"):
        r = httpx.post(live.url + url, content=body,
                       headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code < 500, (url, r.status_code, r.text)
        if r.status_code >= 400:
            assert_problem(r, r.status_code)


@pytest.mark.parametrize("shape", [[1] * 70, [2**62, 28, 28], [2**63, 28, 28],
                                   [2**64 - 1, 28, 28]])
def test_oip_shapes_numpy_cannot_describe_are_422(live: LiveServer, seeds: Seeds,
                                                  shape: list[int]) -> None:
    """Found by tests/fuzz/test_codec_properties.py: np.broadcast_to raised ValueError (500)."""
    header = {"inputs": [{"name": "x", "datatype": "FP32", "shape": shape, "data": [0.0]}]}
    r = httpx.post(f"{live.url}/v1/sessions/{seeds.session_id}/v2/models/infer/infer",
                   json=header, timeout=30)
    assert_problem(r, 422, "'x'")
