"""Reject oversized request bodies before they are read into memory."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import problem


class BodyLimit:
    """413 for oversized bodies: model uploads get the model limit, the rest the request one."""

    def __init__(self, app: ASGIApp, *, default: int, uploads: int) -> None:
        self.app = app
        self.default = default
        self.uploads = uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        # Multipart framing adds a little around the file itself.
        limit = self.uploads + 65536 if path in ("/v1/models",) else self.default
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
