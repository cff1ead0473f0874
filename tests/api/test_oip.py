"""Open Inference Protocol v2 per session, driven by the stock tritonclient.http client."""

from __future__ import annotations

import concurrent.futures
import struct
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
import tritonclient.http._client as triton_internals
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from app.runtime import oip_codec, oip_response
from app.runtime.signatures import SignatureSpec, TensorSpec
from tests.helpers import LiveServer, assert_problem, new_session, upload

RNG = np.random.default_rng(7)
X = RNG.random((32, 28, 28), dtype=np.float32)
Y = np.eye(10, dtype=np.float32)[RNG.integers(0, 10, 32)]
Triton = Callable[[str], httpclient.InferenceServerClient]
HLEN = "Inference-Header-Content-Length"


@pytest.fixture(scope="module")
def triton(server: LiveServer) -> Iterator[Triton]:
    """Stock tritonclient clients rooted at a session's OIP prefix."""
    made: list[httpclient.InferenceServerClient] = []

    def make(sid: str) -> httpclient.InferenceServerClient:
        host = server.url.removeprefix("http://")
        made.append(httpclient.InferenceServerClient(url=f"{host}/v1/sessions/{sid}"))
        return made[-1]

    yield make
    for c in made:
        c.close()


def tensor(name: str, arr: np.ndarray, binary: bool = True) -> httpclient.InferInput:
    t = httpclient.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
    return t.set_data_from_numpy(arr, binary_data=binary)


def steps(client: httpx.Client, sid: str) -> int:
    return client.get(f"/v1/sessions/{sid}").json()["steps"]  # type: ignore[no-any-return]


def json_api_infer(client: httpx.Client, sid: str, x: np.ndarray = X) -> np.ndarray:
    r = client.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": x.tolist()}})
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["outputs"]["output"], dtype=np.float32)


def oip_infer(c: httpclient.InferenceServerClient, x: np.ndarray = X) -> np.ndarray:
    return c.infer("infer", [tensor("x", x)]).as_numpy("output")  # type: ignore[no-any-return]


def test_tritonclient_trains_step_by_step(client: httpx.Client, mlp_id: str,
                                          triton: Triton) -> None:
    sid = new_session(client, "olga", mlp_id)
    c = triton(sid)
    losses = []
    for i in range(30):
        result = c.infer("train", [tensor("x", X), tensor("y", Y)])
        assert result.get_output("loss")["parameters"]["binary_data_size"] == 4  # binary out
        assert result.get_response()["parameters"]["step"] == i + 1
        loss = result.as_numpy("loss")
        assert loss.shape == () and loss.dtype == np.float32
        losses.append(float(loss))
    assert losses[-1] < losses[0] * 0.5
    session = client.get(f"/v1/sessions/{sid}").json()
    assert session["steps"] == 30
    assert session["last_loss"] == pytest.approx(losses[-1])
    json_step = client.post(f"/v1/sessions/{sid}/train",
                            json={"inputs": {"x": X[:4].tolist(), "y": Y[:4].tolist()}})
    assert json_step.json()["step"] == 31  # one counter for both APIs


def test_concurrent_oip_train_calls_apply_once_each(client: httpx.Client, mlp_id: str) -> None:
    sid = new_session(client, "olga", mlp_id)
    body = orjson.dumps({"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [4, 28, 28], "data": X[:4].ravel().tolist()},
        {"name": "y", "datatype": "FP32", "shape": [4, 10], "data": Y[:4].ravel().tolist()}]})

    def one(_: int) -> int:
        r = client.post(f"/v1/sessions/{sid}/v2/models/train/infer", content=body)
        assert r.status_code == 200, r.text
        return r.json()["parameters"]["step"]  # type: ignore[no-any-return]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, range(24)))
    assert sorted(got) == list(range(1, 25))
    assert steps(client, sid) == 24


def test_infer_binary_equals_json_api_and_json_oip(client: httpx.Client, mlp_id: str,
                                                   triton: Triton) -> None:
    sid = new_session(client, "olga", mlp_id)
    c = triton(sid)
    c.infer("train", [tensor("x", X), tensor("y", Y)])
    binary = oip_infer(c)
    assert binary.shape == (32, 10) and binary.dtype == np.float32
    assert np.array_equal(binary, json_api_infer(client, sid))
    as_json = c.infer("infer", [tensor("x", X, binary=False)],
                      outputs=[httpclient.InferRequestedOutput("output", binary_data=False)])
    assert "data" in as_json.get_output("output") and as_json.get_output("logits") is None
    assert np.array_equal(as_json.as_numpy("output"), binary)
    versioned = c.infer("infer", [tensor("x", X)], model_version="1")
    assert np.array_equal(versioned.as_numpy("output"), binary)
    gzipped = c.infer("infer", [tensor("x", X)], request_compression_algorithm="gzip")
    assert np.array_equal(gzipped.as_numpy("output"), binary)
    assert steps(client, sid) == 1


def test_raw_json_request_and_response_shape(client: httpx.Client, mlp_id: str) -> None:
    sid = new_session(client, "olga", mlp_id)
    url = f"/v1/sessions/{sid}/v2/models/infer/infer"
    r = client.post(url, json={"id": "req-1", "inputs": [
        {"name": "x", "datatype": "FP32", "shape": [2, 28, 28], "data": X[:2].ravel().tolist()}]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json" and HLEN not in r.headers
    body = r.json()
    assert body["model_name"] == "infer" and body["model_version"] == "1"
    assert body["id"] == "req-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert set(outputs) == {"output", "logits"}
    for o in outputs.values():
        assert o["datatype"] == "FP32" and o["shape"] == [2, 10] and len(o["data"]) == 20
    expected = json_api_infer(client, sid, X[:2])
    assert np.array_equal(np.asarray(outputs["output"]["data"], np.float32).reshape(2, 10),
                          expected)
    nested = client.post(url, json={"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [2, 28, 28], "data": X[:2].tolist()}],
        "outputs": [{"name": "output"}]})
    assert [o["name"] for o in nested.json()["outputs"]] == ["output"]
    # Binary outputs on request, with the JSON header length in the response.
    r = client.post(url, json={"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [2, 28, 28], "data": X[:2].ravel().tolist()}],
        "outputs": [{"name": "output", "parameters": {"binary_data": True}}]})
    assert r.headers["content-type"] == "application/octet-stream"
    split = int(r.headers[HLEN])
    header = orjson.loads(r.content[:split])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 80}
    assert np.array_equal(np.frombuffer(r.content[split:], "<f4").reshape(2, 10), expected)


def test_metadata_and_health(client: httpx.Client, mlp_id: str, triton: Triton) -> None:
    sid = new_session(client, "olga", mlp_id)
    c = triton(sid)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("infer") and c.is_model_ready("train")
    assert c.is_model_ready("infer", model_version="1")
    assert not c.is_model_ready("infer", model_version="2")
    assert not c.is_model_ready("save") and not c.is_model_ready("nope")
    server = c.get_server_metadata()
    assert server["name"] == "fleetlite" and server["version"]
    assert "binary_tensor_data" in server["extensions"]
    meta = c.get_model_metadata("train")
    assert meta["name"] == "train" and meta["platform"] == "tflite" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 28, 28]},
                              {"name": "y", "datatype": "FP32", "shape": [-1, 10]}]
    assert meta["outputs"] == [{"name": "loss", "datatype": "FP32", "shape": []}]
    assert c.get_model_metadata("infer", model_version="1")["outputs"][1]["name"] == "output"
    for name in ("save", "restore", "nope"):
        with pytest.raises(InferenceServerException, match=f"unknown model '{name}'"):
            c.get_model_metadata(name)
    gone = triton("ses_missing")
    assert not gone.is_server_live() and not gone.is_server_ready()
    with pytest.raises(InferenceServerException, match="ses_missing"):
        gone.get_server_metadata()


def _bad_shape() -> list[httpclient.InferInput]:
    return [tensor("x", X[:4, :, :27]), tensor("y", Y[:4])]


def _bad_dtype() -> list[httpclient.InferInput]:
    return [tensor("x", X[:4].astype(np.float64)), tensor("y", Y[:4])]


def _int_as_float() -> list[httpclient.InferInput]:
    return [tensor("x", X[:4], binary=False), tensor("y", Y[:4].astype(np.int32), binary=False)]


def _truncated() -> list[httpclient.InferInput]:
    x = tensor("x", X[:4])
    x._raw_data = x._raw_data[:-100]  # binary_data_size still claims the whole tensor
    return [x, tensor("y", Y[:4])]


@pytest.mark.parametrize(("model", "make", "status", "needles"), [
    ("train", _bad_shape, "422", ("'x'", "[-1, 28, 28]", "received shape [4, 28, 27]")),
    ("train", _bad_dtype, "422", ("'x'", "FP32", "received datatype FP64")),
    ("train", _int_as_float, "422", ("'y'", "FP32", "INT32")),
    ("train", lambda: [tensor("x", X[:4])], "422", ("missing input(s) 'y'",)),
    ("train", lambda: [tensor("x", X[:4]), tensor("y", Y[:4]), tensor("z", Y[:4])], "422",
     ("unknown input(s) 'z'",)),
    ("train", _truncated, "400", ("'x' 12544", "12604 bytes", "truncated")),
    ("save", lambda: [tensor("checkpoint_path", np.array([b"/tmp/x"], dtype=object))], "404",
     ("unknown model 'save'",)),
    ("nope", lambda: [tensor("x", X[:4])], "404", ("unknown model 'nope'", "infer, train")),
])
def test_bad_requests_raise_with_the_servers_detail_and_change_nothing(
    client: httpx.Client, mlp_id: str, triton: Triton, model: str,
    make: Callable[[], list[httpclient.InferInput]], status: str, needles: tuple[str, ...],
) -> None:
    sid = new_session(client, "mallory", mlp_id)
    c = triton(sid)
    before = oip_infer(c)
    with pytest.raises(InferenceServerException) as info:
        c.infer(model, make())
    assert info.value.status() == status
    for needle in needles:
        assert needle in info.value.message(), (needle, info.value.message())
    assert steps(client, sid) == 0
    assert np.array_equal(oip_infer(c), before)


def test_bad_header_length_through_tritonclient(client: httpx.Client, mlp_id: str,
                                                triton: Triton,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    sid = new_session(client, "mallory", mlp_id)
    c = triton(sid)
    real = triton_internals._get_inference_request

    def off_by_some(**kwargs):  # type: ignore[no-untyped-def]
        body, json_size = real(**kwargs)
        return body, json_size - 5

    monkeypatch.setattr(triton_internals, "_get_inference_request", off_by_some)
    with pytest.raises(InferenceServerException, match="Inference-Header-Content-Length") as info:
        c.infer("train", [tensor("x", X[:4]), tensor("y", Y[:4])])
    assert info.value.status() == "400"
    monkeypatch.undo()
    assert steps(client, sid) == 0


def _binary_body(x: np.ndarray, y: np.ndarray, x_size: int | None = None) -> tuple[bytes, int]:
    header = orjson.dumps({"inputs": [
        {"name": "x", "datatype": "FP32", "shape": list(x.shape),
         "parameters": {"binary_data_size": x.nbytes if x_size is None else x_size}},
        {"name": "y", "datatype": "FP32", "shape": list(y.shape),
         "parameters": {"binary_data_size": y.nbytes}}]})
    return header + x.tobytes() + y.tobytes(), len(header)


_FULL, _SPLIT = _binary_body(X[:4], Y[:4])


def _with_y(x: dict) -> bytes:  # type: ignore[type-arg]
    y = {"name": "y", "datatype": "FP32", "shape": [1, 10], "data": Y[0].tolist()}
    return orjson.dumps({"inputs": [x, y]})


@pytest.mark.parametrize(("body", "header_length", "needles"), [
    (_FULL[:-7], str(_SPLIT), ("12697 bytes", "'x' 12544, 'y' 160", "truncated")),
    (_FULL + b"extra", str(_SPLIT), ("binary section",)),
    (_binary_body(X[:4], Y[:4], X[:4].nbytes - 4)[0][:-4], str(_SPLIT),
     ("needs 12544 bytes", "12540")),
    (_FULL, "abc", ("Inference-Header-Content-Length", "not an integer")),
    (_FULL, "0", ("Inference-Header-Content-Length",)),
    (_FULL, str(len(_FULL) + 1), ("Inference-Header-Content-Length",)),
    (_FULL, str(_SPLIT - 3), ("not valid JSON", "Inference-Header-Content-Length")),
    (_FULL, None, ("not valid JSON",)),
    (b'{"inputs": {"x": 1}}', None, ('"inputs" list',)),
    (_with_y({"name": "x", "datatype": "FP32", "shape": [1, 28, 28]}), None,
     ("'x'", "neither")),
    (_with_y({"name": "x", "datatype": "FP32", "shape": [1, -28, 28], "data": []}), None,
     ("'x'", "non-negative")),
    (b'{"inputs": [], "parameters": {"shared_memory_region": "r"}}', None, ("not supported",)),
])
def test_raw_malformed_bodies_answer_400(client: httpx.Client, mlp_id: str, body: bytes,
                                         header_length: str | None,
                                         needles: tuple[str, ...]) -> None:
    sid = new_session(client, "mallory", mlp_id)
    headers = {"content-type": "application/octet-stream"}
    if header_length is not None:
        headers[HLEN] = header_length
    r = client.post(f"/v1/sessions/{sid}/v2/models/train/infer", content=body, headers=headers)
    assert_problem(r, 400, *needles)
    assert steps(client, sid) == 0
    ok = client.post(f"/v1/sessions/{sid}/v2/models/train/infer", content=_FULL,
                     headers={HLEN: str(_SPLIT)})
    assert ok.status_code == 200, ok.text
    assert steps(client, sid) == 1


def test_unknown_output_and_version_are_refused(client: httpx.Client, mlp_id: str,
                                                triton: Triton) -> None:
    sid = new_session(client, "mallory", mlp_id)
    c = triton(sid)
    with pytest.raises(InferenceServerException, match="no output 'prob'"):
        c.infer("train", [tensor("x", X[:4]), tensor("y", Y[:4])],
                outputs=[httpclient.InferRequestedOutput("prob")])
    with pytest.raises(InferenceServerException, match="unknown version '2'"):
        c.infer("train", [tensor("x", X[:4]), tensor("y", Y[:4])], model_version="2")
    assert steps(client, sid) == 0


def test_head_model_trains_through_tritonclient(client: httpx.Client, head_bytes: bytes,
                                                triton: Triton) -> None:
    sid = new_session(client, "carol", upload(client, head_bytes, "head"))
    c = triton(sid)
    meta = c.get_model_metadata("train")
    assert meta["inputs"] == [{"name": "bottleneck", "datatype": "FP32", "shape": [-1, 64]},
                              {"name": "label", "datatype": "INT32", "shape": [-1]}]
    feats = RNG.random((16, 64), dtype=np.float32)
    labels = (feats[:, 0] * 4).astype(np.int32).clip(0, 3)
    losses = [float(c.infer("train", [tensor("bottleneck", feats), tensor("label", labels)])
                    .as_numpy("loss")) for _ in range(30)]
    assert losses[-1] < losses[0]
    assert steps(client, sid) == 30
    probs = c.infer("infer", [tensor("bottleneck", feats)]).as_numpy("probabilities")
    assert probs.shape == (16, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(InferenceServerException, match="'label'.*INT32.*INT64"):
        c.infer("train", [tensor("bottleneck", feats), tensor("label", labels.astype(np.int64))])
    assert steps(client, sid) == 30


STRINGS = SignatureSpec({"s": TensorSpec("s", (-1,), "string")},
                        {"t": TensorSpec("t", (-1,), "string")})


def test_codec_bytes_tensors_round_trip_with_tritonclient() -> None:
    words = np.array([b"", b"hello", "ünï".encode()], dtype=object)
    for binary in (True, False):
        t = tensor("s", words, binary=binary)
        body, json_size = triton_internals._get_inference_request(
            inputs=[t], request_id="", outputs=None, sequence_id=0, sequence_start=False,
            sequence_end=False, priority=0, timeout=None, custom_parameters=None)
        req = oip_codec.parse_request(body, None if json_size is None else str(json_size),
                                      STRINGS, "echo")
        assert req.binary_default and list(req.inputs["s"]) == list(words)
        payload, split = oip_response.build_response(
            "echo", "1", req.id, req.outputs, req.binary_default, {"t": req.inputs["s"]})
        result = httpclient.InferResult.from_response_body(payload, header_length=split)
        assert list(result.as_numpy("t")) == list(words)
    cut = struct.pack("<I", 9) + b"abc"
    header = orjson.dumps({"inputs": [{"name": "s", "datatype": "BYTES", "shape": [1],
                                       "parameters": {"binary_data_size": len(cut)}}]})
    with pytest.raises(oip_codec.BadRequest, match="runs past"):
        oip_codec.parse_request(header + cut, str(len(header)), STRINGS, "echo")


def test_truncated_gzip_train_is_422_and_trains_nothing(client: httpx.Client,
                                                       mlp_id: str) -> None:
    import gzip

    sid = new_session(client, "gzip-cut", mlp_id)
    body, split = _binary_body(X, Y)
    packed = gzip.compress(body)
    headers = {HLEN: str(split), "content-encoding": "gzip"}
    url = f"/v1/sessions/{sid}/v2/models/train/infer"
    assert client.post(url, content=packed, headers=headers).status_code == 200
    for cut in (len(packed) // 2, len(packed) - 4):  # live: the fast lane answers these
        r = client.post(url, content=packed[:cut], headers=headers)
        assert_problem(r, 422, "truncated")
    assert steps(client, sid) == 1


def test_bool_among_numbers_is_422(client: httpx.Client, mlp_id: str) -> None:
    sid = new_session(client, "bools", mlp_id)
    x = X[:1].tolist()
    x[0][0][0] = True  # orjson writes a JSON `true` among the floats
    y = [[1, 0, 0, 0, 0, 0, 0, 0, 0, False]]
    url = f"/v1/sessions/{sid}/train"
    r = client.post(url, json={"inputs": {"x": x, "y": Y[:1].tolist()}})
    assert_problem(r, 422, "'x'", "bool")
    assert_problem(client.post(url, json={"inputs": {"x": X[:1].tolist(), "y": y}}),
                   422, "'y'", "bool")
    r = client.post(f"/v1/sessions/{sid}/v2/models/infer/infer", json={"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [1, 28, 28],
         "data": [True] + X[:1].ravel().tolist()[1:]}]})
    assert_problem(r, 422, "'x'", "bool")
    assert steps(client, sid) == 0


@pytest.mark.parametrize("k", [4, 8])
def test_several_steps_per_call_equal_as_many_single_calls(
        client: httpx.Client, mlp_id: str, triton: Triton, k: int) -> None:
    one, many = new_session(client, f"k1-{k}", mlp_id), new_session(client, f"kk-{k}", mlp_id)
    rng = np.random.default_rng(k)
    xs = rng.random((k * 8, 28, 28), dtype=np.float32)
    ys = np.eye(10, dtype=np.float32)[rng.integers(0, 10, k * 8)]
    single = [triton(one).infer("train", [tensor("x", xs[i * 8:(i + 1) * 8]),
                                          tensor("y", ys[i * 8:(i + 1) * 8])]).as_numpy("loss")
              for i in range(k)]
    got = triton(many).infer("train", [tensor("x", xs), tensor("y", ys)],
                             parameters={"batches": k})
    losses = got.as_numpy("loss")
    assert losses.shape[0] == k  # the loss of every step
    assert np.array_equal(losses.reshape(k), np.asarray(single).reshape(k))
    assert steps(client, many) == k == steps(client, one)
    assert np.array_equal(oip_infer(triton(many)), oip_infer(triton(one)))  # same weights
    body = {"inputs": {"x": xs.tolist(), "y": ys.tolist()}, "batches": k}
    r = client.post(f"/v1/sessions/{one}/train", json=body)  # the JSON route: the same
    assert r.status_code == 200 and len(r.json()["outputs"]["loss"]) == k
    assert r.json()["step"] == 2 * k


def test_batches_that_do_not_divide_are_422(client: httpx.Client, mlp_id: str,
                                            triton: Triton) -> None:
    sid = new_session(client, "k-bad", mlp_id)
    with pytest.raises(InferenceServerException, match="batches"):
        triton(sid).infer("train", [tensor("x", X[:10]), tensor("y", Y[:10])],
                          parameters={"batches": 4})
    body = {"inputs": {"x": X[:10].tolist(), "y": Y[:10].tolist()}, "batches": 3}
    assert_problem(client.post(f"/v1/sessions/{sid}/train", json=body), 422, "batches")
    for bad in (0, -1, True, "2", 1.5):
        assert_problem(client.post(f"/v1/sessions/{sid}/train",
                                   json={**body, "batches": bad}), 422, "batches")
    assert steps(client, sid) == 0
