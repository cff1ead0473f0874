"""Parts of the command line that need no server: help, tables, colours, hints, the SSE reader."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import numpy as np
import pytest
from rich.color import ColorSystem
from rich.console import Console
from typer.testing import CliRunner

from app.cli import app
from app.cli.api import Api
from app.cli.fleet_views import FleetBar
from app.cli.follow import updates
from app.cli.jobs import ProgressBar, epoch_rows
from app.cli.output import ALL_COLUMNS, seconds, table
from app.cli.state import State, hint
from app.demo import digits_28, sample_digits

JOB = {"id": "job_1", "status": "running", "epochs": 5, "metrics": {"epoch_loss": [2.3]},
       "progress": {"epoch": 2, "step": 100, "total_steps": 315}}


@pytest.mark.parametrize("args", [[], ["jobs", "run"], ["checkpoints", "download"],
                                  ["fleets", "run"]])
def test_help_shows_flags_as_flags(args: list[str]) -> None:
    out = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "100"}).stdout
    assert "<bool>" not in out, out
    flags = [line for line in out.splitlines() if re.search(r"--(json|detach|help)\b", line)]
    assert flags and all("<" not in line for line in flags), flags
    if not args:
        assert re.search(r"--url\s+<str>", out), out  # options that take a value still say so


def test_arguments_are_named_in_capitals_in_help_and_errors() -> None:
    result = CliRunner().invoke(app, ["jobs", "show"], env={"COLUMNS": "100"})
    assert result.exit_code == 2 and "Missing argument 'JOB_ID'" in result.output


def bar_segments(job: dict[str, Any]) -> list[tuple[str, int]]:
    """The bar's characters and their colours, rendered for a 16-colour terminal."""
    out = Console(file=io.StringIO(), color_system="standard", force_terminal=True, width=100)
    bar = ProgressBar(JOB, out)
    bar.update(job)
    found = []
    for segment in out.render(bar.progress.get_renderable()):
        if segment.text.strip("━╸╺") == "" and segment.text and segment.style:
            color = segment.style.color
            assert color is not None
            found.append((segment.text, color.downgrade(ColorSystem.STANDARD).number or 0))
    return found


def test_progress_bars_are_readable_in_16_colours() -> None:
    faint = {0, 8}  # black, bright black: what rich's default bar colours fall to
    done = bar_segments({**JOB, "status": "succeeded",
                         "progress": {"epoch": 5, "step": 315, "total_steps": 315}})
    assert len({colour for _, colour in done}) == 1 and done[0][1] not in faint, done
    assert sum(len(text) for text, _ in done) > 20
    partway = bar_segments(JOB)
    colours = [colour for _, colour in partway]
    assert colours[0] not in faint and colours[-1] in faint and colours[0] != colours[-1]


def test_tables_never_cut_a_word_and_leave_out_columns_in_order_to_fit(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [f"ckpt_01a22cc{i:015x}" for i in range(3)]
    rows = [(i, "ses_01a22d3ad3449e4bf551bf", f"from job_01a22d3ad95e003552740d {n}", "2 KiB")
            for n, i in enumerate(ids)]
    drop = ("size", "session")
    for columns, left_out in ((120, []), (90, []), (85, ["size"]), (80, ["size", "session"])):
        monkeypatch.setenv("COLUMNS", str(columns))
        table(("id", "session", "label", "size"), rows, drop)
        out, err = capsys.readouterr()
        assert all(i in out for i in ids) and "job_01a22d3ad95e003552740d" in out, out
        assert max(map(len, out.splitlines())) <= columns
        header = out.splitlines()[0].split()
        assert header == [c for c in ("id", "session", "label", "size") if c not in left_out]
        assert (f"left out to fit {columns} columns: {', '.join(left_out)}" in err) is bool(
            left_out), err
    ALL_COLUMNS.set(True)
    try:
        table(("id", "session", "label", "size"), rows, drop)
    finally:
        ALL_COLUMNS.set(False)
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split() == ["id", "session", "label", "size"] and err == ""
    assert all(len(line.split()) >= 4 for line in out.splitlines()), out  # one line a row
    table(("id",), [])
    assert capsys.readouterr().out == "(none)\n"


@pytest.mark.parametrize(("value", "shown"), [
    (None, "-"), (0.0004, "0 ms"), (0.35, "350 ms"), (57.1, "57.1 s"), (119.9, "119.9 s"),
    (750, "12.5 min"), (3 * 3600 + 720, "3.2 h"), (47 * 3600, "47.0 h"),
    (4.5 * 86400, "4.5 days")])
def test_durations_are_printed_in_the_unit_their_size_calls_for(value: float | None,
                                                                 shown: str) -> None:
    assert seconds(value) == shown


def fleet_frame(width: int, total: int = 5000) -> list[str]:
    """The lines of a FleetBar's frame at round 18 of total, at width columns."""
    out = Console(file=io.StringIO(), width=width)

    class Rounds:
        def json_or_none(self, path: str) -> dict[str, Any]:
            return {"items": [{"round": 17, "train_loss": 0.1068, "global_accuracy": 0.833,
                               "client_accuracy": None}]}

    fleet = {"id": "flt_1", "status": "running", "global_checkpoint_ids": ["c"] * 17,
             "progress": {"rounds": total, "round": 18, "updates_done": 3,
                          "updates_in_round": 10}}
    bar = FleetBar(fleet, cast(Api, Rounds()), out)
    bar.update(fleet)
    out.print(bar.progress.get_renderable())
    return cast(io.StringIO, out.file).getvalue().splitlines()


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_live_bars_keep_the_count_and_the_elapsed_time_whole(width: int) -> None:
    rounds, updates = fleet_frame(width)
    assert re.search(r" 17/5000 rounds .*\d (ms|s)$", rounds), rounds
    assert re.search(r" 3/10 +updates .*\d (ms|s)$", updates), updates
    assert "…" not in rounds + updates and max(len(rounds), len(updates)) <= width
    if width >= 100:
        assert "last round 17: loss 0.1068, global accuracy 83.3%" in rounds
    elif width == 80:
        assert "r17 loss 0.1068 acc 83.3%" in rounds
    job = Console(file=io.StringIO(), width=width)
    bar = ProgressBar(JOB, job)
    bar.update(JOB)
    job.print(bar.progress.get_renderable())
    (line,) = cast(io.StringIO, job.file).getvalue().splitlines()
    assert re.search(r" 100/315 steps.* \d+ (ms|s)$", line) and len(line) <= width, line


def test_hints_quote_words_and_never_hold_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    state = State(api=Api("http://x"), as_json=False,
                  options=["--url", "'http://h:1/?a=1&b=2'", '--token "$FLEETLITE_TOKEN"'],
                  token_on_command_line=True)
    ctx: Any = SimpleNamespace(obj=state)
    assert hint(ctx, "checkpoints", "create", "ses_1", "--label", "it's mine") == (
        "fleetlite --url 'http://h:1/?a=1&b=2' --token \"$FLEETLITE_TOKEN\" checkpoints create "
        "ses_1 --label 'it'\"'\"'s mine'")
    hint(ctx, "jobs", "show", "job_1")
    assert capsys.readouterr().err.count("export FLEETLITE_TOKEN=") == 1  # said once


def sse_client(*bodies: bytes, final: dict[str, Any] | None = None) -> tuple[Api, list[str]]:
    """An Api whose event stream answers the bodies in turn, and the paths it was asked for."""
    asked: list[str] = []
    streams = iter(bodies)

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path.endswith("/events"):
            assert request.headers["accept"] == "text/event-stream"
            return httpx.Response(200, content=next(streams),
                                  headers={"content-type": "text/event-stream; charset=utf-8"})
        return httpx.Response(200, json=final)

    client = Api("http://test")
    client.http = httpx.Client(base_url="http://test", transport=httpx.MockTransport(answer))
    return client, asked


def test_updates_read_events_comments_multiline_data_and_crlf() -> None:
    body = (b": keep-alive\r\n\r\nevent: progress\r\ndata: {\"step\":\r\ndata: 1}\r\n\r\n"
            b"data: {\"step\": 2}\n\n: ping\n\nevent: end\ndata:{\"step\": 3}\n\n"
            b"event: progress\ndata: {\"step\": 4}\n\n")
    client, asked = sse_client(body)
    assert list(updates(client, "job", "job_1", "hint")) == [{"step": 1}, {"step": 2}, {"step": 3}]
    assert asked == ["/v1/jobs/job_1/events"]


def test_updates_look_at_the_job_when_the_stream_ends_early() -> None:
    final = {"status": "succeeded", "step": 9}
    client, asked = sse_client(b"event: progress\ndata: {\"status\": \"running\"}\n\n",
                               final=final)
    assert list(updates(client, "job", "job_1", "hint")) == [{"status": "running"}, final]
    assert asked == ["/v1/jobs/job_1/events", "/v1/jobs/job_1"]


def test_long_jobs_list_the_first_and_last_epochs() -> None:
    assert epoch_rows(3) == [0, 1, 2]
    assert epoch_rows(300) == [0, 1, 2, 3, 4, None, *range(285, 300)]


def sent_spec(monkeypatch: pytest.MonkeyPatch, *flags: str) -> dict[str, Any]:
    """The FleetSpec `fleets run --detach` sends with these flags (no server: the answer is
    the spec echoed in a queued fleet)."""
    sent: list[dict[str, Any]] = []

    def answer(self: Api, method: str, path: str, **kwargs: Any) -> Any:
        assert (method, path) == ("POST", "/v1/users/alice/fleets")
        sent.append(kwargs["json"])
        return {"id": "flt_1", "status": "queued", "spec": kwargs["json"]}

    monkeypatch.setattr(Api, "json", answer)
    result = CliRunner().invoke(app, ["fleets", "run", "alice", "--model", "mdl_1",
                                      "--dataset", "ds_1", "--detach", *flags])
    assert result.exit_code == 0, result.output
    (spec,) = sent
    return spec


def test_fleets_run_flags_fill_name_mode_and_async(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = sent_spec(monkeypatch, "--name", "FedBuff, 4 at once", "--mode", "async",
                     "--algorithm", "fedbuff", "--concurrency", "4", "--buffer-size", "3")
    assert spec["name"] == "FedBuff, 4 at once" and spec["mode"] == "async"
    assert spec["async"] == {"algorithm": "fedbuff", "concurrency": 4, "buffer_size": 3}
    assert "clients_per_round" not in spec  # the server's default: 10 of its 10 clients
    result = CliRunner().invoke(app, ["fleets", "run", "alice", "--model", "m", "--dataset",
                                      "d", "--mode", "fast"])
    assert result.exit_code == 2 and "--mode 'fast': choose one of sync, async" in result.stderr


@pytest.mark.parametrize(("flags", "per_round"), [
    (("--clients", "5"), 5), (("--clients", "40"), 10), (("--clients", "40", "--per-round", "20"),
                                                         20)])
def test_per_round_defaults_to_at_most_the_clients(monkeypatch: pytest.MonkeyPatch,
                                                   flags: tuple[str, ...], per_round: int) -> None:
    assert sent_spec(monkeypatch, *flags)["clients_per_round"] == per_round


def test_datasets_sample_digits_writes_the_readme_data(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["datasets", "sample", "digits", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    train, test = sample_digits()
    for file, arrays in (("digits.npz", train), ("digits_test.npz", test)):
        assert f"wrote {tmp_path / 'data' / file}: {len(arrays['x'])} examples" in result.stdout
        with np.load(tmp_path / "data" / file) as written:
            assert sorted(written.files) == sorted(arrays)
            for key, value in arrays.items():
                np.testing.assert_array_equal(written[key], value)
    images, _ = digits_28()
    assert len(train["x"]) + len(test["x"]) == len(images) and train["x"].shape[1:] == (28, 28)
    groups = np.bincount(train["group"])
    assert len(groups) == 20 and groups.min() > 0  # every writer-like group has examples
    mixes = [np.bincount(train["y"][train["group"] == g].argmax(1), minlength=10) for g in
             range(20)]
    assert max(m.max() / m.sum() for m in mixes) > 0.3  # writers favour some digits


def test_datasets_sample_says_what_it_needs_without_scikit_learn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails as if absent
    result = CliRunner().invoke(app, ["datasets", "sample", "digits", str(tmp_path)])
    assert result.exit_code == 2 and "pip install 'fleetlite[demo]'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_fleets_compare_shows_names_and_leaves_out_columns_in_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def fleet(fleet_id: str, name: str | None, accuracy: float) -> dict[str, Any]:
        return {"fleet_id": fleet_id, "status": "succeeded", **({"name": name} if name else {}),
                "settings": {"strategy": {"name": "fedavg"}, "round_deadline_s": 30.0,
                             "over_commit": 1.3},
                "summary": {"rounds": 3, "virtual_hours": 57.1 / 3600,
                            "final_accuracy": accuracy, "best_accuracy": accuracy,
                            "time_to_accuracy": {"90%": 20.0},
                            "updates": {"completed": 30, "straggler": 9, "dropped_offline": 1,
                                        "dropped_battery": 0},
                            "energy_j": 401.2, "bytes": 1}}

    answer = {"fleets": [fleet("flt_a", "FedPer, deadline 30 s", 0.9), fleet("flt_b", None, 0.8)]}
    asked: list[Any] = []

    def compare(self: Api, method: str, path: str, **kwargs: Any) -> Any:
        asked.append((method, path, kwargs.get("params")))
        return answer

    monkeypatch.setattr(Api, "json", compare)
    wide = CliRunner().invoke(app, ["fleets", "compare", "flt_a", "flt_b", "--wide"],
                              env={"COLUMNS": "80"})
    assert wide.exit_code == 0, wide.output
    assert asked == [("GET", "/v1/fleets/compare", {"ids": "flt_a,flt_b"})]
    rows = {line.split("  ")[0]: re.split(r"\s{2,}", line.strip())
            for line in wide.stdout.splitlines()[1:3]}
    assert rows["FedPer, deadline 30 s"] == ["FedPer, deadline 30 s", "succeeded", "fedavg",
                                             "30.0 s", "1.3", "3", "57.1 s", "90.0%", "90.0%",
                                             "20.0 s", "30", "9", "1", "0.4"]
    assert rows["flt_b"][0] == "flt_b"
    assert re.search(r"^FedPer, deadline 30 s\s+flt_a$", wide.stdout, re.M)  # name -> id
    narrow = CliRunner().invoke(app, ["fleets", "compare", "flt_a", "flt_b"],
                                env={"COLUMNS": "60"})
    assert narrow.exit_code == 0 and max(map(len, narrow.stdout.splitlines()[:3])) <= 60
    assert "left out to fit 60 columns: energy kJ, dropped, stragglers" in narrow.stderr
