"""The options of a Keras conversion: which layers train, the loss, the optimizer, the label."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

LOSSES = ("categorical_crossentropy", "sparse_categorical_crossentropy",
          "binary_crossentropy", "mse")
SLOT_PREFIX = "optimizer/"  # every optimizer variable is saved under it; fleets keep it local


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SGD(_Strict):
    """Keras's SGD: w -= lr * g, or with momentum m = momentum * m - lr * g; w += m."""

    name: Literal["sgd"]
    learning_rate: float = Field(0.01, gt=0, le=10)
    momentum: float = Field(0.0, ge=0, lt=1)


class Adam(_Strict):
    """Keras's Adam, with its defaults."""

    name: Literal["adam"]
    learning_rate: float = Field(0.001, gt=0, le=10)
    beta_1: float = Field(0.9, ge=0, lt=1)
    beta_2: float = Field(0.999, ge=0, lt=1)
    epsilon: float = Field(1e-7, gt=0, le=1)


class Label(_Strict):
    """The train signature's label input; shape and dtype default from the loss."""

    name: str = Field("label", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    shape: list[Annotated[int, Field(ge=1, le=1 << 20)]] | None = Field(None, max_length=8)
    dtype: Literal["float32", "int32", "int64"] | None = None


class ConvertOptions(_Strict):
    """Everything a conversion needs besides the Keras file."""

    trainable: str | list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        "all", description='"all", "last:N" (the last N layers with weights) or layer names')
    loss: Literal["categorical_crossentropy", "sparse_categorical_crossentropy",
                  "binary_crossentropy", "mse"] = "categorical_crossentropy"
    from_logits: bool = False
    optimizer: SGD | Adam = Field(default_factory=lambda: SGD(name="sgd"),
                                  discriminator="name")
    label: Label = Field(default_factory=Label)

    @field_validator("trainable")
    @classmethod
    def _trainable(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str) and value != "all" and not re.fullmatch(r"last:[1-9]\d{0,4}",
                                                                           value):
            raise ValueError('must be "all", "last:N" with N >= 1, or a list of layer names')
        if isinstance(value, list) and not value:
            raise ValueError("names no layer")
        return value


class OptionsError(ValueError):
    """Options that cannot be used; `field` names the offending option."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"options{'.' if field else ''}{field}: {message}")
        self.field = field


def parse_options(raw: Any) -> ConvertOptions:
    """Options from their JSON form, or OptionsError naming the first bad option."""
    if not isinstance(raw, dict):
        raise OptionsError("", "must be a JSON object")
    try:
        return ConvertOptions.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]
               if not (isinstance(p, str) and p in ("sgd", "adam", "str", "list[str]"))]
        field = ".".join(loc)
        message = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
        raise OptionsError(field, message) from None
