"""Prometheus metrics. Cheap enough for the per-step path (a lock and an add)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

TRAIN_STEPS = Counter("fleetlite_train_steps_total", "Train steps applied")
SIGNATURE_CALLS = Counter("fleetlite_signature_calls_total", "Non-train signature calls",
                          ["signature"])
CHECKPOINTS = Counter("fleetlite_checkpoints_total", "Checkpoints written", ["kind"])
MODEL_UPLOADS = Counter("fleetlite_model_uploads_total", "Model uploads", ["outcome"])
SESSION_LOADS = Counter("fleetlite_session_loads_total", "Sessions loaded from a checkpoint")
LIVE_SESSIONS = Gauge("fleetlite_live_sessions", "Interpreters loaded in this process")
SESSION_EVICTIONS = Counter("fleetlite_session_evictions_total",
                            "Sessions saved and dropped from memory")
BACKGROUND_POSTPONED = Counter(
    "fleetlite_background_postponed_total",
    "Background rounds put off because a dependency did not answer (retried later)", ["task"])

# Request count and latency per route template, with the names and labels of
# prometheus-fastapi-instrumentator's defaults. The instrumentator records the routes
# FastAPI serves (instrumentation below); the fast lane, which answers before FastAPI,
# records its calls into the same two metrics (observe_request).
HTTP_REQUESTS = Counter("http_requests_total", "Total number of requests by method, status "
                        "and handler.", ["method", "status", "handler"])
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds", "Latency with only few buckets by handler.",
    ["method", "handler"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def observe_request(method: str, handler: str, status: int | str, seconds: float) -> None:
    """Count one answered request and its latency (status grouped as 2xx, 4xx, ...)."""
    group = f"{str(status)[0]}xx"
    key = (method, handler, group)
    pair = _children.get(key)
    if pair is None:  # labels() costs a few microseconds: resolve each series once
        pair = _children[key] = (HTTP_REQUESTS.labels(method, group, handler),
                                 HTTP_LATENCY.labels(method, handler))
    pair[0].inc()
    pair[1].observe(seconds)


def instrumentation(info: Any) -> None:
    """prometheus-fastapi-instrumentator's hook: the same two metrics for FastAPI's routes."""
    observe_request(info.method, info.modified_handler, info.modified_status,
                    info.modified_duration)
