"""The README is the user's door: its configuration table matches the settings, and every
example in it runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import models
from app.config import Settings
from app.demo import digits_28
from tests.helpers import LiveServer, new_session, running_server, upload

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_configuration_table_lists_every_setting_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(FLEETLITE_[A-Z0-9_]+)` \| ([^|]+) \|", README, re.M))
    fields = {f"FLEETLITE_{name.upper()}": f for name, f in Settings.model_fields.items()}
    assert set(rows) == set(fields)
    for var, field in fields.items():
        shown = rows[var].strip().strip("`")
        default = field.default
        if default is None:
            assert shown == "unset", var
        elif isinstance(default, float) and default.is_integer():
            assert shown == str(int(default)), var
        else:
            assert shown == str(default), var


def test_readme_keeps_its_two_commands() -> None:
    assert "make run" in README and "make test" in README


# Every example below runs as written against a real server; the only change is the address
# (the examples name 127.0.0.1:8000) and, where the README leaves one to the reader, an id.

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def section(title: str, text: str = README) -> str:
    """The text under a heading, up to the next heading of the same or a higher level (a `#`
    line inside a code block is a comment, not a heading)."""
    level, lines, fenced = 0, [], False
    for line in text.splitlines(keepends=True):
        fenced ^= line.startswith("```")
        heading = re.match(r"(#+) (.*)", line) if not fenced else None
        if heading and level and len(heading.group(1)) <= level:
            break
        if level:
            lines.append(line)
        elif heading and heading.group(2).strip() == title:
            level = len(heading.group(1))
    assert level, f"no section {title!r}"
    return "".join(lines)


def blocks(text: str, lang: str = "") -> list[str]:
    """The fenced code blocks of that language ("": the unlabelled ones, outputs)."""
    found: list[str] = []
    current: list[str] | None = None
    info = ""
    for line in text.splitlines(keepends=True):
        if not line.startswith("```"):
            if current is not None:
                current.append(line)
        elif current is None:
            current, info = [], line[3:].strip()
        else:
            if info == lang:
                found.append("".join(current))
            current = None
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running_server("sqlite-local", tmp_path_factory.mktemp("readme"), None) as live:
        yield live


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """An empty directory where `.venv/bin/...` is the project's environment."""
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    return tmp_path


def sh(script: str, cwd: Path, **env: str) -> str:
    """Run a shell example (bash, stopping at the first failing command); its stdout."""
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd,
                         capture_output=True, text=True, timeout=600, check=False,
                         env={**os.environ, **env})
    assert run.returncode == 0, f"{script}\n---\n{run.stdout}\n{run.stderr[-4000:]}"
    return run.stdout


def test_curl_example_runs(server: LiveServer, workdir: Path) -> None:
    (block,) = blocks(section("Using it with curl"), "sh")
    script = block.replace("URL=http://127.0.0.1:8000", f"URL={server.url}")
    assert script != block
    out = sh(script, workdir)
    assert re.search(r'\{"outputs":\{"loss":[\d.]+\},"step":1\}', out), out
    assert (workdir / "alice.ckpt").stat().st_size > 100_000
    assert out.rstrip().endswith('"live":true}'), out  # the restore's answer: the session


def test_python_example_runs(server: LiveServer, workdir: Path) -> None:
    (block,) = blocks(section("Using it from Python"), "python")
    (workdir / "mlp.tflite").write_bytes(models.build_cached("mlp"))
    (workdir / "alice.py").write_text(block.replace("http://127.0.0.1:8000", server.url))
    out = sh(".venv/bin/python alice.py", workdir)
    assert "'step': 10}" in out, out
    assert (workdir / "alice.ckpt").exists()


@pytest.mark.parametrize("text", [README, (ROOT / "docs" / "api.md").read_text()],
                         ids=["README", "docs/api.md"])
def test_protocol_example_runs(server: LiveServer, text: str) -> None:
    (block,) = [b for b in blocks(text, "python") if "tritonclient" in b]
    with httpx.Client(base_url=server.url, timeout=60) as c:
        sid = new_session(c, "alice", upload(c, models.build_cached("mlp"), "mlp"))
    rng = np.random.default_rng(0)
    scope: dict[str, object] = {
        "sid": sid, "xs": rng.random((32, 28, 28), dtype=np.float32),
        "ys": np.eye(10, dtype=np.float32)[rng.integers(0, 10, 32)]}
    exec(block.replace("127.0.0.1:8000", server.url.removeprefix("http://")), scope)
    assert np.asarray(scope["loss"]).shape == () and np.asarray(scope["probs"]).shape == (32, 10)


def test_fleet_example_runs_after_the_curl_example(server: LiveServer, workdir: Path) -> None:
    (curl,) = blocks(section("Using it with curl"), "sh")
    (fleet,) = blocks(section("Fleets: federated learning on the .tflite that ships"), "sh")
    assert fleet.splitlines()[4] == ".venv/bin/fleetlite datasets sample digits ."
    # no browser here: the page it opens is fetched instead, and must answer
    opener = 'xdg-open() { curl -sf -o /dev/null -w "page %{http_code}\\n" "$1"; }\n'
    script = opener + (curl + fleet).replace("URL=http://127.0.0.1:8000", f"URL={server.url}")
    out = sh(script, workdir)
    assert (workdir / "digits.npz").exists() and (workdir / "digits_test.npz").exists()
    assert "event: end" in out and out.rstrip().endswith("page 200"), out[-2000:]
    assert '"client_accuracy_personal"' in out, out[-2000:]  # the report's final figures


def test_keys_example_runs(tmp_path: Path) -> None:
    (block,) = blocks(section("Keys"), "sh")
    start, *calls = block.splitlines()
    assert start == "export FLEETLITE_ADMIN_TOKEN=change-me && make run"
    with running_server("sqlite-local", tmp_path, None, admin_token="change-me") as live:
        script = "\n".join(calls).replace("<key id>", "$(curl -s -H 'Authorization: Bearer "
                                          "change-me' $URL/v1/users/alice/keys | jq -r "
                                          "'.items[0].id')")
        out = sh(script + '\ncurl -s -o /dev/null -w "%{http_code}" -H "Authorization: '
                 'Bearer $KEY" $URL/v1/users/alice/sessions', tmp_path, URL=live.url)
    assert out.startswith('{"items":[],"next_cursor":null}'), out
    assert out.endswith("401"), out  # the revoked key stops working at once


def test_model_building_commands_run(workdir: Path) -> None:
    (block,) = blocks(section("Trainable models"), "sh")
    out = sh(block, workdir)
    assert all(name in out for name in models.NAMES)
    assert {p.name for p in workdir.glob("*.tflite")} == {"mlp.tflite", "head.tflite",
                                                          "cnn.tflite"}


# The ids the command-line example leaves to the reader, each taken from the output of the
# first earlier command that prints one with its prefix.
PLACEHOLDERS = {"MODEL_ID": "mdl", "SESSION_ID": "ses", "DATASET_ID": "ds", "CKPT_ID": "ckpt"}


def commands(block: str) -> list[str]:
    """A block's commands: continued lines joined, comments and [optional] parts left out."""
    lines = re.sub(r"\\\n\s*", " ", block).splitlines()
    return [re.sub(r"\s+(#.*|\[[^]]*\])*$", "", line) for line in lines if line.strip()]


def test_cli_example_runs(server: LiveServer, workdir: Path) -> None:
    (block,) = blocks(section("Command line"), "sh")
    images, labels = digits_28()
    np.savez(workdir / "digits.npz", x=images, y=np.eye(10, dtype=np.float32)[labels])
    ids: dict[str, str] = {}
    for command in commands(block):
        for name, value in ids.items():
            command = command.replace(name, value)
        left = re.findall(r"\b[A-Z]+_ID\b", command)
        assert not left, f"the example leaves {left} to the reader: {command}"
        out = sh(command, workdir, PATH=f"{VENV_BIN}:{os.environ['PATH']}",
                 FLEETLITE_URL=server.url)
        for name, prefix in PLACEHOLDERS.items():
            found = re.search(rf"\b{prefix}_[0-9a-f]{{22}}\b", out)
            if found and name not in ids:
                ids[name] = found.group(0)
    assert set(ids) == set(PLACEHOLDERS), ids
    assert (workdir / "alice.ckpt").stat().st_size > 100_000


def test_make_demo_follows_port_and_url_and_installs_only_its_extra() -> None:
    dry = subprocess.run(["make", "-n", "-B", "demo", "PORT=9000"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "--url http://127.0.0.1:9000" in dry
    assert "'.[demo]'" in dry and "'.[test]'" not in dry
    dry = subprocess.run(["make", "-n", "demo", "URL=http://10.0.0.5:7000"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "--url http://10.0.0.5:7000" in dry


def test_demo_runs_and_prints_what_the_readme_shows(server: LiveServer) -> None:
    shown = next(b for b in blocks(section("Two commands")) if b.startswith("base model"))
    # -o: the install stamps count as fresh, so the test never installs anything
    run = subprocess.run(["make", "-s", "-o", ".venv/.installed", "-o", ".venv/.installed-demo",
                          "demo", f"URL={server.url}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stderr == "", run.stderr  # no TensorFlow noise either
    lines = run.stdout.splitlines()
    assert len(lines) == len(shown.splitlines()), run.stdout
    for expected, line in zip(shown.splitlines(), lines, strict=True):
        # ids and measured values vary; the words, the counts and the layout do not
        parts = re.split(r"((?:mdl|ses)_[0-9a-f]{22}|\d+\.\d+)", expected)
        pattern = "".join(re.escape(part) if i % 2 == 0 else
                          r"[a-z]+_[0-9a-f]{22}" if "_" in part else r"\d+\.\d+"
                          for i, part in enumerate(parts))
        assert re.fullmatch(pattern, line), (expected, line)


def test_readme_links_point_at_files_in_the_repository() -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
    assert "docs/api.md" in README
    others = README.replace("docs/api.md", "")
    assert "API.md" not in others and "NOTES.md" not in others
