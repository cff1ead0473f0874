"""Following long work on the server (jobs, fleets) live: its event stream (Server-Sent
Events) read to the end and reconnected when cut off, a progress bar, Ctrl-C, the final exit.

Each kind of work is a noun whose routes are `/v1/{noun}s/{id}`, `.../events` and
`.../cancel`, and whose command group is `{noun}s`.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, NoReturn, Protocol

import httpx
import typer
from httpx_sse import EventSource
from rich.progress import Progress

from app.cli.api import Api, fail, seg
from app.cli.output import err_console, fields, show
from app.cli.state import api, hint

ACTIVE = ("queued", "running")
RECONNECTS = 5
INTERRUPTED = 130


class Bar(Protocol):
    """A live display that follows the states of one piece of work."""

    progress: Progress

    def update(self, state: dict[str, Any]) -> None:
        """Show this state."""


def path(noun: str, item_id: str) -> str:
    """`/v1/jobs/job_1`."""
    return f"/v1/{noun}s/{seg(item_id)}"


def updates(client: Api, noun: str, item_id: str, lost: str) -> Iterator[dict[str, Any]]:
    """The work's states from its event stream, the final one last; reconnects if cut off.

    lost is the command to suggest if the stream cannot be had back.
    """
    failures = 0
    while True:
        try:
            with client.stream("GET", f"{path(noun, item_id)}/events",
                               headers={"Accept": "text/event-stream"}) as response:
                for event in EventSource(response).iter_sse():
                    if not event.data:
                        continue
                    failures = 0
                    yield event.json()
                    if event.event == "end":
                        return
        except httpx.TransportError:
            pass  # the stream broke mid-way (httpx_sse's SSEError is one): look, reconnect
        item = client.json("GET", path(noun, item_id))
        if item["status"] not in ACTIVE:
            yield item
            return
        failures += 1
        if failures > RECONNECTS:
            fail(f"lost the event stream of {noun} {item_id}, which is still {item['status']}; "
                 f"look at it with `{lost}`")
        time.sleep(min(2.0**failures, 10.0))


@contextmanager
def ctrl_c() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt inside, whatever the parent did: a process started in
    the background from a non-interactive shell inherits SIGINT ignored, and Python then
    installs no handler of its own. The previous handler is put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (and only it receives signals)
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def following(noun: str, item_id: str, then: str) -> None:
    """Say on stderr that the command now follows the work and what Ctrl-C does (said once
    Ctrl-C is handled, so a script may wait for this line before sending it)."""
    err_console().print(f"following {noun} {item_id} ({then})", markup=False)


def follow(ctx: typer.Context, noun: str, item: dict[str, Any],
           make_bar: Callable[[dict[str, Any]], Bar]) -> dict[str, Any]:
    """Follow the work to its end, with a live bar unless --json; its final state."""
    final = item
    bar = None if ctx.obj.as_json else make_bar(item)
    lost = hint(ctx, f"{noun}s", "show", item["id"])
    with bar.progress if bar else nullcontext():
        for final in updates(api(ctx), noun, item["id"], lost):
            if bar:
                bar.update(final)
    return final


def cancel_after_interrupt(client: Api, noun: str, item_id: str, stops: str) -> NoReturn:
    """Ctrl-C while following what this command started: ask the server to cancel it, then
    exit 130. stops says when it stops, e.g. `after its current step`."""
    err = err_console()
    err.print(f"interrupted: asking the server to cancel {noun} {item_id}", markup=False)
    try:
        item = client.json("POST", f"{path(noun, item_id)}/cancel", timeout=10)
        err.print(f"{noun} {item_id} is {item['status']}; it stops {stops}"
                  if item["status"] in ACTIVE else f"{noun} {item_id} had already ended: "
                  f"{item['status']}", markup=False)
    except (typer.Exit, KeyboardInterrupt):
        pass  # the error, if any, is printed; exit anyway
    raise typer.Exit(INTERRUPTED)


def run_to_end(ctx: typer.Context, noun: str, item: dict[str, Any],
               make_bar: Callable[[dict[str, Any]], Bar], stops: str) -> dict[str, Any]:
    """Follow what this command just started; Ctrl-C cancels it on the server (exit 130)."""
    with ctrl_c():
        try:
            following(noun, item["id"], "Ctrl-C cancels it")
            return follow(ctx, noun, item, make_bar)
        except KeyboardInterrupt:
            pass
    cancel_after_interrupt(api(ctx), noun, item["id"], stops)


def follow_existing(ctx: typer.Context, noun: str, item_id: str,
                    make_bar: Callable[[dict[str, Any]], Bar]) -> dict[str, Any]:
    """`{noun}s follow`: follow to its end; Ctrl-C stops following and leaves it running."""
    with ctrl_c():
        try:
            item = api(ctx).json("GET", path(noun, item_id))
            following(noun, item_id, f"Ctrl-C stops following, the {noun} goes on")
            return follow(ctx, noun, item, make_bar)
        except KeyboardInterrupt:
            pass
    err_console().print(f"stopped following; {noun} {item_id} goes on "
                        f"({hint(ctx, f'{noun}s', 'cancel', item_id)} stops it)",
                        markup=False)
    raise typer.Exit(INTERRUPTED)


def show_started(ctx: typer.Context, noun: str, item: dict[str, Any]) -> None:
    """What --detach prints: the id, the status, and how to follow or cancel it."""
    show(ctx, item, lambda i: fields([
        (noun, i["id"]), ("status", i["status"]),
        ("follow", hint(ctx, f"{noun}s", "follow", i["id"])),
        ("cancel", hint(ctx, f"{noun}s", "cancel", i["id"]))]))


def show_final(ctx: typer.Context, item: dict[str, Any],
               render: Callable[[dict[str, Any]], None]) -> NoReturn:
    """Print finished work and exit 0 if it succeeded, 1 if not."""
    show(ctx, item, render)
    raise typer.Exit(0 if item["status"] == "succeeded" else 1)


def show_cancelled(ctx: typer.Context, noun: str, item: dict[str, Any]) -> None:
    """What `{noun}s cancel` prints."""
    show(ctx, item, lambda i: fields([(noun, i["id"]), ("status", i["status"])]))
