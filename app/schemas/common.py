"""Shared pieces: pagination, tensor bodies, ids."""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.schemas import examples
from app.schemas.examples import example

T = TypeVar("T")

USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Text without control characters (Unicode's Cc: C0, DEL, C1). The same in JSON Schema's
# regex dialect and in Python's, so the schema and the server agree on every string.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def control_character(value: str) -> str | None:
    """The first control character of value as U+XXXX, or None."""
    found = _CONTROL.search(value)
    return f"U+{ord(found.group()):04X}" if found else None


def _plain(value: str) -> str:
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    if found := control_character(value):
        raise ValueError(f"must not hold control characters (it holds {found})")
    return value


# A string field of a JSON body. FastAPI parses bodies with the stdlib json, which lets
# "\ud800" (a lone surrogate) and "\u0000" in; the first cannot be encoded, PostgreSQL
# refuses the second (SQLite stores it), so either would reach the database differently.
Text = Annotated[str, AfterValidator(_plain), Field(json_schema_extra={"pattern": TEXT_PATTERN})]


class Body(BaseModel):
    """Base for request bodies: a float field refuses NaN and Infinity with a 422 naming it
    (PostgreSQL refused them with a 500, SQLite stored them, JSON cannot show them)."""

    model_config = ConfigDict(allow_inf_nan=False)


class Schema(BaseModel):
    """Base for response bodies built from ORM rows and dataclasses."""

    model_config = ConfigDict(from_attributes=True)


def _page_example(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """A page's example: the item type's own example, and the cursor to the page after it
    (the last item's id)."""
    args = getattr(cls, "__pydantic_generic_metadata__", {}).get("args") or ()
    extra = getattr(args[0], "model_config", {}).get("json_schema_extra") if args else None
    items = extra.get("examples", [])[:1] if isinstance(extra, dict) else []
    cursor = items[-1].get("id") if items and isinstance(items[-1], dict) else None
    schema["examples"] = [{"items": items, "next_cursor": cursor}]


class ListOf(BaseModel, Generic[T]):
    """A page of a list; pass next_cursor as ?cursor= for the next page."""

    model_config = ConfigDict(json_schema_extra=_page_example)

    items: list[T]
    next_cursor: str | None = None


class TensorSpecOut(BaseModel):
    """One tensor of a signature; -1 marks a dimension the model leaves open."""

    model_config = example(examples.SIGNATURES["infer"]["inputs"]["x"])

    shape: list[int]
    dtype: str


class SignatureOut(BaseModel):
    """The inputs and outputs of one signature."""

    model_config = example(examples.SIGNATURES["infer"])

    inputs: dict[str, TensorSpecOut]
    outputs: dict[str, TensorSpecOut]


class TensorsIn(BaseModel):
    """Signature inputs by name: nested lists (the first dimension is the batch) or scalars."""

    model_config = example(examples.TRAIN, examples.INFER)

    inputs: dict[str, Any]


class TensorsOut(BaseModel):
    """Signature outputs by name."""

    model_config = example(examples.INFER_OUT)

    outputs: dict[str, Any]


class TrainOut(TensorsOut):
    """Outputs of one train step and the session's step count after it."""

    model_config = example(examples.TRAIN_OUT)

    step: int
