"""The dashboard in headless Chromium: the list, a running fleet's page that changes while
the fleet runs (no navigation), compare, the sign-in with keys on; screenshots not blank."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import LiveServer, running_server, upload
from tests.ui.browser import Browser, chromium, not_blank, wait_for
from tests.ui.support import digits_dataset, finish, small_fleet

ADMIN = "ui-browser-admin-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server running open, on the embedded backend (the pages are the same on both)."""
    with running_server("sqlite-local", tmp_path_factory.mktemp("ui-open"), None) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def setup(server: LiveServer, mlp_bytes: bytes) -> dict[str, str]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        model = upload(c, mlp_bytes, "mlp")
        data = digits_dataset(c, "ann")
        ids = [finish(c, small_fleet(c, "ann", model, data, name=n, **extra)["id"])["id"]
               for n, extra in (("plain", {}), ("per", {"personal": ["dense_2/"]}))]
    return {"model": model, "data": data, "a": ids[0], "b": ids[1]}


def assert_painted(png: bytes, share_at_least: float = 0.02) -> None:
    """Not a blank page: pixels vary, and enough of them differ from the background."""
    std, share = not_blank(png)
    assert std > 0.02 and share > share_at_least, (std, share)


def test_dashboard_lists_and_picks_fleets_in_chromium(
        server: LiveServer, browser: Browser, setup: dict[str, str], shots: Path) -> None:
    browser.open(f"{server.url}/ui")
    assert browser.js("document.querySelectorAll('tr[data-fleet]').length") == 2
    assert browser.js("document.getElementById('compare').disabled") is True
    browser.js("document.querySelectorAll('input[name=ids]').forEach(i => i.click())")
    assert browser.js("document.getElementById('compare').disabled") is False
    assert_painted(browser.screenshot(shots / "dashboard.png"))
    browser.js("document.getElementById('compare').click()")
    browser.wait("location.pathname === '/ui/compare' && document.readyState === 'complete'")
    text = browser.js("document.body.innerText")
    assert "Fleets compared" in text and "plain" in text and "FedPer over FedAvg" in text
    assert browser.js("document.querySelector('svg').getBoundingClientRect().width") > 1000
    assert_painted(browser.screenshot(shots / "compare.png"))


def test_running_fleets_page_changes_without_a_navigation(
        server: LiveServer, browser: Browser, setup: dict[str, str], shots: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        fleet = small_fleet(c, "ann", setup["model"], setup["data"], name="long", rounds=400)
        fid = fleet["id"]
        wait_for(lambda: c.get(f"/v1/fleets/{fid}").json()["progress"]["rounds_done"] >= 1,
                 300, "the fleet's first round")
        try:
            browser.open(f"{server.url}/ui/fleets/{fid}")
            browser.js("window.stayed = 'same document'")
            first = browser.js("document.querySelector('#live .status').innerText")
            assert browser.js("document.body.dataset.status") == "running", first
            changed = browser.wait(
                "document.querySelector('#live .status').innerText !== "
                f"{first!r} && document.querySelector('#live .status').innerText", 300)
            assert changed != first
            assert browser.js("window.stayed") == "same document"  # no reload, no navigation
            assert "long" in browser.js("document.querySelector('#live h1').innerText")
            assert browser.js("document.querySelectorAll('#live svg').length") >= 4
            assert_painted(browser.screenshot(shots / "fleet-running.png"))
        finally:
            c.post(f"/v1/fleets/{fid}/cancel")
        browser.wait("document.body.dataset.status === 'cancelled'", 300)
        assert browser.js("window.stayed") == "same document"


def test_finished_fleets_page_shows_the_report_in_chromium(
        server: LiveServer, browser: Browser, setup: dict[str, str], shots: Path) -> None:
    browser.open(f"{server.url}/ui/fleets/{setup['b']}")
    assert "FedPer over FedAvg" in browser.js("document.body.innerText")
    titles = browser.js("[...document.querySelectorAll('#live svg')].map(s => s.textContent)"
                        ".join(' ')")
    assert re.search(r"All \d devices that took part", titles), titles
    assert re.search(r"Round 3: its 3 devices", titles), titles
    widths = browser.js("[...document.querySelectorAll('#live svg')].map(s => "
                        "s.getBoundingClientRect().right)")
    assert max(widths) > 1200  # the report uses the window's width
    assert_painted(browser.screenshot(shots / "fleet-finished.png"))


def test_sign_in_with_keys_on_in_chromium(
        tmp_path_factory: pytest.TempPathFactory, browser: Browser, mlp_bytes: bytes,
        shots: Path) -> None:
    with running_server("sqlite-local", tmp_path_factory.mktemp("ui-keys"), None,
                        admin_token=ADMIN) as keyed, httpx.Client(
            base_url=keyed.url, timeout=60, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        fid = small_fleet(c, "bob", upload(c, mlp_bytes, "mlp"), digits_dataset(c, "bob"),
                          name="bob's fleet")["id"]
        finish(c, fid)
        key = c.post("/v1/users/bob/keys").json()["key"]
        browser.open(f"{keyed.url}/ui/fleets/{fid}")
        assert browser.js("!!document.querySelector('form.signin')")
        assert_painted(browser.screenshot(shots / "sign-in.png"), 0.003)  # a form: little ink
        browser.js(f"document.getElementById('key').value = {key!r}; "
                   "document.getElementById('signin').click()")
        browser.wait(f"location.pathname === '/ui/fleets/{fid}' && "
                     "!!document.querySelector('#live h1')")
        assert "bob's fleet" in browser.js("document.querySelector('#live h1').innerText")
        assert key not in browser.js("location.href")
        assert "fleetlite_session" not in browser.js("document.cookie")  # HttpOnly
        status = browser.js(f"fetch('/v1/fleets/{fid}').then(r => r.status)")
        assert status == 200  # the cookie reaches the fleet's GETs
        assert browser.js(f"fetch('/v1/fleets/{fid}', {{method: 'DELETE'}})"
                          ".then(r => r.status)") == 401
        browser.open(f"{keyed.url}/ui")
        browser.js("document.getElementById('signout').click()")
        browser.wait("!!document.querySelector('form.signin')")
        assert browser.js(f"fetch('/v1/fleets/{fid}').then(r => r.status)") == 401
