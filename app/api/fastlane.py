"""The per-step fast lane: the outermost middleware answers protocol infer calls itself.

A binary train step of the MLP takes 0.2 ms in the interpreter; FastAPI's middleware,
routing and dependency solving cost several times that. This middleware takes
``POST /v1/sessions/{id}/v2/models/{name}[/versions/{v}]/infer`` when it can answer with no
I/O (the caller's key is cached or the server runs open, and the session is live and the
caller's) and runs it through the same service as the route (app.services.inference), with
the same body limit (app.api.body), the same error answers (app.api.problems) and the same
request metrics (app.metrics.observe_request). Anything else goes on to FastAPI untouched:
loading a session, a key's first use, a 401 or 404.
"""

from __future__ import annotations

import re
import time

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.body import check_declared, read_body
from app.api.problems import error_response
from app.errors import FleetliteError
from app.metrics import observe_request
from app.services import inference
from app.services.context import Context

_INFER = re.compile(r"/v1/sessions/([^/]+)/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
_HEADER = inference.HEADER_LENGTH.lower().encode()
# The handler label FastAPI's instrumentation gives the same route, so both count as one.
HANDLERS = ("/v1/sessions/{session_id}/v2/models/{model_name}/infer",
            "/v1/sessions/{session_id}/v2/models/{model_name}/versions/{model_version}/infer")


class FastLane:
    """Outermost ASGI middleware; `ctx` is read from the app's state once it is built."""

    def __init__(self, app: ASGIApp, *, state: object) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: Context | None = getattr(self.state, "ctx", None)
        match = None
        if (ctx is not None and scope["type"] == "http" and scope["method"] == "POST"
                and not scope.get("query_string")):
            match = _INFER.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        assert ctx is not None
        headers = dict(scope["headers"])  # the names uvicorn hands over are lower case
        session_id, name, version = match.groups()
        try:
            who = inference.authenticate(ctx, _text(headers.get(b"authorization")),
                                         may_block=False)
        except (inference.NeedsLookup, FleetliteError):
            who = None  # a first use (a DB read) or a 401: the route's
        live = ctx.pool.get(session_id) if who is not None else None
        if who is None or live is None or not who.may_see(live.user_id):
            await self.app(scope, receive, send)  # loading, a DB read, or a 404: the route's
            return
        started = time.perf_counter()
        status = await self._answer(ctx, scope, receive, send, headers, live, who,
                                    session_id, name, version)
        if status:
            observe_request("POST", HANDLERS[version is not None], status,
                            time.perf_counter() - started)

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


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")
