"""Operators read from the flatbuffer, cross-checked against TensorFlow's own Analyzer and the
interpreter's op details; frozen parameters; Select TF ops beyond what training needs."""

from __future__ import annotations

import contextlib
import io
import re
from collections import Counter
from typing import Any

import numpy as np
import pytest

import models
from app.errors import InvalidModel
from app.runtime.interpreter import load_interpreter
from app.runtime.tflite_ops import needed_for_training, read_ops

_SUBGRAPH = re.compile(r"^Subgraph#(\d+)")
_OP = re.compile(r"^\s+Op#\d+ (\w+)\(")


def analyzer_counts(model: bytes) -> dict[int, Counter[str]]:
    """Each subgraph's operators as tf.lite.experimental.Analyzer prints them."""
    import tensorflow as tf

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tf.lite.experimental.Analyzer.analyze(model_content=model)
    counts: dict[int, Counter[str]] = {}
    current = None
    for line in out.getvalue().splitlines():
        if m := _SUBGRAPH.match(line):
            current = counts.setdefault(int(m.group(1)), Counter())
        elif (m := _OP.match(line)) and current is not None:
            current[m.group(1)] += 1
    return counts


def as_printed(sig: Any) -> Counter[str]:
    return Counter({**sig.builtin, **{f"Flex{k}": v for k, v in sig.flex.items()}})


@pytest.mark.parametrize("name", models.NAMES)
def test_read_ops_of_project_models_match_the_analyzer(name: str) -> None:
    model = models.build_cached(name)
    ops = read_ops(model)
    printed = analyzer_counts(model)
    assert set(ops.signatures) == {"train", "infer", "save", "restore"}
    for key, sig in ops.signatures.items():
        expected: Counter[str] = Counter()
        for g in sig.subgraphs:
            expected.update(printed[g])
        assert as_printed(sig) == expected, key
        assert sig.custom == {}
    # The checkpoint signatures need TensorFlow's Save and Restore; training needs nothing
    # beyond its gradients: the project's models are trainable with the stock Flex runtime.
    assert ops.signatures["save"].flex == {"Save": 1}
    assert set(ops.signatures["restore"].flex) == {"Restore"}
    assert ops.flex_beyond_training == []
    assert ops.frozen_parameters == 0  # every weight of these models is a variable


def test_read_ops_infer_subgraph_matches_the_interpreters_op_details() -> None:
    mlp_bytes = models.build_cached("mlp")
    interpreter = load_interpreter(mlp_bytes)
    details = Counter(d["op_name"] for d in interpreter._get_ops_details())  # the primary subgraph
    infer = read_ops(mlp_bytes).signatures["infer"]
    assert infer.subgraphs[0] == 0
    own: Counter[str] = analyzer_counts(mlp_bytes)[0]
    assert details == own
    assert sum(infer.builtin.values()) == sum(own.values()) + sum(
        analyzer_counts(mlp_bytes)[g].total() for g in infer.subgraphs[1:])
    assert infer.builtin["BATCH_MATMUL"] == 2 and infer.flex == {}


def _frozen_model_with_extra_flex() -> tuple[bytes, int]:
    """A module whose dense layer is a constant (frozen) and whose infer runs a Select TF op
    that training does not need (Erf: a TF kernel with no TFLite built-in)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(4, 3)).astype(np.float32)
    bias = rng.normal(size=(3,)).astype(np.float32)

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def infer(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            y = tf.matmul(x, tf.constant(kernel)) + tf.constant(bias)
            return {"output": tf.raw_ops.Erf(x=y)}

    m = M()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [m.infer.get_concrete_function()], m)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    return converter.convert(), kernel.size + bias.size


def test_read_ops_counts_frozen_constants_and_names_flex_beyond_training() -> None:
    model, frozen = _frozen_model_with_extra_flex()
    ops = read_ops(model)
    assert ops.frozen_parameters == frozen
    assert ops.flex_ops == ["Erf"]
    assert ops.flex_beyond_training == ["Erf"]
    printed = analyzer_counts(model)
    (sig,) = ops.signatures.values()  # one function: the converter names it serving_default
    assert as_printed(sig) == sum((printed[g] for g in sig.subgraphs), Counter())


@pytest.mark.parametrize("op", ["Save", "Restore", "ReluGrad", "Conv2DBackpropFilter",
                                "ResourceApplyAdam", "TanhGrad",
                                "SparseSoftmaxCrossEntropyWithLogits"])
def test_needed_for_training_knows_checkpoint_and_gradient_ops(op: str) -> None:
    assert needed_for_training(op)


@pytest.mark.parametrize("op", ["Erf", "Cumprod", "StringLength", "HashTableV2", "Gradient"])
def test_needed_for_training_refuses_other_ops(op: str) -> None:
    assert not needed_for_training(op)


@pytest.mark.parametrize("data", [b"", b"not a model at all", b"\0" * 64])
def test_read_ops_of_bytes_that_are_no_model_is_invalid_model(data: bytes) -> None:
    with pytest.raises(InvalidModel):
        read_ops(data)


def test_read_ops_of_a_truncated_model_is_invalid_model() -> None:
    with pytest.raises(InvalidModel):
        read_ops(models.build_cached("mlp")[:4096])
