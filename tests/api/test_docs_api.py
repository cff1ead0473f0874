"""The API's documentation: Swagger UI and ReDoc from the service's own assets, rendered by a real
headless Chromium with no network but loopback, and an OpenAPI schema written for people."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from tests.helpers import LiveServer, running_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Every host name but 127.0.0.1 fails to resolve and any other address goes to a closed proxy
# port: the pages can reach nothing beyond the test server.
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
           "--proxy-server=http://127.0.0.1:9"]
HEALTH = {"/healthz", "/readyz", "/metrics"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server running open, on the embedded backend."""
    with running_server("sqlite-local", tmp_path_factory.mktemp("docs"), None) as live:
        yield live


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in spec["paths"].items()
            for method, op in item.items()]


def chromium(*args: str) -> str:
    """Run Debian's Chromium headless (never a downloaded browser); its stdout."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (.ci/run does)")
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             f"--user-data-dir={profile}", *OFFLINE, *args],
            capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def rendered(url: str) -> str:
    """The DOM after the page's scripts have run (up to 30 s of virtual time)."""
    return chromium("--virtual-time-budget=30000", "--dump-dom", url)


class Assets(HTMLParser):
    """Every script, stylesheet and icon address of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href"}.get(tag)
        self.urls += [value for name, value in attrs if value and name == wanted]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_doc_pages_load_only_the_services_own_assets(server: LiveServer, page: str) -> None:
    r = httpx.get(server.url + page, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    parser = Assets()
    parser.feed(r.text)
    assert len(parser.urls) >= 2, r.text
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = httpx.get(server.url + url, timeout=30)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert not re.search(r"https?://(?!127\.0\.0\.1)", r.text.split("<script>")[0]), r.text


def test_swagger_ui_renders_every_operation_in_headless_chromium(server: LiveServer) -> None:
    spec = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    dom = rendered(f"{server.url}/docs")
    shown = set(re.findall(r'class="opblock opblock-(\w+)[^"]*".*?data-path="([^"]+)"', dom,
                           re.S))
    expected = {(m.lower(), p) for m, p, _ in operations(spec)}
    assert expected <= shown, sorted(expected - shown)
    summaries = re.findall(r'class="opblock-summary-description"[^>]*>([^<]*)<', dom)
    assert sorted(summaries) == sorted(op["summary"] for _, _, op in operations(spec))
    assert "Authorize" not in dom  # the server runs open: no lock, no Authorize button


def test_redoc_renders_every_operation_in_headless_chromium(server: LiveServer) -> None:
    spec = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    dom = rendered(f"{server.url}/redoc")
    for method, path, op in operations(spec):
        assert f'data-section-id="operation/{op["operationId"]}"' in dom, (method, path)
        assert op["summary"] in dom, (method, path)


def test_swagger_ui_screenshot_is_not_blank(server: LiveServer, tmp_path: Path) -> None:
    png = tmp_path / "docs.png"
    chromium("--virtual-time-budget=30000", "--window-size=1280,1600", "--hide-scrollbars",
             f"--screenshot={png}", f"{server.url}/docs")
    assert png.stat().st_size > 50_000  # a white page is a few kB


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(Settings()).openapi()


@pytest.fixture(scope="module")
def keyed_spec() -> dict[str, Any]:
    return create_app(Settings(admin_token="admin-token")).openapi()  # type: ignore[call-arg]


def test_every_operation_has_a_written_summary_and_description(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        generated = op["operationId"].split("_v1_")[0].replace("_", " ").title()
        assert op.get("summary") and op["summary"] != generated, (method, path, op.get("summary"))
        assert len(op.get("description", "")) >= 25, (method, path)


def test_every_schema_and_json_body_has_an_example(spec: dict[str, Any]) -> None:
    for name, schema in spec["components"]["schemas"].items():
        props = schema.get("properties", {})
        assert "examples" in schema or all(
            "examples" in p or p.get("format") == "binary" for p in props.values()), name
    for method, path, op in operations(spec):
        content = op.get("requestBody", {}).get("content", {})
        for media, body in content.items():
            ref = body["schema"].get("$ref") or next(
                (s["$ref"] for s in body["schema"].get("anyOf", []) if "$ref" in s), "")
            named = spec["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
            assert body.get("examples") or "examples" in named or media.startswith(
                "multipart"), (method, path)
        for code, response in op["responses"].items():
            for media, body in response.get("content", {}).items():
                if media == "application/json" and code.startswith("2"):
                    ref = body.get("schema", {}).get("$ref", "")
                    named = spec["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
                    assert "example" in body or "examples" in named, (method, path, code)


def test_examples_are_small(spec: dict[str, Any]) -> None:
    """A batch of two, not a 28x28 block of zeros."""
    for name, schema in spec["components"]["schemas"].items():
        assert len(str(schema.get("examples", ""))) < 2500, name
    train = spec["paths"]["/v1/sessions/{session_id}/train"]["post"]["requestBody"]
    (example,) = train["content"]["application/json"]["examples"].values()
    assert len(example["value"]["inputs"]["x"]) == 2


def test_uploads_are_shown_as_files(spec: dict[str, Any]) -> None:
    for path in ("/v1/models", "/v1/users/{user_id}/datasets"):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        form = spec["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[-1]]
        assert form["properties"]["file"]["format"] == "binary", path
        assert "file" in form["required"]


def test_security_is_declared_only_when_keys_are_on(spec: dict[str, Any],
                                                    keyed_spec: dict[str, Any]) -> None:
    assert "securitySchemes" not in spec["components"]
    assert not [path for _, path, op in operations(spec) if "security" in op]
    assert "runs open" in spec["info"]["description"]
    assert keyed_spec["components"]["securitySchemes"]["key"]["scheme"] == "bearer"
    for method, path, op in operations(keyed_spec):
        assert ("security" in op) == (path not in HEALTH), (method, path)
    assert "Authorize" in keyed_spec["info"]["description"]


def test_limits_the_server_enforces_are_in_the_schema() -> None:
    spec = create_app(Settings(max_batch_size=64)).openapi()
    job = spec["components"]["schemas"]["JobCreate"]["properties"]
    assert job["batch_size"]["maximum"] == 64
    seed = next(s for s in job["seed"]["anyOf"] if s.get("type") == "integer")
    assert seed["maximum"] == 2**53 - 1  # exact in every JSON parser, JavaScript's too


def test_method_not_allowed_lists_every_method_of_the_path(server: LiveServer) -> None:
    r = httpx.request("OPTIONS", f"{server.url}/v1/datasets/ds_x", timeout=30)
    assert r.status_code == 405
    assert r.headers["allow"] == "DELETE, GET"
    r = httpx.put(f"{server.url}/v1/models", timeout=30)
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    assert r.headers["content-type"].startswith("application/problem+json")
