"""The fast lane: per-step protocol calls, and status reads of running work, answered
before FastAPI sees them.

A binary train step of the MLP takes 0.2 ms in the interpreter; FastAPI's own stack (its
telemetry and body-limit middlewares, then ours, routing and dependency solving) costs
more than the step. The app's own ASGI entry (app.main.App) asks the lane first; it takes
``POST /v1/sessions/{id}/v2/models/{name}[/versions/{v}]/infer`` when it can answer with no
I/O (the caller's key is cached or the server runs open, and the session is live and the
caller's) and runs it through the same service as the route (app.services.inference), with
the same body limit (app.api.body), the same error answers (app.api.problems) and the same
request metrics (app.metrics.observe_request). It also answers ``GET /v1/jobs/{id}`` and
``GET /v1/fleets/{id}`` for work running in this process, from memory, with the routes'
own response models: a client polling a job's status costs the job next to nothing.
Anything else goes on to FastAPI untouched: loading a session, a key's first use, a 401 or
404, work that is not running here.
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.types import Receive, Scope, Send

from app.api.body import check_declared, read_body
from app.api.problems import error_response
from app.errors import FleetliteError
from app.metrics import observe_request
from app.schemas.fleets import Fleet
from app.schemas.training import Job
from app.services import fleet as fleets
from app.services import inference, jobs
from app.services.context import Context

_INFER = re.compile(r"/v1/sessions/([^/]+)/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
_STATUS = re.compile(r"/v1/(jobs|fleets)/([^/]+)")
_STATUS_HANDLERS = {"jobs": "/v1/jobs/{job_id}", "fleets": "/v1/fleets/{fleet_id}"}
_HEADER = inference.HEADER_LENGTH.lower().encode()
# The handler label FastAPI's instrumentation gives the same route, so both count as one.
HANDLERS = ("/v1/sessions/{session_id}/v2/models/{model_name}/infer",
            "/v1/sessions/{session_id}/v2/models/{model_name}/versions/{model_version}/infer")


class FastLane:
    """Answers what it can; `ctx` is read from the app's state once it is built."""

    def __init__(self, state: object) -> None:
        self.state = state

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the call if it is the lane's; False (nothing read, nothing sent) if not."""
        if scope["type"] != "http" or scope.get("query_string"):
            return False
        ctx: Context | None = getattr(self.state, "ctx", None)
        if ctx is None:
            return False
        if scope["method"] == "GET":
            read = _STATUS.fullmatch(scope["path"])
            return read is not None and await self._status(ctx, scope, send, *read.groups())
        match = _INFER.fullmatch(scope["path"]) if scope["method"] == "POST" else None
        if match is None:
            return False
        headers = dict(scope["headers"])  # the names uvicorn hands over are lower case
        session_id, name, version = match.groups()
        who = _who(ctx, headers)
        if who is None:
            return False  # a first use (a DB read) or a 401: the route's
        live = ctx.pool.get(session_id)
        if live is None or not who.may_see(live.user_id):
            return False  # loading, or a 404: the route's
        started = time.perf_counter()
        status = await self._answer(ctx, scope, receive, send, headers, live, who,
                                    session_id, name, version)
        if status:
            observe_request("POST", HANDLERS[version is not None], status,
                            time.perf_counter() - started)
        return True

    async def _answer(self, ctx: Context, scope: Scope, receive: Receive, send: Send,
                      headers: dict[bytes, bytes], live: inference.LiveSession,
                      who: inference.Principal, session_id: str, name: str,
                      version: str | None) -> int:
        """Answer one call; its status, or 0 when the client went away before its body."""
        try:
            limit = ctx.settings.max_request_bytes
            check_declared(scope["headers"], limit)
            body = await read_body(receive, limit)
            if body is None:
                return 0  # the answer would go nowhere
            payload, out = await inference.run_protocol(
                ctx, who, session_id, name, version, body,
                encoding=_text(headers.get(b"content-encoding")),
                header_length=_text(headers.get(_HEADER)), live=live)
        except Exception as exc:  # noqa: BLE001 - answered as the routes answer it
            response = error_response(exc, "POST", scope["path"])
            await response(scope, receive, send)
            return response.status_code
        raw = [(k.encode(), v.encode()) for k, v in out.items()]
        raw.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": payload})
        return 200

    async def _status(self, ctx: Context, scope: Scope, send: Send, kind: str,
                      object_id: str) -> bool:
        """A running job's or fleet's view, from memory, as its route shows it."""
        started = time.perf_counter()
        found: Any = (jobs.live_view(ctx, job_id=object_id) if kind == "jobs"
                      else fleets.live_view(ctx, fleet_id=object_id))
        if found is None:
            return False  # not running here: the route reads the database
        who = _who(ctx, dict(scope["headers"]))
        if who is None or not who.may_see(found.user_id):
            return False  # the route's 401 or 404
        model = Job if kind == "jobs" else Fleet
        payload = model.model_validate(found).model_dump_json().encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
        observe_request("GET", _STATUS_HANDLERS[kind], 200, time.perf_counter() - started)
        return True


def _who(ctx: Context, headers: dict[bytes, bytes]) -> inference.Principal | None:
    """The caller, when that needs no I/O; None for a key's first use or a 401."""
    try:
        return inference.authenticate(ctx, _text(headers.get(b"authorization")),
                                      may_block=False)
    except (inference.NeedsLookup, FleetliteError):
        return None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")
