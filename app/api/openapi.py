"""What the OpenAPI schema says beyond what FastAPI derives from the routes: the overview,
security only when keys are on, uploads as files, the limits the settings set, and the
bodies that the routes read themselves (tensors, protocol requests). Served offline by
fastapi-offline's Swagger UI (/docs) and ReDoc (/redoc)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from app.config import Settings
from app.schemas import examples
from app.schemas.common import TensorsIn
from app.schemas.oip import InferRequest

TAGS = [
    {"name": "models", "description": "Base `.tflite` models with the `train`, `infer`, `save` "
     "and `restore` signatures of on-device training. Every key reads them; only the admin "
     "uploads and deletes."},
    {"name": "sessions", "description": "A user's live interpreter on a base model: train "
     "steps, inference and any other signature, with tensors as JSON."},
    {"name": "checkpoints", "description": "Files written by the model's `save` signature, "
     "kept per user; each restores in any TFLite interpreter."},
    {"name": "datasets", "description": "A user's training examples: an `.npz` whose arrays "
     "are named after the `train` signature's inputs."},
    {"name": "jobs", "description": "Epochs over a dataset, run on the server, with a "
     "checkpoint after each; progress as JSON, Server-Sent Events or a chart."},
    {"name": "fleets", "description": "A simulated population of devices, each a session, "
     "trained in federated rounds on the model's own `.tflite`: partitions, strategies, "
     "personalization, devices on a virtual clock, reports."},
    {"name": "devices", "description": "The device catalogue of the virtual clock: phone "
     "classes with their speed, network, energy and battery, each figure with its source."},
    {"name": "open inference protocol", "description": "Each session speaks the Open "
     "Inference Protocol (v2) under `/v1/sessions/{session_id}`: its signatures are the "
     "protocol's models, so a stock client (tritonclient) works, binary tensors included."},
    {"name": "privacy", "description": "Differential privacy for fleets: epsilon of a "
     "DP-FedAvg schedule, or the noise multiplier a target epsilon needs."},
    {"name": "keys", "description": "Per-user API keys, when `FLEETLITE_ADMIN_TOKEN` is set; "
     "admin only."},
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics; no key."},
]

SWAGGER_UI = {"validatorUrl": None, "displayRequestDuration": True, "filter": True,
              "persistAuthorization": True, "defaultModelsExpandDepth": 0}

_OVERVIEW = """\
Upload a trainable `.tflite` model (with the `train`, `infer`, `save` and `restore`
signatures of on-device training); each user gets **sessions**, live interpreters that
train on their data, answer `infer` and save **checkpoints** that restore in any TFLite
interpreter, as on a phone.

- **Tensors** go in as `{"inputs": {"<input name>": <nested list>}}`, named, shaped and typed
  as the model's signatures say (`GET /v1/models/{model_id}`); the first dimension is the
  batch. The examples here are a batch of two for a model with 4 features and 3 classes.
- **Errors** are RFC 9457 `application/problem+json`; `error` repeats `detail`.
- **Lists** take `?limit=` (1 to 500, 50 by default) and `?cursor=` (the `next_cursor` of
  the page before).
"""
_OPEN = ("- **Keys**: this server runs open (`FLEETLITE_ADMIN_TOKEN` is not set), so no route "
         "asks for one.\n")
_KEYS = ("- **Keys**: every route but health takes `Authorization: Bearer <key>` (use "
         "**Authorize**). The admin token reaches everything; a user's key reaches that user's "
         "objects only, and anyone else's answer 404, as if they did not exist.\n")


def description(settings: Settings) -> str:
    """The overview at the top of /docs and /redoc, saying whether keys are on."""
    return _OVERVIEW + (_OPEN if settings.admin_token is None else _KEYS)


def json_body(model: type[BaseModel], **named: dict[str, Any]) -> dict[str, Any]:
    """openapi_extra for a route that reads its JSON body itself: the model's schema (added to
    the components by install_openapi) and named examples."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"},
        "examples": {key: {"summary": key.replace("_", " "), "value": value}
                     for key, value in named.items()}}}}}


def event_stream(schema: str) -> dict[int | str, dict[str, Any]]:
    """`responses` of a Server-Sent Events route: `progress` events while the work runs,
    then one `end`, each with the named schema as JSON in `data`."""
    return {200: {"description": "Server-Sent Events", "content": {"text/event-stream": {
        "schema": {"type": "object", "required": ["event", "data"], "properties": {
            "event": {"type": "string", "enum": ["progress", "end"]},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": {"$ref": f"#/components/schemas/{schema}"}}}},
        "example": 'event: progress\ndata: {"id": "...", "status": "running", ...}\n\n'}}}}


TRAIN_BODY = json_body(TensorsIn, batch_of_two=examples.TRAIN)
INFER_BODY = json_body(TensorsIn, batch_of_two=examples.INFER)
_BODY_MODELS = (TensorsIn, InferRequest)


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Refine the app's OpenAPI schema once, when it is first asked for."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        refine(schema, settings)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def refine(schema: dict[str, Any], settings: Settings) -> None:
    """Make the schema say what this server does with these settings."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    if settings.admin_token is None:  # open: no route asks for a key, so none says it does
        components.pop("securitySchemes", None)
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                operation.pop("security", None)
    for model in _BODY_MODELS:
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
    for name, body in schemas.items():
        if name.startswith("Body_"):  # multipart forms: a file field is shown as a file
            for prop in body.get("properties", {}).values():
                if prop.get("contentMediaType") == "application/octet-stream":
                    prop["format"] = "binary"
    batch = schemas.get("JobCreate", {}).get("properties", {}).get("batch_size")
    if batch is not None:  # the server's limit, not only the type's
        batch["maximum"] = min(batch.get("maximum", settings.max_batch_size),
                               settings.max_batch_size)
