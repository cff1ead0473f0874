"""The per-step fast lane: protocol infer calls served without FastAPI's routing.

A binary train step of the MLP takes 0.2 ms in the interpreter; FastAPI's middleware,
routing and dependency solving cost about four times that. The app (FleetliteAPI) hands
``POST /v1/sessions/{id}/v2/models/{name}[/versions/{v}]/infer`` to this lane first, which
answers it itself when that needs no I/O: the caller's key is known (or the server runs
open), and the session is live and the caller's. Everything else is FastAPI's: a request
the lane does not take goes on untouched (loading a session, a first key use, a 401 or
404), and a request it takes runs the same code as the route (app.api.oip.run_infer) and
answers the same problem+json bodies, with the same body limit.
"""

from __future__ import annotations

import logging
import re

from starlette.types import Message, Receive, Scope, Send

from app.api.limits import BodyTooLarge
from app.api.oip import HEADER_LENGTH, run_infer
from app.api.problems import problem
from app.errors import FleetliteError
from app.services import keys
from app.services.fleet import Fleet
from app.services.keyring import Principal

log = logging.getLogger("fleetlite.errors")
_INFER = re.compile(r"/v1/sessions/([^/]+)/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
_HEADER = HEADER_LENGTH.lower().encode()


class FastLane:
    """Takes the protocol's infer calls that it can answer without I/O."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def __call__(self, fleet: Fleet | None, scope: Scope, receive: Receive,
                       send: Send) -> bool:
        """Answer the request and return True, or return False having touched nothing."""
        if (fleet is None or scope["type"] != "http" or scope["method"] != "POST"
                or scope.get("query_string")):
            return False
        match = _INFER.fullmatch(scope["path"])
        if match is None:
            return False
        session_id, name, version = match.groups()
        headers = dict(scope["headers"])  # the names uvicorn hands over are lower case
        who = _known_principal(fleet, headers.get(b"authorization"))
        live = fleet.pool.get(session_id) if who is not None else None
        if who is None or live is None or not who.may_see(live.user_id):
            return False  # loading, a DB read, or a 401/404: the route's
        await self._answer(fleet, who, session_id, name, version, headers, scope, receive, send)
        return True

    async def _answer(self, fleet: Fleet, who: Principal, session_id: str, name: str,
                      version: str | None, headers: dict[bytes, bytes], scope: Scope,
                      receive: Receive, send: Send) -> None:
        try:
            body = await self._body(headers, receive)
        except BodyTooLarge:
            await problem(413, f"request body exceeds the limit of {self.limit} bytes",
                          type_slug="payload-too-large")(scope, receive, send)
            return
        if body is None:
            return  # the client went away: the answer would go nowhere
        try:
            payload, out = await run_infer(
                fleet, who, session_id, name, version, body,
                encoding=_text(headers.get(b"content-encoding")),
                header_length=_text(headers.get(_HEADER)))
        except FleetliteError as exc:
            response = problem(exc.status, exc.detail, type_slug=exc.type_slug,
                               headers=exc.headers)
            await response(scope, receive, send)
            return
        except Exception:
            log.exception("unhandled error on POST %s", scope["path"])
            await problem(500, "internal error; the server log has the details")(
                scope, receive, send)
            return
        raw = [(k.encode(), v.encode()) for k, v in out.items()]
        raw.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": payload})

    async def _body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes | None:
        """The whole body (BodyTooLarge past the limit), or None if the client went away."""
        try:
            if int(headers.get(b"content-length", b"0")) > self.limit:
                raise BodyTooLarge(self.limit)
        except ValueError:
            pass
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message: Message = await receive()
            if message["type"] != "http.request":
                return None  # http.disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise BodyTooLarge(self.limit)
            chunks.append(chunk)
            more = message.get("more_body", False)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _known_principal(fleet: Fleet, authorization: bytes | None) -> Principal | None:
    """Who is calling, when that is known without a database read; else None."""
    if fleet.settings.admin_token is None:
        return keys.authenticate(fleet, None)
    if authorization is None:
        return None
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    prefix = keys.key_prefix(token)
    if prefix is not None and fleet.keys.get(prefix) is None:
        return None  # first use of this key: the route reads it from the database
    return keys.authenticate(fleet, token)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")
