"""Parts of the command line that need no server: help, tables, colours, hints, the SSE reader."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from rich.color import ColorSystem
from rich.console import Console
from typer.testing import CliRunner

from app.cli import app
from app.cli.api import Api
from app.cli.follow import updates
from app.cli.jobs import ProgressBar, epoch_rows
from app.cli.output import table
from app.cli.state import State, hint

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


def test_tables_never_cut_a_word_and_fall_back_to_blocks(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [f"ckpt_01a22cc{i:015x}" for i in range(3)]
    rows = [(i, "ses_01a22d3ad3449e4bf551bf", f"from job_01a22d3ad95e003552740d {n}", "2 KiB")
            for n, i in enumerate(ids)]
    for columns, blocks in ((120, False), (90, False), (80, True)):
        monkeypatch.setenv("COLUMNS", str(columns))
        table(("id", "session", "label", "size"), rows)
        out = capsys.readouterr().out
        assert all(i in out for i in ids) and "job_01a22d3ad95e003552740d" in out, out
        assert max(map(len, out.splitlines())) <= columns
        assert out.startswith("id             ckpt_") is blocks, out
    table(("id",), [])
    assert capsys.readouterr().out == "(none)\n"


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
