"""Inference as one service: who is calling, finding or loading their live session, and
running a signature on it. The JSON routes, the protocol routes and the protocol's fast lane
(app.api.fastlane) all come through here, so each rule exists once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import numpy as np
from anyio import to_thread

from app.errors import InvalidInput, NotFound, ServiceUnavailable, Unauthorized
from app.metrics import SIGNATURE_CALLS, TRAIN_STEPS
from app.runtime import oip_codec, oip_response
from app.runtime.codec import check_limits
from app.runtime.session import LiveSession, SessionEvicted
from app.runtime.signatures import CHECKPOINT_SIGNATURES, SignatureSpec
from app.services import keys, sessions
from app.services.context import Context
from app.services.keyring import ADMIN, Principal

T = TypeVar("T")
HEADER_LENGTH = oip_response.HEADER_LENGTH
EXTENSIONS = oip_response.EXTENSIONS
__all__ = ["HEADER_LENGTH", "EXTENSIONS", "LiveSession", "Principal"]
_TRAIN_STEPS = TRAIN_STEPS  # bound once: the per-step path looks it up every call
_SIGNATURE_CALLS: dict[str, Any] = {}


class NeedsLookup(Exception):
    """Authenticating this token needs a database read (its first use in this process)."""


def authenticate(ctx: Context, authorization: str | None, *, may_block: bool) -> Principal:
    """Who an Authorization header stands for; 401 unless someone. With may_block False, a
    key not yet cached raises NeedsLookup instead of reading the database."""
    if ctx.settings.admin_token is None:
        return ADMIN  # open mode
    token = None
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            token = credentials.strip()
    if token is not None and not may_block:
        prefix = keys.key_prefix(token)
        if prefix is not None and ctx.keys.get(prefix) is None:
            raise NeedsLookup(prefix)
    found = keys.authenticate(ctx, token) if token is not None else None
    if found is None:
        raise Unauthorized("a valid key is required: Authorization: Bearer <key>",
                           headers={"WWW-Authenticate": "Bearer"})
    return found


async def live_session(ctx: Context, who: Principal, session_id: str) -> LiveSession:
    """The caller's live session (404 for anyone else's); loading runs off the event loop."""
    found = ctx.pool.get(session_id)
    if found is None:
        found = await to_thread.run_sync(partial(sessions.live, ctx, session_id=session_id))
    if not who.may_see(found.user_id):
        raise NotFound(f"session '{session_id}' not found")
    return found


async def on_session(ctx: Context, who: Principal, session_id: str,
                     call: Callable[[LiveSession], Callable[[], T]], *,
                     inline: bool = True, live: LiveSession | None = None) -> T:
    """Run call(live)() in the session's strand, in arrival order, and return its result.

    Cheap calls on an idle session run right here (see SerialExecutor.run_or_submit);
    others, and anything doing I/O (inline=False), go to the interpreter threads. If the
    session was evicted before the call ran, it is loaded again (from the checkpoint the
    eviction wrote) and the call is retried.
    """
    inline_below = ctx.settings.inline_call_ms / 1000 if inline else 0.0
    for _ in range(5):
        if live is None:
            live = await live_session(ctx, who, session_id)
        fut = (live.strand.run_or_submit(call(live), inline_below=inline_below) if inline
               else live.strand.submit(call(live)))
        try:
            return fut.result() if fut.done() else await asyncio.wrap_future(fut)
        except SessionEvicted:
            live = None
    raise ServiceUnavailable(f"session '{session_id}' is being evicted and loaded repeatedly; "
                             "retry shortly")


def protocol_model(live: LiveSession, name: str, version: str | None) -> SignatureSpec:
    """The signature behind a protocol model, or 404 for unknown models and versions."""
    spec = live.signatures.get(name)
    if spec is None or name in CHECKPOINT_SIGNATURES:
        models = ", ".join(sorted(n for n in live.signatures if n not in CHECKPOINT_SIGNATURES))
        raise NotFound(f"unknown model '{name}': this session serves {models}")
    if version not in (None, "", oip_response.VERSION):
        raise NotFound(f"unknown version '{version}' of model '{name}': the only version is "
                       f"'{oip_response.VERSION}'")
    return spec


def protocol_metadata(live: LiveSession, name: str, version: str | None) -> dict[str, Any]:
    """The protocol's model metadata of one of the session's signatures."""
    spec = protocol_model(live, name, version)
    return oip_response.model_metadata(name, spec, oip_response.VERSION, oip_response.PLATFORM)


async def run_protocol(ctx: Context, who: Principal, session_id: str, name: str,
                       version: str | None, body: bytes, *, encoding: str | None,
                       header_length: str | None, live: LiveSession | None = None
                       ) -> tuple[bytes, dict[str, str]]:
    """One protocol infer call on a session: the response body and its headers."""
    if live is None:
        live = await live_session(ctx, who, session_id)
    spec = protocol_model(live, name, version)
    body = oip_codec.decompress(body, encoding, ctx.settings.max_request_bytes)
    parsed = oip_codec.parse_request(body, header_length, spec, name)
    check_limits(spec, parsed.inputs, live.limits)
    outputs, step = await on_session(
        ctx, who, session_id, lambda s: partial(s.run_arrays, name, parsed.inputs,
                                                parsed.batches), live=live)
    params: dict[str, Any] | None = None
    if name == "train":
        _TRAIN_STEPS.inc(parsed.batches)
        params = {"step": step}
    else:
        _count(name)
    payload, split = oip_response.build_response(
        name, oip_response.VERSION, parsed.id, parsed.outputs, parsed.binary_default, outputs,
        params)
    if split is None:
        return payload, {"content-type": "application/json"}
    return payload, {"content-type": "application/octet-stream",
                     oip_response.HEADER_LENGTH: str(split)}


async def train_json(ctx: Context, who: Principal, session_id: str, raw: bytes
                     ) -> dict[str, Any]:
    """One train step from a JSON body: {"outputs": {...}, "step": n}."""
    outputs, step = await on_session(ctx, who, session_id, lambda s: partial(s.train, raw))
    loss = outputs.get("loss")
    _TRAIN_STEPS.inc(len(loss) if isinstance(loss, np.ndarray) and loss.ndim else 1)
    return {"outputs": outputs, "step": step}


async def call_json(ctx: Context, who: Principal, session_id: str, signature: str,
                    raw: bytes) -> dict[str, Any]:
    """Any signature but train, save and restore, from a JSON body: {"outputs": {...}}."""
    if signature == "train":
        raise InvalidInput("use POST /v1/sessions/{id}/train for the train signature")
    if signature in CHECKPOINT_SIGNATURES:
        raise InvalidInput(f"'{signature}' takes a file path; use the checkpoints and restore "
                           "endpoints instead")
    live = await live_session(ctx, who, session_id)
    if signature not in live.signatures:
        raise NotFound(f"model '{live.model_id}' has no signature '{signature}' "
                       f"(it has {', '.join(sorted(live.signatures))})")
    outputs = await on_session(ctx, who, session_id, lambda s: partial(s.call, signature, raw),
                               live=live)
    _count(signature)
    return {"outputs": outputs}


def _count(signature: str) -> None:
    counter = _SIGNATURE_CALLS.get(signature)
    if counter is None:
        counter = _SIGNATURE_CALLS[signature] = SIGNATURE_CALLS.labels(signature)
    counter.inc()
