"""The one place that turns errors into RFC 9457 problem+json responses."""

from __future__ import annotations

import json
import logging
import re
import sys
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from app.errors import FleetliteError
from app.schemas import examples

log = logging.getLogger("fleetlite.errors")
PROBLEM = "application/problem+json"
HTTP_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON via orjson; numpy arrays serialize natively, with no Python lists in between."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers=headers)


def problem(status: int, detail: str, *, type_slug: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """An RFC 9457 response; ``error`` repeats detail for Open Inference Protocol clients."""
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body = {
        "type": f"https://fleetlite.dev/problems/{type_slug or title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "error": detail,
        **extra,
    }
    try:
        content = orjson.dumps(body)
    except TypeError:  # a lone surrogate or a huge integer echoed from the request
        content = orjson.dumps(json_safe(body))
    return Response(content, status_code=status, media_type=PROBLEM, headers=headers)


def json_safe(value: Any) -> Any:
    """value with what orjson refuses made printable: integers past 64 bits become strings,
    lone surrogates (stdlib json, which FastAPI parses bodies with, lets them in) become
    U+FFFD, and anything else that is not JSON becomes its str()."""
    if isinstance(value, dict):
        return {json_safe(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    return json_safe(str(value))


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def error_response(exc: BaseException, method: str, path: str) -> Response:
    """The one mapping from an error to its problem+json answer, for the routes' exception
    handlers and the fast lane alike; a stack trace only ever goes to the log."""
    if isinstance(exc, FleetliteError):
        return problem(exc.status, exc.detail, type_slug=exc.type_slug, headers=exc.headers)
    if isinstance(exc, RequestValidationError):
        # Not "input": it would echo the client's whole body (megabytes of tensors) back.
        errors = json_safe([{k: v for k, v in e.items() if k != "input"} for e in exc.errors()])
        return problem(422, _describe_validation(exc), type_slug="invalid-input",
                       errors=errors)
    if isinstance(exc, StarletteHTTPException):
        return problem(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return problem(500, "internal error; the server log has the details")


class _Digits(str):
    """A JSON integer too long for int() (Python's guard against quadratic conversion)."""


Where = tuple[str | int, ...]


def _number_path(value: Any, path: Where) -> tuple[Where, int] | None:
    if isinstance(value, _Digits):
        return path, len(value.lstrip("-"))
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for key, item in items:
        if (found := _number_path(item, (*path, key))) is not None:
            return found
    return None


def too_long_number(exc: BaseException, request: Request) -> Response | None:
    """A 422 naming the field of a JSON integer too long to convert: FastAPI's body parser
    meets Python's int-digits guard as a bare ValueError and answers a generic 400."""
    if not (isinstance(exc, StarletteHTTPException) and exc.status_code == 400
            and isinstance(exc.__cause__, ValueError)):
        return None
    body, limit = getattr(request, "_body", None), sys.get_int_max_str_digits()
    try:
        parsed = json.loads(body or b"", parse_int=lambda s: _Digits(s) if len(
            s.lstrip("-")) > limit else int(s))
    except ValueError:
        return None
    found = _number_path(parsed, ())
    if found is None:
        return None
    path, digits = found
    field = ".".join(str(p) for p in path) or "body"
    msg = f"a number of {digits} digits is too large for this field"
    return problem(422, f"{field}: {msg}", type_slug="invalid-input", errors=[
        {"type": "number_too_large", "loc": ["body", *path], "msg": msg}])


def install_error_handlers(app: FastAPI) -> None:
    """Map every error the service can raise to problem+json; never leak a stack trace."""

    async def handler(request: Request, exc: Exception) -> Response:
        response = too_long_number(exc, request) or error_response(
            exc, request.method, request.url.path)
        if response.status_code == 405:  # RFC 9110: say which methods the resource has
            response.headers["Allow"] = allowed_methods(request)
        return response

    for kind in (FleetliteError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, handler)
    _document_problems(app)


def allowed_methods(request: Request) -> str:
    """The methods of the resource at the request's path, as the OpenAPI schema lists them (a
    literal path such as /v1/fleets/compare over a template that matches it too); for a path
    the schema leaves out, those some route serves. Starlette's own 405 names only the methods
    of the first route that matched: GET /v1/datasets/{id} but not its DELETE."""
    path, found, fewest = request.url.path, set[str](), None
    for template, item in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        params = template.count("{")
        if re.fullmatch(pattern, path) and (fewest is None or params <= fewest):
            found = (found if params == fewest else set()) | {m.upper() for m in item}
            fewest = params
    if found:
        return ", ".join(m for m in HTTP_METHODS if m in found)
    routes = request.app.router.routes
    return ", ".join(method for method in HTTP_METHODS if any(
        route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes))


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `error` repeats `detail` for Open Inference "
                   "Protocol clients",
    "type": "object",
    "required": ["type", "title", "status", "detail", "error"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "error": {"type": "string"},
    },
    "examples": [examples.PROBLEM],
}


def _problem_content(code: str = "4XX", description: str = "") -> dict[str, Any]:
    content: dict[str, Any] = {"schema": {"$ref": "#/components/schemas/Problem"}}
    if code.isdigit() and int(code) in HTTPStatus._value2member_map_:
        title = HTTPStatus(int(code)).phrase
        generic = description in ("", "Validation Error")  # FastAPI's own words
        detail = title if generic else description
        content["example"] = examples.PROBLEM if generic and code == "422" else {
            "type": f"https://fleetlite.dev/problems/{title.lower().replace(' ', '-')}",
            "title": title, "status": int(code), "detail": detail, "error": detail}
    return {PROBLEM: content}


def _document_problems(app: FastAPI) -> None:
    """Make the OpenAPI schema say what the handlers above send: problem+json for every 4xx
    (FastAPI would document 422 as its own {"detail": [...]} body, which is never sent)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                for code, response in responses.items():
                    if code[0] in "45":
                        response["content"] = _problem_content(
                            code, response.get("description", ""))
                responses.setdefault("4XX", {"description": "Problem (RFC 9457)",
                                             "content": _problem_content()})
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = PROBLEM_SCHEMA
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
