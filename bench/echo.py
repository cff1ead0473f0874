"""The smallest ASGI app: reads the body and answers 200. Under uvicorn it measures what
the transport alone costs a request of a given size (``python -m bench.breakdown``)."""

from __future__ import annotations

from typing import Any

ANSWER = b'{"outputs":[]}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Drain the request, answer a few bytes."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(ANSWER)).encode())]})
    await send({"type": "http.response.body", "body": ANSWER})
