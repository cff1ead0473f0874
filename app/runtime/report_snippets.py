"""Short Kotlin and Swift snippets of an app bundle, written from the model's signatures:
load the model, restore the bundle's checkpoint through the restore signature (it reads a
file path), and call infer."""

from __future__ import annotations

from app.runtime.report_measure import shipping
from app.runtime.signatures import Signatures, TensorSpec

_KT = {"float32": "Float", "float64": "Double", "int32": "Int", "int64": "Long",
       "int8": "Byte", "uint8": "Byte", "int16": "Short", "bool": "Boolean"}


def _kt_leaf(dtype: str) -> str:
    return f"{_KT.get(dtype, 'Float')}Array"


def kotlin_type(spec: TensorSpec) -> str:
    """The Kotlin array type of a tensor (a scalar is a one-element array)."""
    rank = max(len(spec.shape), 1)
    return "Array<" * (rank - 1) + _kt_leaf(spec.dtype) + ">" * (rank - 1)


def kotlin_alloc(spec: TensorSpec, batch: str) -> str:
    """A Kotlin expression allocating a tensor, with `batch` for open dimensions."""
    dims = [batch if d < 0 else str(d) for d in spec.shape] or ["1"]
    expr = f"{_kt_leaf(spec.dtype)}({dims[-1]})"
    for d in reversed(dims[:-1]):
        expr = f"Array({d}) {{ {expr} }}"
    return expr


def _path_input(sigs: Signatures, key: str) -> str:
    return next(iter(sigs[key].inputs))


def kotlin(sigs: Signatures) -> str:
    """Infer.kt: restore the checkpoint, then infer, with TensorFlow Lite's Interpreter."""
    doc = shipping()["android"]
    infer = sigs["infer"]
    first = next(iter(infer.inputs.values()))
    params = ", ".join(f"{n}: {kotlin_type(t)}" for n, t in infer.inputs.items())
    inputs = ", ".join(f'"{n}" to {n}' for n in infer.inputs)
    batch = f"{first.name}.size" if first.shape and first.shape[0] < 0 else "1"
    outs = "\n".join(f'    outputs["{n}"] = {kotlin_alloc(t, "n")}'
                     for n, t in infer.outputs.items())
    return f"""// Restore this bundle's checkpoint, then run infer. Put model.tflite and
// checkpoint.ckpt in the app's assets; build.gradle.kts needs:
//   {doc["builtins"]}
//   {doc["select_tf_ops"]}
import android.content.Context
import org.tensorflow.lite.Interpreter
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

fun loadModel(context: Context): Interpreter {{
    val bytes = context.assets.open("model.tflite").use {{ it.readBytes() }}
    val model = ByteBuffer.allocateDirect(bytes.size).order(ByteOrder.nativeOrder())
    model.put(bytes)
    model.rewind()
    val interpreter = Interpreter(model)
    // restore reads a file: copy the checkpoint out of the assets first.
    val ckpt = File(context.filesDir, "checkpoint.ckpt")
    context.assets.open("checkpoint.ckpt").use {{ input ->
        ckpt.outputStream().use {{ input.copyTo(it) }}
    }}
    interpreter.runSignature(mapOf("{_path_input(sigs, "restore")}" to ckpt.absolutePath),
                             HashMap<String, Any>(), "restore")
    return interpreter
}}

fun infer(interpreter: Interpreter, {params}): Map<String, Any> {{
    val n = {batch}
    val outputs = HashMap<String, Any>()
{outs}
    interpreter.runSignature(mapOf({inputs}), outputs, "infer")
    return outputs
}}
"""


def swift(sigs: Signatures) -> str:
    """Infer.swift: restore the checkpoint, then infer, with TensorFlowLiteSwift."""
    doc = shipping()["ios"]
    infer = sigs["infer"]
    shapes = "\n".join(f"///   {n}: {t.dtype} {list(t.shape)}" for n, t in infer.inputs.items())
    params = ", ".join(f"{n}: Data" for n in infer.inputs)
    resize = "\n".join(
        f'    try runner.resizeInput(named: "{n}", toShape: Tensor.Shape(['
        + ", ".join("batch" if d < 0 else str(d) for d in t.shape) + "]))"
        for n, t in infer.inputs.items())
    inputs = ", ".join(f'"{n}": {n}' for n in infer.inputs)
    outs = ", ".join(f'"{n}": try runner.output(named: "{n}").data' for n in infer.outputs)
    return f"""// Restore this bundle's checkpoint, then run infer. Add model.tflite and
// checkpoint.ckpt to the app's bundle; the Podfile needs:
//   {doc["builtins"]}
//   {doc["select_tf_ops"]}
// and Other Linker Flags: {doc["linker_flag"]}
import Foundation
import TensorFlowLite

/// A TFLite string tensor holding one string: count, two offsets, then the bytes.
func tfliteString(_ s: String) -> Data {{
    let bytes = Array(s.utf8)
    var data = Data()
    for v in [Int32(1), Int32(12), Int32(12 + bytes.count)] {{
        withUnsafeBytes(of: v.littleEndian) {{ data.append(contentsOf: $0) }}
    }}
    data.append(contentsOf: bytes)
    return data
}}

func loadModel() throws -> Interpreter {{
    let model = Bundle.main.path(forResource: "model", ofType: "tflite")!
    let ckpt = Bundle.main.path(forResource: "checkpoint", ofType: "ckpt")!
    let interpreter = try Interpreter(modelPath: model)
    let restore = try interpreter.signatureRunner(with: "restore")
    try restore.invoke(with: ["{_path_input(sigs, "restore")}": tfliteString(ckpt)])
    return interpreter
}}

/// Inputs as row-major little-endian bytes, `batch` examples each:
{shapes}
func infer(_ interpreter: Interpreter, batch: Int, {params}) throws -> [String: Data] {{
    let runner = try interpreter.signatureRunner(with: "infer")
{resize}
    try runner.allocateTensors()
    try runner.invoke(with: [{inputs}])
    return [{outs}]
}}
"""
