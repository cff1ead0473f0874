"""What the command line prints: whole ids at any width, hints that can be run as printed,
raw JSON from every command."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import shlex
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

import models
from app.cli import app
from tests.cli.support import USER, cli, field, ok
from tests.helpers import LiveServer

ROOT = Path(__file__).resolve().parents[2]
ID = re.compile(r"\b(?:mdl|ses|ds|job|ckpt)_[0-9a-z]*")  # whole or cut, as printed


@pytest.fixture(scope="module")
def job(server: LiveServer, model_id: str, dataset_id: str) -> dict[str, Any]:
    """A finished job of 21 epochs (more than the CLI lists) on a session of its own."""
    sid = field(ok(cli(server, "sessions", "create", USER, "--model", model_id)).stdout,
                "session")
    result = cli(server, "--json", "jobs", "run", sid, "--dataset", dataset_id,
                 "--epochs", "21", "--batch-size", "200")
    return json.loads(ok(result).stdout)  # type: ignore[no-any-return]


def known_ids(client: httpx.Client) -> set[str]:
    """Every id USER can see, and the models'."""
    ids: set[str] = set()
    for path in ("/v1/models", *(f"/v1/users/{USER}/{kind}" for kind in
                                 ("sessions", "datasets", "jobs", "checkpoints"))):
        for item in client.get(path, params={"limit": 500}).json()["items"]:
            ids.update(v for k, v in item.items() if k == "id" or k.endswith("_id") and v)
    return ids


@pytest.mark.parametrize("columns", [80, 100])
def test_ids_are_whole_at_80_and_100_columns(server: LiveServer, client: httpx.Client,
                                             job: dict[str, Any], columns: int) -> None:
    ckpt = job["checkpoint_ids"][-1]
    lists = [("models", "list"), ("sessions", "list", USER), ("datasets", "list", USER),
             ("jobs", "list", USER), ("checkpoints", "list", USER)]
    others = [("jobs", "show", job["id"]), ("sessions", "show", job["session_id"]),
              ("checkpoints", "create", job["session_id"], "--label", f"after {job['id']}"),
              ("jobs", "run", job["session_id"], "--dataset", job["dataset_id"], "--epochs", "1",
               "--batch-size", "200", "--detach")]
    env = {"COLUMNS": str(columns)}
    outputs = {args: ok(cli(server, *args, env=env)).output for args in [*lists, *others]}
    known = known_ids(client)
    for args, out in outputs.items():
        printed = ID.findall(out)
        assert printed and set(printed) <= known, (args, set(printed) - known, out)
        assert "…" not in out, out
        if args in lists:  # a table wider than the terminal would be wrapped by it
            assert max(map(len, out.splitlines())) <= columns, out
    assert ckpt in outputs[("jobs", "show", job["id"])]


def in_terminal(args: list[str], columns: int) -> str:
    """Run the CLI in a pseudo-terminal `columns` wide (no COLUMNS set); its output, no colours."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    with subprocess.Popen([sys.executable, "-m", "app.cli", *args], cwd=ROOT, stdin=child,
                          stdout=child, stderr=child, env={**env, "PYTHONPATH": str(ROOT)}) as proc:
        os.close(child)
        chunks = []
        with contextlib.suppress(OSError):  # EIO: the child closed the terminal
            while chunk := os.read(main, 65536):
                chunks.append(chunk)
        assert proc.wait(60) == 0, b"".join(chunks)
    os.close(main)
    text = b"".join(chunks).decode().replace("\r", "")
    # a live display redraws its frame with cursor moves and erases: each one starts a line
    text = re.sub(r"\x1b\[[0-9;]*[ABCDEFGHJK]", "\n", text)
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text)  # colours, hiding the cursor
    return "\n".join(line for line in text.split("\n") if line.strip()) + "\n"


def test_ids_are_whole_in_an_80_column_terminal(server: LiveServer, client: httpx.Client,
                                                job: dict[str, Any]) -> None:
    out = in_terminal(["--url", server.url, "checkpoints", "list", USER], 80)
    printed = ID.findall(out)
    assert job["checkpoint_ids"][-1] in printed and set(printed) <= known_ids(client), out
    assert max(map(len, out.splitlines())) <= 80, out


def test_hints_repeat_url_and_token_but_never_print_the_token(
        server: LiveServer, client: httpx.Client, job: dict[str, Any]) -> None:
    shown = ok(cli(server, "--token", "s3cret", "jobs", "show", job["id"]))
    every = f'fleetlite --url {server.url} --token "$FLEETLITE_TOKEN" --json jobs show {job["id"]}'
    assert f"(all 21 epochs: {every})" in shown.stdout
    assert "s3cret" not in shown.output
    assert "export FLEETLITE_TOKEN=<your token>" in shown.stderr

    started = ok(cli(server, "--token", "s3cret", "jobs", "run", job["session_id"], "--dataset",
                     job["dataset_id"], "--epochs", "1", "--batch-size", "100", "--detach"))
    follow = re.search(r"^follow\s+(.+)$", started.stdout, re.M)
    assert follow, started.stdout
    assert follow.group(1) == (f'fleetlite --url {server.url} --token "$FLEETLITE_TOKEN" '
                               f'jobs follow {field(started.stdout, "job")}')
    assert "s3cret" not in started.output
    # The hint runs as printed in a shell that has the token in FLEETLITE_TOKEN
    run = subprocess.run(
        ["bash", "-c", f'fleetlite() {{ "{sys.executable}" -m app.cli "$@"; }}; {follow.group(1)}'],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "FLEETLITE_TOKEN": "s3cret", "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert re.search(r"^job job_\w+ succeeded", run.stdout, re.M), run.stdout


def test_the_next_page_hint_runs_as_printed(server: LiveServer, client: httpx.Client,
                                            job: dict[str, Any]) -> None:
    first = ok(cli(server, "checkpoints", "list", USER, "--session", job["session_id"],
                   "--limit", "2"))
    more = re.search(r"^more: (.+)$", first.stderr, re.M)
    assert more, first.stderr
    words = shlex.split(more.group(1))
    assert words[:3] == ["fleetlite", "--url", server.url]
    assert words[3:] == ["checkpoints", "list", USER, "--session", job["session_id"], "--limit",
                         "2", "--cursor", words[-1]]
    second = ok(CliRunner().invoke(app, words[1:])).stdout
    listed = client.get(f"/v1/users/{USER}/checkpoints",
                        params={"session_id": job["session_id"], "limit": 4}).json()["items"]
    assert [re.findall(r"^ckpt_\w+", out, re.M) for out in (first.stdout, second)] == [
        [c["id"] for c in listed[:2]], [c["id"] for c in listed[2:]]]


def leaf_commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command of the CLI, as its words."""
    for name, command in getattr(group, "commands", {}).items():
        if getattr(command, "commands", None):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name)


def test_every_command_prints_raw_json(server: LiveServer, files: Path, model_id: str,
                                       job: dict[str, Any], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "build", lambda name: b"not really a model")  # no TensorFlow
    sid, ckpt = job["session_id"], job["checkpoint_ids"][0]
    fleet = ("--model", model_id, "--dataset", job["dataset_id"], "--clients", "2",
             "--per-round", "2", "--rounds", "1")
    detached = json.loads(ok(cli(server, "--json", "fleets", "run", USER, *fleet,
                                 "--detach")).stdout)["id"]
    calls = {
        ("models", "upload"): (str(files / "mlp.tflite"),),
        ("models", "list"): (),
        ("models", "build"): ("mlp", str(tmp_path / "mlp.tflite")),
        ("sessions", "create"): (USER, "--model", model_id),
        ("sessions", "list"): (USER,),
        ("sessions", "show"): (sid,),
        ("datasets", "upload"): (USER, str(files / "digits.npz")),
        ("datasets", "list"): (USER,),
        ("datasets", "sample"): ("digits", str(tmp_path / "sample")),
        ("jobs", "run"): (sid, "--dataset", job["dataset_id"], "--epochs", "1",
                          "--batch-size", "200"),
        ("jobs", "follow"): (job["id"],),
        ("jobs", "show"): (job["id"],),
        ("jobs", "cancel"): (job["id"],),
        ("jobs", "list"): (USER,),
        ("checkpoints", "list"): (USER,),
        ("checkpoints", "create"): (sid,),
        ("checkpoints", "download"): (ckpt, "-o", str(tmp_path / "c.ckpt")),
        ("fleets", "run"): (USER, *fleet),
        ("fleets", "follow"): (detached,),
        ("fleets", "show"): (detached,),
        ("fleets", "list"): (USER,),
        ("fleets", "rounds"): (detached,),
        ("fleets", "clients"): (detached,),
        ("fleets", "report"): (detached,),
        ("fleets", "compare"): (detached, detached),
        ("fleets", "cancel"): (detached,),
        ("devices",): (),
    }
    # models convert and privacy are tested in test_cli_convert.py and test_cli_privacy.py
    assert set(calls) == {c for c in leaf_commands(typer.main.get_command(app))
                          if c[0] != "privacy" and c != ("models", "convert")}
    for words, args in calls.items():
        result = ok(cli(server, "--json", *words, *args))
        assert isinstance(json.loads(result.stdout), dict), (words, result.stdout)


def test_the_cli_fits_an_80_column_terminal(server: LiveServer, client: httpx.Client,
                                            model_id: str, dataset_id: str,
                                            job: dict[str, Any]) -> None:
    """A live fleet and every list in a pseudo-terminal of 80 columns: no line is longer, the
    live bar keeps its count and elapsed time, lists are tables (a header, one line a row)."""
    fleet = ["fleets", "run", USER, "--model", model_id, "--dataset", dataset_id, "--clients",
             "6", "--rounds", "3", "--holdout", "0.25", "--batch-size", "16", "--seed", "2"]
    other = json.loads(ok(cli(server, "--json", *fleet, "--strategy", "local")).stdout)["id"]
    run = in_terminal(["--url", server.url, *fleet], 80)
    found = re.search(r"^fleet (flt_\w+) succeeded", run, re.M)
    assert found, run
    fleet_id = found.group(1)
    frames = [line for line in run.splitlines() if "━" in line and " rounds " in line]
    assert frames and all(re.search(r" \d+/3 rounds .*\d (ms|s|min)$", f) for f in frames), run
    assert re.search(r" 3/3 rounds +r3 loss \d\.\d{4} (acc|clients) \d+\.\d%", frames[-1]), frames
    trained = in_terminal(["--url", server.url, "jobs", "run", job["session_id"], "--dataset",
                           job["dataset_id"], "--epochs", "3", "--batch-size", "8"], 80)
    steps = [line for line in trained.splitlines() if "━" in line]  # the bar's frames
    assert steps and all(re.search(r" \d+/75 steps .*\d (ms|s|min)$", s) for s in steps), trained
    assert re.search(r"^succeeded .* 75/75 steps .*loss \d\.\d{4} ", steps[-1]), steps
    outputs = {"fleets run": run, "jobs run": trained}
    headers = {("fleets", "list", USER): "id", ("fleets", "rounds", fleet_id): "round",
               ("fleets", "clients", fleet_id): "client", ("fleets", "compare", fleet_id, other):
               "fleet", ("devices",): "class", ("checkpoints", "list", USER): "id",
               ("jobs", "list", USER): "id", ("models", "list"): "id",
               ("sessions", "list", USER): "id", ("datasets", "list", USER): "id"}
    for args, first in headers.items():
        out = in_terminal(["--url", server.url, *args], 80)
        outputs[" ".join(args)] = out
        # a table (its header may wrap between words), not blocks of `key  value` lines
        assert any(line.split()[:1] == [first] for line in out.splitlines()[:3]), out
    for args in (("fleets", "report", fleet_id), ("fleets", "show", fleet_id),
                 ("jobs", "show", job["id"])):
        outputs[" ".join(args)] = in_terminal(["--url", server.url, *args], 80)
    for name, out in outputs.items():
        # only a link or a command too long to fit passes 80 columns, whole on its own line
        # (the next page's command comes after "more: ")
        assert all(len(line) <= 80 or re.fullmatch(
            r"(  |more: )(fleetlite|http)\S* \S.*|  http\S+", line)
            for line in out.splitlines()), out
        assert "…" not in out, (name, out)
    clients = outputs[f"fleets clients {fleet_id}"]
    assert re.search(r"^client +device +train .* session *$", clients, re.M), clients
    sessions = [c["session_id"] for c in
                client.get(f"/v1/fleets/{fleet_id}/clients").json()["items"]]
    assert all(s in clients for s in sessions), clients  # ids whole
    assert "left out to fit 80 columns: labels" in clients
    wide = in_terminal(["--url", server.url, "fleets", "clients", fleet_id, "--wide"], 80)
    assert re.search(r"^client +device +train +holdout +labels +rounds +global acc",
                     wide, re.M), wide
