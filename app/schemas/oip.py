"""The Open Inference Protocol (v2) bodies, as documentation: the routes parse and write the
wire format themselves (app.runtime.oip_codec, oip_response), binary tensors included."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from app.schemas import examples
from app.schemas.examples import example

Datatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                   "INT64", "FP16", "FP32", "FP64", "BYTES"]
_X = {"name": "x", "shape": [2, 4], "datatype": "FP32",
      "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}
_Y = {"name": "y", "shape": [2, 3], "datatype": "FP32", "data": [1, 0, 0, 0, 0, 1]}


class RequestParameters(BaseModel):
    """Request parameters this server reads."""

    model_config = example({"binary_data_output": True})

    binary_data_output: bool = Field(False, description="Every output as binary data after "
                                     "the JSON header (the binary tensor data extension)")


class InferInput(BaseModel):
    """One input tensor: its values row-major in `data` (flat or nested)."""

    model_config = example(_X)

    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: Datatype
    data: list[Any]


class OutputParameters(BaseModel):
    """Output parameters this server reads."""

    model_config = example({"binary_data": False})

    binary_data: bool = Field(False, description="This output as binary data")


class RequestedOutput(BaseModel):
    """An output to return; the others are left out."""

    model_config = example({"name": "output"})

    name: str
    parameters: OutputParameters | None = None


class InferRequest(BaseModel):
    """A JSON infer request. With the binary tensor data extension the body is this header,
    whose inputs give `parameters.binary_data_size` instead of `data`, followed by the raw
    tensors; the `Inference-Header-Content-Length` request header says where they start."""

    model_config = example({"id": "1", "inputs": [_X, _Y]}, {"inputs": [_X]})

    id: str | None = None
    parameters: RequestParameters | None = None
    inputs: list[InferInput]
    outputs: list[RequestedOutput] | None = None


class InferOutput(BaseModel):
    """One output tensor: `data` in JSON, or `parameters.binary_data_size` when binary."""

    model_config = example({"name": "loss", "shape": [], "datatype": "FP32", "data": [0.41]})

    name: str
    shape: list[int]
    datatype: str
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    """The outputs; `parameters.step` is the session's step count after a train call."""

    model_config = example({"model_name": "train", "model_version": "1", "id": "1",
                            "parameters": {"step": 17},
                            "outputs": [{"name": "loss", "shape": [], "datatype": "FP32",
                                         "data": [0.41]}]})

    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[InferOutput]


class TensorMetadata(BaseModel):
    """A signature's tensor; -1 marks a dimension the model leaves open."""

    model_config = example({"name": "x", "datatype": "FP32", "shape": [-1, 28, 28]})

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """A signature as a protocol model."""

    model_config = example({"name": "infer", "versions": ["1"], "platform": "tflite",
                            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 28, 28]}],
                            "outputs": [{"name": "output", "datatype": "FP32",
                                         "shape": [-1, 10]}]})

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    """The per-session protocol server."""

    model_config = example({"name": "fleetlite", "version": "0.1.0",
                            "extensions": ["binary_tensor_data"],
                            "session_id": examples.SESSION_ID, "model_id": examples.MODEL_ID})

    name: str
    version: str
    extensions: list[str]
    session_id: str
    model_id: str


class Live(BaseModel):
    """The session exists."""

    model_config = example({"live": True})

    live: bool


class Ready(BaseModel):
    """The session's interpreter is loaded (with `name`: and serves that model)."""

    model_config = example({"ready": True}, {"name": "infer", "ready": True})

    name: str | None = None
    ready: bool
