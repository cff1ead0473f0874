"""The HTTP side of the command line: one client, problem+json turned into clean exits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn
from urllib.parse import quote

import httpx
import typer

from app.cli.output import err_console

ERROR_EXIT = 2
TIMEOUT = httpx.Timeout(60.0, connect=5.0)


def fail(message: str, code: int = ERROR_EXIT) -> NoReturn:
    """Print `error: message` to stderr and exit with code."""
    err_console().print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)


def problem_detail(response: httpx.Response) -> str:
    """The detail of a problem+json answer, or a short description of any other error."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and (body.get("detail") or body.get("error")):
        return str(body.get("detail") or body.get("error"))
    text = response.text.strip()[:200]
    return f"HTTP {response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")


class Api:
    """A sync httpx client on the service's base URL that exits cleanly on any error."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def absolute(self, link: str) -> str:
        """A link from a response (a path) as an absolute URL."""
        return link if "://" in link else f"{self.url}{link}"

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; exit 2 with the server's detail on an error status."""
        with self.transport_errors():
            response = self.http.request(method, path, **kwargs)
        if response.is_error:
            fail(problem_detail(response))
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and return its JSON body."""
        return self.request(method, path, **kwargs).json()

    def json_or_none(self, path: str) -> Any:
        """GET path's JSON body, or None on any failure: for extras that must not end the
        command (a summary after the main answer, a note on a live bar)."""
        try:
            response = self.http.get(path)
            return response.json() if response.is_success else None
        except (httpx.HTTPError, ValueError):
            return None

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response with no read timeout; exit 2 if it cannot start. Errors while
        reading the body are left to the caller (a follower may want to reconnect)."""
        kwargs.setdefault("timeout", httpx.Timeout(TIMEOUT.connect, read=None))
        request = self.http.build_request(method, path, **kwargs)
        with self.transport_errors():
            response = self.http.send(request, stream=True)
        try:
            if response.is_error:
                with self.transport_errors():
                    response.read()
                fail(problem_detail(response))
            yield response
        finally:
            response.close()

    @contextmanager
    def transport_errors(self) -> Iterator[None]:
        """Turn connection failures into one clear message and exit 2."""
        try:
            yield
        except httpx.ConnectError as exc:
            fail(f"cannot connect to {self.url} ({exc}); is the server running? "
                 "Start it with `make run`, or point --url / FLEETLITE_URL at it")
        except httpx.TimeoutException as exc:
            fail(f"{self.url} did not answer in time ({type(exc).__name__})")
        except httpx.TransportError as exc:
            fail(f"connection to {self.url} failed: {type(exc).__name__}: {exc}")


def seg(part: str) -> str:
    """One path segment, percent-encoded so an id cannot reach another route."""
    return quote(part, safe="")
