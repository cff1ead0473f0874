"""The device catalogue (package data devices.json), a fleet's `devices` spec, the class draw.

`parse_devices(spec)` checks a FleetSpec's `devices` object against the API and answers a
`DeviceSpec`: the classes of its mix (sorted by name), their weights, the availability
kind and the battery floor. Classes are sorted by name rather than kept in the order
given, because a spec stored as JSONB comes back with its keys reordered and the class
draw must not change with that.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from app.errors import InvalidInput
from app.federated.seeds import generator

SPEED_FIELDS = ("slowdown", "ms_per_example")
# Each figure and what it must satisfy; a zero speed or bandwidth would divide by zero.
FIGURES: dict[str, tuple[str, float]] = {
    "slowdown": (">", 0.0),
    "ms_per_example": (">", 0.0),
    "down_kbps": (">", 0.0),
    "up_kbps": (">", 0.0),
    "train_watts": (">=", 0.0),
    "radio_joules_per_mb": (">=", 0.0),
    "battery_wh": (">", 0.0),
    "charge_pct_per_hour": (">=", 0.0),
}
# Descriptive members a class copied from GET /v1/devices may carry; they are ignored.
INFO_FIELDS = ("description", "sources")
AVAILABILITY = ("always", "diurnal")
SPEC_FIELDS = ("mix", "classes", "availability", "min_battery_pct")
CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class DeviceClass:
    """One class of device; exactly one of `slowdown` and `ms_per_example` is set."""

    name: str
    down_kbps: float
    up_kbps: float
    train_watts: float
    radio_joules_per_mb: float
    battery_wh: float
    charge_pct_per_hour: float
    slowdown: float | None = None
    ms_per_example: float | None = None

    def resolve(self, model_ms_per_example: float | None) -> DeviceClass:
        """This class with `ms_per_example` set: as given, or slowdown x the model's own."""
        if self.ms_per_example is not None:
            return self
        if model_ms_per_example is None or not model_ms_per_example > 0:
            raise InvalidInput(f"devices.classes.{self.name}.slowdown: the model has no measured "
                               "train time per example; give ms_per_example instead")
        assert self.slowdown is not None
        return replace(self, ms_per_example=self.slowdown * float(model_ms_per_example))

    def figures(self) -> dict[str, float]:
        """The class's figures as a JSON object (the speed field that is set, then the rest)."""
        out = {f: getattr(self, f) for f in SPEED_FIELDS if getattr(self, f) is not None}
        out.update({f: getattr(self, f) for f in FIGURES if f not in SPEED_FIELDS})
        return out


@cache
def _document() -> dict[str, Any]:
    text = resources.files("app.federated").joinpath("devices.json").read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def catalogue_document() -> dict[str, Any]:
    """The catalogue as GET /v1/devices shows it: figures, sources, default mix (a copy)."""
    return copy.deepcopy(_document())


def catalogue() -> dict[str, DeviceClass]:
    """The built-in classes by name."""
    return {name: _device_class(f"catalogue.{name}", name, body)
            for name, body in _document()["classes"].items()}


def default_mix() -> dict[str, float]:
    """The catalogue's default mix: class name -> weight."""
    return {name: float(w) for name, w in _document()["mix"].items()}


@dataclass(frozen=True)
class DeviceSpec:
    """A checked `devices` spec: the mix's classes sorted by name and their weights."""

    classes: tuple[DeviceClass, ...]
    weights: tuple[float, ...]
    availability: str
    min_battery_pct: float
    added: tuple[DeviceClass, ...] = ()  # the spec's own `classes`, for to_dict

    @property
    def names(self) -> tuple[str, ...]:
        """The class names, in class-index order."""
        return tuple(c.name for c in self.classes)

    def resolve(self, model_ms_per_example: float | None) -> tuple[DeviceClass, ...]:
        """Every class of the mix with its `ms_per_example` resolved against the model."""
        return tuple(c.resolve(model_ms_per_example) for c in self.classes)

    def draw(self, n_clients: int, seed: int) -> np.ndarray:
        """Each client's class index (into `classes`), seeded by (seed, "device_class")."""
        return draw_classes(self.weights, n_clients, seed)

    def to_dict(self) -> dict[str, Any]:
        """The spec with its defaults filled in, as stored in the Fleet's spec."""
        return {"mix": dict(zip(self.names, self.weights, strict=True)),
                "classes": {c.name: c.figures() for c in self.added},
                "availability": self.availability,
                "min_battery_pct": self.min_battery_pct}


def draw_classes(weights: tuple[float, ...] | np.ndarray, n_clients: int, seed: int) -> np.ndarray:
    """Draw n_clients class indices with probabilities proportional to weights (vectorised)."""
    w = np.asarray(weights, dtype=np.float64)
    positive = np.flatnonzero(w > 0)
    if positive.size == 0:
        raise ValueError("the weights add up to 0")
    cdf = np.cumsum(w[positive]) / w[positive].sum()
    # The last edge is exactly 1 so that rounding can never hand a draw to no class.
    cdf[-1] = 1.0
    u = generator(seed, "device_class").random(n_clients)
    return positive[np.searchsorted(cdf, u, side="right")].astype(np.int64)


def parse_devices(spec: Mapping[str, Any] | None) -> DeviceSpec:
    """Check a FleetSpec's `devices` object; InvalidInput names the first bad field."""
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise InvalidInput("devices: must be an object such as {\"availability\": \"diurnal\"}")
    for field in spec:
        if field not in SPEC_FIELDS:
            raise InvalidInput(f"devices.{field}: unknown field (known: {', '.join(SPEC_FIELDS)})")
    known = catalogue()
    added = _parse_classes(spec.get("classes"), known)
    known.update({c.name: c for c in added})
    mix = _parse_mix(spec.get("mix"), known)
    availability = spec.get("availability", "always")
    if availability not in AVAILABILITY:
        raise InvalidInput(f"devices.availability: must be 'always' or 'diurnal', "
                           f"got {availability!r}")
    floor = spec.get("min_battery_pct", 0)
    if not (_is_number(floor) and 0.0 <= floor <= 100.0):
        raise InvalidInput(f"devices.min_battery_pct: must be a number in [0, 100], got {floor!r}")
    names = sorted(mix)
    return DeviceSpec(classes=tuple(known[n] for n in names),
                      weights=tuple(mix[n] for n in names),
                      availability=str(availability), min_battery_pct=float(floor),
                      added=tuple(sorted(added, key=lambda c: c.name)))


def _parse_classes(classes: Any, known: dict[str, DeviceClass]) -> list[DeviceClass]:
    if classes is None:
        return []
    if not isinstance(classes, Mapping):
        raise InvalidInput("devices.classes: must be an object mapping class names to figures")
    out = []
    for name, body in classes.items():
        if not (isinstance(name, str) and CLASS_NAME.match(name)):
            raise InvalidInput(f"devices.classes: class name {name!r} must match "
                               f"{CLASS_NAME.pattern}")
        if not isinstance(body, Mapping):
            raise InvalidInput(f"devices.classes.{name}: must be an object of figures")
        base = known.get(name)
        if base is not None:
            # An override keeps the catalogue's figures it does not name; a speed field
            # given replaces the base's speed field, whichever of the two that was.
            merged = base.figures()
            if any(f in body for f in SPEED_FIELDS):
                for f in SPEED_FIELDS:
                    merged.pop(f, None)
            body = {**merged, **body}
        out.append(_device_class(f"devices.classes.{name}", name, body))
    return out


def _device_class(path: str, name: str, body: Mapping[str, Any]) -> DeviceClass:
    for field in body:
        if field not in FIGURES and field not in INFO_FIELDS:
            raise InvalidInput(f"{path}.{field}: unknown field "
                               f"(known: {', '.join(FIGURES)})")
    speed = [f for f in SPEED_FIELDS if body.get(f) is not None]
    if len(speed) != 1:
        raise InvalidInput(f"{path}: give exactly one of slowdown and ms_per_example")
    values: dict[str, float] = {}
    for field, (op, bound) in FIGURES.items():
        value = body.get(field)
        if value is None:
            if field in SPEED_FIELDS:
                continue
            raise InvalidInput(f"{path}.{field}: missing (a class needs "
                               f"{', '.join(f for f in FIGURES if f not in SPEED_FIELDS)})")
        if not _is_number(value):
            raise InvalidInput(f"{path}.{field}: must be a finite number, got {value!r}")
        if not (value > bound if op == ">" else value >= bound):
            raise InvalidInput(f"{path}.{field}: must be {op} {bound:g}, got {value!r}")
        values[field] = float(value)
    return DeviceClass(name=name, **values)


def _parse_mix(mix: Any, known: dict[str, DeviceClass]) -> dict[str, float]:
    if mix is None:
        return default_mix()
    if not isinstance(mix, Mapping):
        raise InvalidInput("devices.mix: must be an object mapping class names to weights")
    out = {}
    for name, weight in mix.items():
        if name not in known:
            raise InvalidInput(f"devices.mix: unknown class {name!r} "
                               f"(known: {', '.join(sorted(known))})")
        if not (_is_number(weight) and weight >= 0):
            raise InvalidInput(f"devices.mix.{name}: must be a finite number >= 0, got {weight!r}")
        out[name] = float(weight)
    total = sum(out.values())
    if not total > 0:
        raise InvalidInput("devices.mix: the weights add up to 0")
    if not math.isfinite(total):
        raise InvalidInput("devices.mix: the weights add up to more than a float holds")
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
