"""Helpers of the command line tests: run `fleetlite` in-process against a live server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner, Result

from app.cli import app
from tests.helpers import LiveServer

USER = "cli-user"
ROOT = Path(__file__).resolve().parents[2]


def cli(server: LiveServer, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run `fleetlite --url <server> args...` in-process."""
    return CliRunner().invoke(app, ["--url", server.url, *args], env=env)


def ok(result: Result) -> Result:
    """Assert exit code 0 and return the result."""
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result


def field(text: str, key: str) -> str:
    """The value of a `key   value` line of the human output."""
    found = re.search(rf"^{re.escape(key)}\s+(\S+)", text, re.M)
    assert found, (key, text)
    return found.group(1)


def spawn(server: LiveServer, *args: str) -> subprocess.Popen[str]:
    """`python -m app.cli --url <server> args...` in a child process that starts with SIGINT
    ignored, as a script's `fleetlite ... &` does (a shell's `trap '' INT` is inherited through
    exec; a preexec_fn could deadlock the fork of this threaded process). The CLI must still
    honour Ctrl-C."""
    return subprocess.Popen(["sh", "-c", 'trap "" INT; exec "$0" "$@"', sys.executable, "-m",
                             "app.cli", "--url", server.url, *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def until_following(child: subprocess.Popen[str]) -> str:
    """Read the child's stderr up to its `following ...` line (printed once Ctrl-C is
    handled); what was read. Fails if the child ends without it."""
    assert child.stderr
    read = []
    while line := child.stderr.readline():
        read.append(line)
        if line.startswith("following "):
            return "".join(read)
    raise AssertionError(f"the CLI ended without saying it follows: {''.join(read)}")


def when_running(client: httpx.Client, noun: str, started: Callable[[dict[str, Any]], bool],
                 action: Callable[[dict[str, Any]], object]) -> threading.Thread:
    """A thread that calls action(item) once USER has a running job or fleet (noun) that
    has started(item)."""
    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = [i for i in client.get(f"/v1/users/{USER}/{noun}s").json()["items"]
                       if i["status"] == "running" and started(i)]
            if running:
                action(running[0])
                return
            time.sleep(0.05)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def ctrl_c_cancels(server: LiveServer, client: httpx.Client, noun: str,
                   started: Callable[[dict[str, Any]], bool], *args: str
                   ) -> tuple[dict[str, Any], str]:
    """Run `fleetlite args` in a child, press Ctrl-C once the job or fleet (noun) it started
    runs; assert the child exits 130 and the work ends cancelled. (The work, the stderr.)"""
    child = spawn(server, *args)
    seen: list[dict[str, Any]] = []
    when_running(client, noun, started, seen.append).join()
    if not seen:
        child.kill()
        raise AssertionError(f"the {noun} never ran: {child.communicate()}")
    said = until_following(child)
    child.send_signal(signal.SIGINT)
    _, rest = child.communicate(timeout=60)
    err = said + rest
    assert child.returncode == 130, err
    assert f"cancel {noun} {seen[0]['id']}" in err and "Traceback" not in err, err
    deadline = time.monotonic() + 60
    while (status := client.get(f"/v1/{noun}s/{seen[0]['id']}").json()["status"]) != "cancelled":
        assert status == "running" and time.monotonic() < deadline, status
        time.sleep(0.05)
    return seen[0], err
