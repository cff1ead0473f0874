"""Schemathesis hooks for `schemathesis run` (schemathesis.toml loads this module): generated
requests reach real objects. FUZZ_SEEDS holds the ids of objects on the server under
test (JSON: user_id, model_id, dataset_id, session_id, checkpoint_id, ...); each id in a path,
a query or a JSON body is then swapped for the real one in some cases, so the fuzzer gets past
the 404s to the code behind them. Without the variable the hooks change nothing.

Work that real ids would start is kept small (a job's epochs, a fleet's rounds and clients),
and DELETEs keep their random ids: they would remove the seeds (a model's delete is the
exception, as the seeded session holds it: 409, nothing changes).
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis
from hypothesis import strategies as st

SEEDS: dict[str, str] = json.loads(os.environ.get("FUZZ_SEEDS") or "{}")
BODY_IDS = ("model_id", "checkpoint_id", "dataset_id", "test_dataset_id")
QUERY_IDS = ("model_id", "session_id")
# The most a generated request may ask for once its ids are real, so no case runs for long.
SMALL = {"epochs": 2, "rounds": 2, "clients": 4, "clients_per_round": 4, "local_epochs": 1,
         "finetune_epochs": 1}


def _maybe_real(name: str, value: Any) -> st.SearchStrategy[Any]:
    real = SEEDS.get(name)
    return st.sampled_from([value, real]) if real is not None else st.just(value)


@schemathesis.hook
def flatmap_path_parameters(ctx: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Each path id: the generated one or the seeded one."""
    if not path_parameters or not SEEDS:
        return st.just(path_parameters)
    method = ctx.operation.method.upper() if ctx.operation else "GET"
    return st.fixed_dictionaries({
        name: st.just(value) if method == "DELETE" and name != "model_id"
        else _maybe_real(name, value) for name, value in path_parameters.items()})


@schemathesis.hook
def flatmap_query(ctx: Any, query: dict[str, Any] | None) -> Any:
    """A list's filters (`?model_id=`, `?session_id=`): sometimes the seeded object's."""
    if not query or not SEEDS:
        return st.just(query)
    return st.fixed_dictionaries({
        name: _maybe_real(name, value) if name in QUERY_IDS and isinstance(value, str)
        else st.just(value) for name, value in query.items()})


@schemathesis.hook
def flatmap_body(ctx: Any, body: Any) -> Any:
    """Ids in a JSON body: sometimes the seeded objects'; the work they start kept small."""
    if not isinstance(body, dict) or not SEEDS:
        return st.just(body)
    options = {k: _maybe_real(k, v) if k in BODY_IDS and isinstance(v, str) else st.just(v)
               for k, v in body.items()}
    for key, cap in SMALL.items():
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            options[key] = st.just(cap)
    return st.fixed_dictionaries(options)
