"""The operators of a .tflite model per signature, read from its flatbuffer.

The reader is the schema module TensorFlow's wheel ships (tensorflow/lite/python/
schema_py_generated.py), loaded by file path so that reading a model does not import
TensorFlow (2 s, 500 MB). Nothing here runs the model: a model that would crash an
interpreter is read like any other. A signature's operators are those of its subgraph and
of every subgraph it calls (CALL_ONCE's initializer, WHILE's and IF's branches).
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from app.errors import InvalidModel

FLEX_PREFIX = "Flex"
# Select TF ops a trainable model needs to train at all: the checkpoint ops of save and
# restore, and the gradient kernels the converter has no built-in for (ReluGrad in TF 2.19;
# the fused softmax cross-entropy, whose kernel also gives the loss's gradient).
_TRAINING_FLEX = re.compile(
    r"^(Save|SaveV2|Restore|RestoreV2|MergeV2Checkpoints|ShardedFilename|StringJoin|"
    r"BroadcastGradientArgs|\w*CrossEntropyWithLogits|ResourceApply\w+|Apply\w+|"
    r"\w+Grad(V\d+)?|\w+GradGrad|\w+Backprop\w*|"
    r"\w+GradWithArgmax)$")


@dataclass(frozen=True)
class SignatureOps:
    """One signature's operators: TFLite built-ins, Select TF (Flex) ops and other custom
    ops, each with its count, and the subgraphs they were read from."""

    subgraphs: tuple[int, ...]
    builtin: dict[str, int]
    flex: dict[str, int]
    custom: dict[str, int]


@dataclass(frozen=True)
class ModelOps:
    """Every signature's operators, and the frozen weights the infer signature reads."""

    signatures: dict[str, SignatureOps]
    frozen_parameters: int  # elements of floating-point constant tensors infer reads

    @property
    def flex_ops(self) -> list[str]:
        """Every Select TF op the model needs, by name (without the Flex prefix)."""
        return sorted({n for s in self.signatures.values() for n in s.flex})

    @property
    def custom_ops(self) -> list[str]:
        """Custom ops that are not Select TF ops: an app must register their kernels."""
        return sorted({n for s in self.signatures.values() for n in s.custom})

    @property
    def flex_beyond_training(self) -> list[str]:
        """Select TF ops beyond what on-device training needs (save, restore, gradients)."""
        return [n for n in self.flex_ops if not needed_for_training(n)]


def needed_for_training(op: str) -> bool:
    """Whether a Select TF op is one that training itself needs (checkpoints, gradients)."""
    return _TRAINING_FLEX.match(op) is not None


@cache
def schema() -> ModuleType:
    """TensorFlow's generated flatbuffer schema module, loaded without importing TensorFlow."""
    found = importlib.util.find_spec("tensorflow")  # finds the package without running it
    if found is None or not found.submodule_search_locations:
        raise RuntimeError("TensorFlow is not installed: its flatbuffer schema is needed")
    path = Path(next(iter(found.submodule_search_locations))) / "lite/python/schema_py_generated.py"
    spec = importlib.util.spec_from_file_location("fleetlite_tflite_schema", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def _builtin_names() -> dict[int, str]:
    ops = schema().BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


def _float_types() -> frozenset[int]:
    t = schema().TensorType
    return frozenset({t.FLOAT32, t.FLOAT16, t.FLOAT64, t.BFLOAT16})


def read_ops(model: bytes) -> ModelOps:
    """The operators per signature and the frozen parameters, read from the flatbuffer;
    InvalidModel (422) if the bytes are not a TFLite model."""
    fb = schema()
    try:
        if len(model) < 8 or not fb.Model.ModelBufferHasIdentifier(model, 0):
            raise InvalidModel("not a TFLite flatbuffer (no TFL3 identifier)")
        root = fb.Model.GetRootAs(model, 0)
        codes = [_op_name(root.OperatorCodes(i)) for i in range(root.OperatorCodesLength())]
        sigs = {}
        for i in range(root.SignatureDefsLength()):
            sd = root.SignatureDefs(i)
            reached = _reachable(fb, root, sd.SubgraphIndex())
            sigs[sd.SignatureKey().decode()] = _count(root, codes, reached)
        infer = sigs.get("infer")
        frozen = _frozen(root, infer.subgraphs[:1] if infer else (0,))  # else: the primary
    except InvalidModel:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer raises many types
        raise InvalidModel(f"the model's flatbuffer cannot be read: {type(exc).__name__}: "
                           f"{exc}") from None
    return ModelOps(dict(sorted(sigs.items())), frozen)


def _op_name(code: Any) -> str:
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # the schema's rule
    if builtin == schema().BuiltinOperator.CUSTOM:
        return "custom:" + (code.CustomCode() or b"").decode("utf-8", "replace")
    return _builtin_names().get(builtin, f"BUILTIN_{builtin}")


def _called(fb: ModuleType, op: Any) -> list[int]:
    """Subgraphs an operator runs: CALL_ONCE's initializer, WHILE's and IF's branches."""
    kind, table = op.BuiltinOptionsType(), op.BuiltinOptions()
    if table is None:
        return []
    names = fb.BuiltinOptions
    if kind == names.CallOnceOptions:
        opts = fb.CallOnceOptions()
        opts.Init(table.Bytes, table.Pos)
        return [opts.InitSubgraphIndex()]
    if kind == names.WhileOptions:
        w = fb.WhileOptions()
        w.Init(table.Bytes, table.Pos)
        return [w.CondSubgraphIndex(), w.BodySubgraphIndex()]
    if kind == names.IfOptions:
        f = fb.IfOptions()
        f.Init(table.Bytes, table.Pos)
        return [f.ThenSubgraphIndex(), f.ElseSubgraphIndex()]
    return []


def _reachable(fb: ModuleType, root: Any, start: int) -> tuple[int, ...]:
    """The signature's subgraph first, then those it calls, each once."""
    seen, todo = [start], [start]
    while todo:
        graph = root.Subgraphs(todo.pop())
        for o in range(graph.OperatorsLength()):
            for sub in _called(fb, graph.Operators(o)):
                if 0 <= sub < root.SubgraphsLength() and sub not in seen:
                    seen.append(sub)
                    todo.append(sub)
    return tuple(seen)


def _count(root: Any, codes: list[str], subgraphs: tuple[int, ...]) -> SignatureOps:
    counts: Counter[str] = Counter()
    for g in subgraphs:
        graph = root.Subgraphs(g)
        for o in range(graph.OperatorsLength()):
            counts[codes[graph.Operators(o).OpcodeIndex()]] += 1
    builtin, flex, custom = {}, {}, {}
    for name, n in sorted(counts.items()):
        if not name.startswith("custom:"):
            builtin[name] = n
        elif name.startswith("custom:" + FLEX_PREFIX):
            flex[name.removeprefix("custom:" + FLEX_PREFIX)] = n
        else:
            custom[name.removeprefix("custom:")] = n
    return SignatureOps(subgraphs, builtin, flex, custom)


def _frozen(root: Any, subgraphs: tuple[int, ...]) -> int:
    """Elements of the floating-point constant tensors (weights that no variable holds, so
    that training cannot change them), each buffer counted once. All-zero constants are
    left out: the converter adds them as CONV_2D's bias when the model adds its own."""
    floats, seen, total = _float_types(), set(), 0
    for g in subgraphs:
        graph = root.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            buf = tensor.Buffer()
            if buf == 0 or buf in seen or tensor.Type() not in floats:
                continue
            data = root.Buffers(buf)
            if data is None or (data.DataLength() == 0 and data.Size() == 0):
                continue  # buffer 0 and empty buffers: a tensor computed at run time
            if data.DataLength() and not data.DataAsNumpy().any():
                continue
            seen.add(buf)
            total += math.prod(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else 1
    return total
