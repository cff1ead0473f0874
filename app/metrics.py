"""Prometheus counters. Cheap enough for the per-step path (a lock and an add)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

TRAIN_STEPS = Counter("fleetlite_train_steps_total", "Train steps applied")
SIGNATURE_CALLS = Counter("fleetlite_signature_calls_total", "Non-train signature calls",
                          ["signature"])
CHECKPOINTS = Counter("fleetlite_checkpoints_total", "Checkpoints written", ["kind"])
MODEL_UPLOADS = Counter("fleetlite_model_uploads_total", "Model uploads", ["outcome"])
SESSION_LOADS = Counter("fleetlite_session_loads_total", "Sessions loaded from a checkpoint")
LIVE_SESSIONS = Gauge("fleetlite_live_sessions", "Interpreters loaded in this process")
SESSION_EVICTIONS = Counter("fleetlite_session_evictions_total",
                            "Sessions saved and dropped from memory")
