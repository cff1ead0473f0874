"""Reject oversized request bodies before they are read into memory."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import problem


class BodyLimit:
    """413 for oversized bodies: model and dataset uploads get their own limits."""

    def __init__(self, app: ASGIApp, *, default: int, models: int, datasets: int) -> None:
        self.app = app
        self.default = default
        self.models = models
        self.datasets = datasets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        # Multipart framing adds a little around the file itself.
        if path == "/v1/models":
            limit = self.models + 65536
        elif path.startswith("/v1/users/") and path.endswith("/datasets"):
            limit = self.datasets + 65536
        else:
            limit = self.default
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = 0
                if size > limit:
                    await problem(413, f"request body is {size} bytes; the limit here is {limit}",
                                  type_slug="payload-too-large")(scope, receive, send)
                    return
        seen = 0

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, counting, send)
        except BodyTooLarge as exc:
            await problem(413, f"request body exceeds the limit of {exc.limit} bytes",
                          type_slug="payload-too-large")(scope, receive, send)


class BodyTooLarge(Exception):
    """A streamed body passed the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit
