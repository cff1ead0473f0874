"""Shared pieces: pagination, tensor bodies, ids."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

T = TypeVar("T")

USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _encodable(value: str) -> str:
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


# A string field of a JSON body. FastAPI parses bodies with the stdlib json, which lets
# "\ud800" (a lone surrogate) in; such a str cannot be encoded, so the database would fail.
Text = Annotated[str, AfterValidator(_encodable)]


class Schema(BaseModel):
    """Base for response bodies built from ORM rows and dataclasses."""

    model_config = ConfigDict(from_attributes=True)


class ListOf(BaseModel, Generic[T]):
    """A page of a list; pass next_cursor as ?cursor= for the next page."""

    items: list[T]
    next_cursor: str | None = None


class TensorSpecOut(BaseModel):
    """One tensor of a signature; -1 marks a dimension the model leaves open."""

    shape: list[int]
    dtype: str


class SignatureOut(BaseModel):
    """The inputs and outputs of one signature."""

    inputs: dict[str, TensorSpecOut]
    outputs: dict[str, TensorSpecOut]


class TensorsIn(BaseModel):
    """Signature inputs by name: nested lists or scalars."""

    inputs: dict[str, Any] = Field(examples=[{"x": [[[0.0] * 28] * 28]}])


class TensorsOut(BaseModel):
    """Signature outputs by name."""

    outputs: dict[str, Any]


class TrainOut(TensorsOut):
    """Outputs of one train step and the session's step count after it."""

    step: int
