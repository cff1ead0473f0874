"""GET /v1/models/{id}/report and report.html on both backends: the operators are the
flatbuffer's, the sizes and parameters those of the model and of what its save writes, the
device classes scale this server's step, and Select TF ops beyond training are named."""

from __future__ import annotations

import re
from typing import Any

import httpx
import numpy as np
import pytest

from app.federated.devices import catalogue
from app.runtime.tflite_ops import read_ops
from tests.fleets.support import initial_weights, read_ckpt
from tests.helpers import assert_problem, upload


def _erf_model() -> bytes:
    """The MLP whose infer runs one more Select TF op (Erf) than training needs."""
    import tensorflow as tf

    from models._convert import to_tflite
    from models.mlp import Model

    class ErfMlp(Model):
        def infer(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"output": tf.raw_ops.Erf(x=self.logits(x))}

    model = ErfMlp(0)
    return to_tflite(model, model.concrete_functions())


@pytest.fixture(scope="module")
def report(client: httpx.Client, mlp_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/models/{mlp_id}/report")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_get_model_report_operators_are_the_flatbuffers(report: dict[str, Any],
                                                         mlp_bytes: bytes) -> None:
    ops = read_ops(mlp_bytes)
    assert set(report["signatures"]) == {"train", "infer", "save", "restore"}
    for key, sig in ops.signatures.items():
        got = report["signatures"][key]
        assert got == {"subgraphs": list(sig.subgraphs), "builtin": sig.builtin,
                       "flex": sig.flex, "custom": {}}
    assert report["signatures"]["train"]["flex"] == {"ReluGrad": 1}
    assert report["signatures"]["save"]["flex"] == {"Save": 1}
    assert report["signatures"]["infer"]["flex"] == {}
    assert report["flex_ops"] == ["ReluGrad", "Restore", "Save"]
    assert report["flex_beyond_training"] == [] and report["custom_ops"] == []


def test_get_model_report_sizes_and_parameters(report: dict[str, Any], mlp_bytes: bytes
                                               ) -> None:
    weights = initial_weights(mlp_bytes)
    arrays = read_ckpt(weights)
    assert report["model_bytes"] == len(mlp_bytes)
    assert report["checkpoint_bytes"] == len(weights)
    assert report["trainable_parameters"] == sum(a.size for a in arrays.values()) == 101_770
    assert report["variables"] == {k: list(a.shape) for k, a in sorted(arrays.items())}
    assert report["frozen_parameters"] == 0


def test_get_model_report_device_classes_scale_this_servers_step(report: dict[str, Any]
                                                                 ) -> None:
    t = report["timing"]
    assert t["train_batch"] == 32 and t["infer_batch"] == 32
    assert t["train_ms_per_example"] > 0 and t["infer_ms_per_batch"] > 0
    assert t["train_ms_per_step"] == pytest.approx(32 * t["train_ms_per_example"])
    classes = catalogue()
    assert [d["name"] for d in report["devices"]] == list(classes)
    for d in report["devices"]:
        c = classes[d["name"]]
        assert c.slowdown is not None and d["slowdown"] == c.slowdown
        assert d["train_ms_per_step"] == pytest.approx(c.slowdown * t["train_ms_per_step"])
        assert d["infer_ms_per_batch"] == pytest.approx(c.slowdown * t["infer_ms_per_batch"])
        assert d["model_download_s"] == pytest.approx(
            report["model_bytes"] * 8 / 1000 / c.down_kbps)
        assert d["checkpoint_upload_s"] == pytest.approx(
            report["checkpoint_bytes"] * 8 / 1000 / c.up_kbps)
        assert d["train_joules_per_step"] == pytest.approx(
            c.train_watts * d["train_ms_per_step"] / 1000)


def test_get_model_report_shipping_needs_select_tf_ops(report: dict[str, Any]) -> None:
    s = report["shipping"]
    assert s["needs_select_tf_ops"] is True
    assert s["gradle"] == ['implementation("org.tensorflow:tensorflow-lite:2.16.1")',
                           'implementation("org.tensorflow:tensorflow-lite-select-tf-ops:2.16.1")']
    assert s["cocoapods"] == ["pod 'TensorFlowLiteSwift', '~> 2.16'",
                              "pod 'TensorFlowLiteSelectTfOps', '~> 2.16'"]
    assert s["ios_linker_flags"][0].startswith("-force_load ")
    builds = {b["build"]: b for b in s["runtime"]}
    assert not builds["builtins"]["applies"] and builds["select_tf_ops"]["applies"]
    assert builds["builtins"]["android_apk_bytes"] == 561 * 1024  # TensorFlow's table
    assert builds["select_tf_ops"]["android_apk_bytes"] == 8 * 1024**2
    assert {src["url"] for src in s["sources"]} >= {
        "https://www.tensorflow.org/lite/guide/ops_select",
        "https://www.tensorflow.org/lite/guide/reduce_binary_size"}
    assert s["retrieved"] == "2026-12-05"


def test_get_model_report_html_reads_offline(client: httpx.Client, mlp_id: str) -> None:
    r = client.get(f"/v1/models/{mlp_id}/report.html")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "<script" not in page and "src=" not in page and "@import" not in page
    assert "<style>" in page and "width=device-width" in page
    chart = page[page.index('<svg class="bars"'):page.index("</svg>")]
    assert chart.count("<rect") == 4 and "this server" in chart and "low_end" in chart
    for needle in ("ReluGrad&nbsp;&times;1", "Save&nbsp;&times;1", "BATCH_MATMUL",
                   "mid_range", "tensorflow-lite-select-tf-ops:2.16.1",
                   "TensorFlowLiteSelectTfOps", "101,770", "ops_select"):
        assert needle in page, needle
    # Every link is one of the figures' sources, for a reader who is online.
    assert set(re.findall(r'href="([^"]+)"', page)) <= {
        "https://www.tensorflow.org/lite/guide/ops_select",
        "https://www.tensorflow.org/lite/guide/reduce_binary_size",
        "https://www.tensorflow.org/lite/guide/ops_select#android_aar"}


def test_get_model_report_names_flex_ops_beyond_training(client: httpx.Client) -> None:
    model_id = upload(client, _erf_model(), "erf-mlp")
    r = client.get(f"/v1/models/{model_id}/report")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["signatures"]["infer"]["flex"] == {"Erf": 1}
    assert body["flex_beyond_training"] == ["Erf"]
    assert any("beyond what training needs: Erf" in n for n in body["notes"])
    page = client.get(f"/v1/models/{model_id}/report.html").text
    assert 'class="warn"' in page and "Erf" in page


@pytest.mark.parametrize("suffix", ["report", "report.html"])
def test_get_model_report_of_unknown_model_is_404(client: httpx.Client, suffix: str) -> None:
    assert_problem(client.get(f"/v1/models/mdl_nope/{suffix}"), 404, "mdl_nope")


def test_report_measures_what_the_head_model_needs(client: httpx.Client,
                                                   head_bytes: bytes) -> None:
    model_id = upload(client, head_bytes, "head")
    body = client.get(f"/v1/models/{model_id}/report").json()
    assert body["variables"] == {k: list(v.shape) for k, v in
                                 sorted(read_ckpt(initial_weights(head_bytes)).items())}
    assert body["signatures"] == {
        k: {"subgraphs": list(s.subgraphs), "builtin": s.builtin, "flex": s.flex, "custom": {}}
        for k, s in read_ops(head_bytes).signatures.items()}
    assert np.isclose(body["timing"]["train_ms_per_step"],
                      32 * body["timing"]["train_ms_per_example"])


def test_get_model_report_html_escapes_the_models_name(client: httpx.Client,
                                                       mlp_bytes: bytes) -> None:
    model_id = upload(client, mlp_bytes, "<script>alert('x')</script>&co")
    page = client.get(f"/v1/models/{model_id}/report.html").text
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;co" in page
