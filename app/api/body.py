"""Request bodies under a size limit: one set of rules for the routes and the fast lane."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import error_response
from app.config import Settings
from app.errors import PayloadTooLarge

MULTIPART_SLACK = 65536  # multipart framing around an uploaded file


def limit_for(path: str, settings: Settings) -> int:
    """The largest body a POST to `path` may carry: uploads have their own limits."""
    if path == "/v1/models":
        return settings.max_model_bytes + MULTIPART_SLACK
    if path.startswith("/v1/users/") and path.endswith("/datasets"):
        return settings.max_dataset_bytes + MULTIPART_SLACK
    return settings.max_request_bytes


def check_declared(headers: Iterable[tuple[bytes, bytes]], limit: int) -> None:
    """413 at once when Content-Length already says the body is too large."""
    for name, value in headers:
        if name == b"content-length":
            try:
                size = int(value)
            except ValueError:
                return
            if size > limit:
                raise PayloadTooLarge(f"request body is {size} bytes; the limit here is {limit}")
            return


def limited(receive: Receive, limit: int) -> Receive:
    """`receive`, raising 413 as soon as the body streamed so far passes the limit."""
    seen = 0

    async def counting() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        return message

    return counting


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body (413 past the limit), or None when the client went away."""
    receive = limited(receive, limit)
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None  # http.disconnect
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class BodyLimit:
    """413 for oversized bodies before (or while) they are read into memory."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"], self.settings)
        try:
            check_declared(scope["headers"], limit)
            await self.app(scope, limited(receive, limit), send)
        except PayloadTooLarge as exc:  # raised where no route handler caught it
            await error_response(exc, scope["method"], scope["path"])(scope, receive, send)
