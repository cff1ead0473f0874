"""Domain errors, each declaring its HTTP status; api/problems.py maps them to responses."""

from __future__ import annotations


class FleetliteError(Exception):
    """Base for errors a client can cause; ``status`` is the HTTP answer."""

    status = 400
    type_slug = "bad-request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class NotFound(FleetliteError):
    """An id that does not exist (or that the caller may not see)."""

    status, type_slug = 404, "not-found"


class Conflict(FleetliteError):
    """The request clashes with the current state."""

    status, type_slug = 409, "conflict"


class PayloadTooLarge(FleetliteError):
    """A body or file over a configured limit."""

    status, type_slug = 413, "payload-too-large"


class InvalidInput(FleetliteError):
    """Well-formed HTTP, but the content is wrong (tensor shape, model file, ids)."""

    status, type_slug = 422, "invalid-input"


class InvalidModel(InvalidInput):
    """An uploaded file that is not a trainable TFLite model."""

    type_slug = "invalid-model"


class ModelExecutionError(FleetliteError):
    """The interpreter refused inputs that passed the signature check."""

    status, type_slug = 422, "model-execution-error"


class TooManyRequests(FleetliteError):
    """A per-user limit is reached; Retry-After says when to try again."""

    status, type_slug = 429, "too-many-requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class ServiceUnavailable(FleetliteError):
    """A dependency (database, blob store) did not answer."""

    status, type_slug = 503, "service-unavailable"


class Unauthorized(FleetliteError):
    """No key, or a key that is not (or no longer) valid."""

    status, type_slug = 401, "unauthorized"


class Forbidden(FleetliteError):
    """A valid user key asking for an admin-only operation."""

    status, type_slug = 403, "forbidden"
