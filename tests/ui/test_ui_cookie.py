"""Sign-in with keys on (both backends): a key becomes an HttpOnly, SameSite=Strict session
cookie that reaches only the pages and the fleet GETs; revoking the key or signing out ends
it; another user's fleet is a 404 in the pages as in the API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.helpers import LiveServer, assert_problem, running_server, upload
from tests.ui.support import digits_dataset, finish, small_fleet

ADMIN = "ui-admin-token-0123456789"


@pytest.fixture(scope="module", params=["sqlite-local", "postgres-s3"])
def keyed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          s3_endpoint: str) -> Iterator[LiveServer]:
    with running_server(request.param, tmp_path_factory.mktemp("ui-keys"), s3_endpoint,
                        admin_token=ADMIN) as live:
        yield live


@pytest.fixture(scope="module")
def admin(keyed: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed.url, timeout=60,
                      headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        yield c


@pytest.fixture(scope="module")
def fleets(admin: httpx.Client, mlp_bytes: bytes) -> dict[str, str]:
    """One finished fleet of ann's and one of bob's."""
    model = upload(admin, mlp_bytes, "mlp")
    out = {}
    for user in ("ann", "bob"):
        fleet = small_fleet(admin, user, model, digits_dataset(admin, user), name=f"{user}'s")
        out[user] = finish(admin, fleet["id"])["id"]
    return out


def new_key(admin: httpx.Client, user: str) -> dict[str, Any]:
    r = admin.post(f"/v1/users/{user}/keys")
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


@contextmanager
def signed_in(server: LiveServer, key: str) -> Iterator[httpx.Client]:
    """A browser-like client (no bearer header) after signing in with the key."""
    with httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.post("/ui/signin", data={"key": key, "next": "/ui"})
        assert r.status_code == 303 and r.headers["location"] == "/ui", r.text
        yield c


def test_get_dashboard_without_a_session_shows_the_sign_in_form(keyed: LiveServer) -> None:
    r = httpx.get(f"{keyed.url}/ui", timeout=60)
    assert r.status_code == 401 and "<form class=\"signin\" method=\"post\"" in r.text
    assert "type=\"password\"" in r.text


def test_sign_in_sets_an_httponly_samesite_strict_cookie(
        keyed: LiveServer, admin: httpx.Client) -> None:
    key = new_key(admin, "ann")["key"]
    r = httpx.post(f"{keyed.url}/ui/signin", data={"key": key}, timeout=60)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("fleetlite_session=")
    flags = {f.strip().lower() for f in cookie.split(";")}
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert key not in cookie and key not in r.headers["location"]


def test_sign_in_with_a_wrong_key_is_401_without_a_cookie(keyed: LiveServer) -> None:
    r = httpx.post(f"{keyed.url}/ui/signin", data={"key": "flk_abcdefgh_" + "x" * 40},
                   timeout=60)
    assert r.status_code == 401 and "not valid" in r.text and "set-cookie" not in r.headers


def test_cookie_reaches_the_pages_and_the_fleet_gets(
        keyed: LiveServer, admin: httpx.Client, fleets: dict[str, str]) -> None:
    with signed_in(keyed, new_key(admin, "ann")["key"]) as ann:
        page = ann.get("/ui")
        assert page.status_code == 200 and "ann&#x27;s" in page.text
        assert "bob&#x27;s" not in page.text  # only her own fleets
        fid = fleets["ann"]
        assert ann.get(f"/ui/fleets/{fid}").status_code == 200
        for path in ("", "/rounds", "/clients", "/clients/0", "/report", "/report.html",
                     "/events"):
            assert ann.get(f"/v1/fleets/{fid}{path}").status_code == 200, path
        assert ann.get("/v1/users/ann/fleets").status_code == 200


def test_cookie_does_not_authorize_writes_or_other_routes(
        keyed: LiveServer, admin: httpx.Client, fleets: dict[str, str]) -> None:
    with signed_in(keyed, new_key(admin, "ann")["key"]) as ann:
        fid = fleets["ann"]
        assert_problem(ann.post(f"/v1/fleets/{fid}/cancel"), 401)
        assert_problem(ann.delete(f"/v1/fleets/{fid}"), 401)
        assert_problem(ann.post("/v1/users/ann/keys"), 401)
        assert_problem(ann.get("/v1/users/ann/keys"), 401)
        assert_problem(ann.get("/v1/models"), 401)
        assert ann.get(f"/v1/fleets/{fid}").status_code == 200  # still signed in


def test_get_another_users_fleet_with_a_cookie_is_404(
        keyed: LiveServer, admin: httpx.Client, fleets: dict[str, str]) -> None:
    with signed_in(keyed, new_key(admin, "ann")["key"]) as ann:
        bobs = fleets["bob"]
        assert_problem(ann.get(f"/ui/fleets/{bobs}"), 404, bobs)
        assert_problem(ann.get(f"/ui/fleets/{bobs}/live"), 404, bobs)
        assert_problem(ann.get(f"/v1/fleets/{bobs}"), 404, bobs)
        assert_problem(ann.get(f"/v1/fleets/{bobs}/events"), 404, bobs)
        assert_problem(ann.get("/ui/compare", params={"ids": f"{fleets['ann']},{bobs}"}), 404)


def test_revoking_the_key_ends_the_cookies_session(
        keyed: LiveServer, admin: httpx.Client, fleets: dict[str, str]) -> None:
    made = new_key(admin, "ann")
    with signed_in(keyed, made["key"]) as ann:
        assert ann.get(f"/v1/fleets/{fleets['ann']}").status_code == 200
        assert admin.delete(f"/v1/users/ann/keys/{made['id']}").status_code == 204
        assert_problem(ann.get(f"/v1/fleets/{fleets['ann']}"), 401)
        assert ann.get("/ui").status_code == 401  # the sign-in form again


def test_signing_out_ends_the_session_even_for_a_kept_cookie(
        keyed: LiveServer, admin: httpx.Client, fleets: dict[str, str]) -> None:
    with signed_in(keyed, new_key(admin, "ann")["key"]) as ann:
        kept = dict(ann.cookies)
        r = ann.post("/ui/signout")
        assert r.status_code == 303 and "fleetlite_session=\"\"" in r.headers["set-cookie"]
        with httpx.Client(base_url=keyed.url, cookies=kept, timeout=60) as replay:
            assert_problem(replay.get(f"/v1/fleets/{fleets['ann']}"), 401)
            assert replay.get("/ui").status_code == 401


def test_admin_token_signs_in_to_everyones_fleets(
        keyed: LiveServer, fleets: dict[str, str]) -> None:
    with signed_in(keyed, ADMIN) as c:
        page = c.get("/ui").text
        assert fleets["ann"] in page and fleets["bob"] in page and "(admin)" in page


def test_bearer_header_still_works_and_a_bad_one_is_not_rescued_by_a_cookie(
        keyed: LiveServer, admin: httpx.Client, fleets: dict[str, str]) -> None:
    with signed_in(keyed, new_key(admin, "ann")["key"]) as ann:
        r = ann.get(f"/v1/fleets/{fleets['ann']}", headers={"Authorization": "Bearer nope"})
        assert_problem(r, 401)
    assert admin.get(f"/v1/fleets/{fleets['bob']}").status_code == 200
