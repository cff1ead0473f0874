"""`fleetlite models convert`: flags over --options, the model and its origin printed, a
refusal as exit 2 with the server's reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli.convert import merged_options
from tests.cli.support import cli, field, ok
from tests.helpers import LiveServer
from tests.models import test_convert_builders as build


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keras") / "digits.keras"
    path.write_bytes(build.keras_bytes(build.mlp()))
    return path


def test_merged_options_puts_flags_over_the_json() -> None:
    base = json.dumps({"loss": "mse", "optimizer": {"name": "sgd", "momentum": 0.9},
                       "label": {"name": "t", "dtype": "float32"}})
    got = merged_options(base, trainable="hidden, out", loss=None, from_logits=True,
                         optimizer=None, lr=0.05, momentum=None, label="y")
    assert got == {"loss": "mse", "trainable": ["hidden", "out"], "from_logits": True,
                   "optimizer": {"name": "sgd", "momentum": 0.9, "learning_rate": 0.05},
                   "label": {"name": "y", "dtype": "float32"}}
    adam = merged_options(base, trainable="last:1", loss=None, from_logits=None,
                          optimizer="adam", lr=0.01, momentum=None, label=None)
    assert adam["trainable"] == "last:1" and adam["optimizer"] == {"name": "adam",
                                                                   "learning_rate": 0.01}


def test_convert_model_prints_the_model_and_its_origin(server: LiveServer,
                                                       keras_file: Path) -> None:
    out = ok(cli(server, "models", "convert", str(keras_file), "--name", "cli-mlp",
                 "--trainable", "last:1", "--lr", "0.05", "--label", "y")).stdout
    assert field(out, "model").startswith("mdl_") and field(out, "name") == "cli-mlp"
    assert field(out, "trainable") == "out" and field(out, "loss") == "categorical_crossentropy"
    again = json.loads(ok(cli(server, "--json", "models", "convert", str(keras_file),
                              "--name", "cli-mlp", "--trainable", "last:1", "--lr", "0.05",
                              "--label", "y")).stdout)
    assert again["id"] == field(out, "model")  # the same conversion: the model already there
    assert again["converted_from"]["options"]["optimizer"] == {
        "name": "sgd", "learning_rate": 0.05, "momentum": 0.0}
    assert set(again["signatures"]["train"]["inputs"]) == {"x", "y"}


def test_convert_model_refused_exits_2_with_the_reason(server: LiveServer,
                                                       tmp_path: Path) -> None:
    notes = tmp_path / "notes.keras"
    notes.write_text("not a model")
    result = cli(server, "models", "convert", str(notes))
    assert result.exit_code == 2 and "not a Keras model" in result.output, result.output
    bad = cli(server, "models", "convert", str(notes), "--options", "{nope")
    assert bad.exit_code == 2 and "--options: not valid JSON" in bad.output, bad.output
    unknown = cli(server, "models", "convert", str(notes), "--options", '{"epochs": 3}')
    assert unknown.exit_code == 2 and "options.epochs" in unknown.output, unknown.output


def test_readme_bring_your_own_model_example_runs(server: LiveServer, tmp_path: Path) -> None:
    from tests.test_readme import ROOT, blocks, section, sh

    text = section("Bring your own model")
    (block,) = blocks(text, "sh")
    shown = next(b for b in blocks(text) if b.startswith("{"))
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    script = block.replace("URL=http://127.0.0.1:8000", f"URL={server.url}")
    assert script != block
    out = sh(script, tmp_path)
    # The Keras file's sha256 changes with each run (fresh weights, zip timestamps).
    head, tail = shown.split("model ")[0], shown.split("...\n")[1].split("\n", 1)[1]
    assert out.startswith(head), out  # the curl part, to the fleet's one end event
    assert out.endswith(tail) and "converted from keras sha256 " in out, out  # the CLI's
    assert field(out, "name") == "my-head"
