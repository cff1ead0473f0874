"""The device catalogue and a fleet's `devices` spec: sources, 422s naming the field, draws."""

from __future__ import annotations

import numpy as np
import pytest

from app.errors import InvalidInput
from app.federated.devices import (
    FIGURES,
    DeviceClass,
    catalogue,
    catalogue_document,
    default_mix,
    draw_classes,
    parse_devices,
)

BASES = {"measured", "derived", "assumption"}


def test_catalogue_loads_and_every_figure_has_a_source_or_an_assumption_note():
    doc = catalogue_document()
    refs = doc["references"]
    assert len(doc["classes"]) >= 3
    for name, body in doc["classes"].items():
        figures = [f for f in FIGURES if f in body]
        assert len(figures) == len(FIGURES) - 1, name  # one of slowdown / ms_per_example
        assert set(body["sources"]) == set(figures), name
        for figure, source in body["sources"].items():
            assert source["basis"] in BASES, (name, figure)
            assert source["note"].strip(), (name, figure)
            if source["basis"] != "assumption":
                assert source["refs"], (name, figure)
            assert all(r in refs and refs[r]["url"].startswith("http")
                       for r in source.get("refs", [])), (name, figure)
    assert doc["mix_source"]["basis"] in BASES and doc["mix_source"]["note"].strip()
    assert set(doc["mix"]) <= set(doc["classes"])


def test_catalogue_classes_carry_the_document_figures():
    doc = catalogue_document()
    for name, c in catalogue().items():
        assert c.figures() == {f: doc["classes"][name][f] for f in c.figures()}
    assert default_mix() == doc["mix"]
    doc["classes"].clear()  # a copy: the catalogue itself is untouched
    assert catalogue()


def test_the_catalogue_spreads_speed_as_ai_benchmark_does():
    c = catalogue()
    # The 10th to 90th percentile of phone CPU scores spread ~12x.
    assert c["low_end"].slowdown / c["flagship"].slowdown == pytest.approx(12.0)
    assert c["mid_range"].down_kbps == 4318.0 and c["mid_range"].up_kbps == 3286.0


def test_defaults_fill_in_the_catalogue_mix():
    spec = parse_devices(None)
    assert spec.names == tuple(sorted(default_mix()))
    assert dict(zip(spec.names, spec.weights, strict=True)) == default_mix()
    assert (spec.availability, spec.min_battery_pct) == ("always", 0.0)
    assert parse_devices(spec.to_dict()) == spec


@pytest.mark.parametrize(("spec", "detail"), [
    ({"mix": {"x": 1}}, "devices.mix: unknown class 'x' (known: flagship, low_end, mid_range)"),
    ({"classes": {"slow": {"slowdown": -2.0, "down_kbps": 1, "up_kbps": 1, "train_watts": 1,
                           "radio_joules_per_mb": 1, "battery_wh": 1,
                           "charge_pct_per_hour": 1}}},
     "devices.classes.slow.slowdown: must be > 0, got -2.0"),
    ({"classes": {"flagship": {"ms_per_example": 0}}},
     "devices.classes.flagship.ms_per_example: must be > 0, got 0"),
    ({"classes": {"flagship": {"down_kbps": "fast"}}},
     "devices.classes.flagship.down_kbps: must be a finite number, got 'fast'"),
    ({"classes": {"flagship": {"battery_wh": True}}},
     "devices.classes.flagship.battery_wh: must be a finite number, got True"),
    ({"classes": {"flagship": {"speed": 3}}}, "devices.classes.flagship.speed: unknown field"),
    ({"classes": {"new": {"slowdown": 2}}}, "devices.classes.new.down_kbps: missing"),
    ({"classes": {"new": {"slowdown": 2, "ms_per_example": 1}}},
     "devices.classes.new: give exactly one of slowdown and ms_per_example"),
    ({"classes": {"a b": {}}}, "devices.classes: class name 'a b' must match"),
    ({"classes": []}, "devices.classes: must be an object"),
    ({"mix": {"flagship": 0, "low_end": 0}}, "devices.mix: the weights add up to 0"),
    ({"mix": {}}, "devices.mix: the weights add up to 0"),
    ({"mix": {"flagship": -1, "low_end": 2}}, "devices.mix.flagship: must be a finite number >= 0"),
    ({"mix": ["flagship"]}, "devices.mix: must be an object"),
    ({"mix": {"flagship": 1e308, "low_end": 1e308}}, "devices.mix: the weights add up to more"),
    ({"availability": "weekdays"},
     "devices.availability: must be 'always' or 'diurnal', got 'weekdays'"),
    ({"min_battery_pct": 101}, "devices.min_battery_pct: must be a number in [0, 100], got 101"),
    ({"min_battery_pct": -1}, "devices.min_battery_pct: must be a number in [0, 100], got -1"),
    ({"min_battery_pct": "50"}, "devices.min_battery_pct: must be a number in [0, 100]"),
    ({"speed": 1}, "devices.speed: unknown field (known: mix, classes, availability, "
                   "min_battery_pct)"),
    ("diurnal", "devices: must be an object"),
])
def test_a_bad_spec_is_a_422_naming_the_field(spec, detail):
    with pytest.raises(InvalidInput) as caught:
        parse_devices(spec)
    assert caught.value.status == 422
    assert caught.value.detail.startswith(detail)


def test_an_override_keeps_the_figures_it_does_not_name():
    spec = parse_devices({"classes": {"flagship": {"ms_per_example": 2.5}},
                          "mix": {"flagship": 1}})
    (flagship,) = spec.classes
    base = catalogue()["flagship"]
    assert (flagship.ms_per_example, flagship.slowdown) == (2.5, None)
    assert flagship.down_kbps == base.down_kbps and flagship.battery_wh == base.battery_wh
    assert spec.to_dict()["classes"]["flagship"]["ms_per_example"] == 2.5
    assert parse_devices(spec.to_dict()) == spec


def test_an_added_class_joins_the_mix_and_resolves_its_speed():
    spec = parse_devices({"mix": {"watch": 1, "flagship": 3},
                          "classes": {"watch": {"slowdown": 100, "down_kbps": 500,
                                                "up_kbps": 200, "train_watts": 0.5,
                                                "radio_joules_per_mb": 5, "battery_wh": 1.1,
                                                "charge_pct_per_hour": 80}}})
    assert spec.names == ("flagship", "watch") and spec.weights == (3.0, 1.0)
    assert parse_devices(spec.to_dict()) == spec
    resolved = spec.resolve(0.02)
    assert [c.ms_per_example for c in resolved] == [4.0 * 0.02, 100 * 0.02]
    with pytest.raises(InvalidInput, match=r"^devices.classes.flagship.slowdown: the model"):
        spec.resolve(None)
    given = DeviceClass(name="g", ms_per_example=3.0, down_kbps=1, up_kbps=1, train_watts=1,
                        radio_joules_per_mb=1, battery_wh=1, charge_pct_per_hour=1)
    assert given.resolve(None).ms_per_example == 3.0


def test_the_class_draw_is_seeded_proportional_and_independent_of_key_order():
    a = parse_devices({"mix": {"low_end": 1, "mid_range": 0, "flagship": 3}})
    b = parse_devices({"mix": {"flagship": 3, "mid_range": 0, "low_end": 1}})
    assert a == b
    draw = a.draw(100_000, seed=4)
    assert np.array_equal(draw, b.draw(100_000, seed=4))
    assert not np.array_equal(draw, a.draw(100_000, seed=5))
    counts = np.bincount(draw, minlength=3)  # flagship, low_end, mid_range
    assert counts[2] == 0
    assert counts[0] / counts.sum() == pytest.approx(0.75, abs=0.01)
    with pytest.raises(ValueError):
        draw_classes((0.0, 0.0), 10, seed=0)
