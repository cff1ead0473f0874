"""The dashboard's pages (GET /ui...): the fleets list, one fleet live, compare, sign-in.
One template a page (app/ui/templates, string.Template), every value escaped here; the
assets come from app/ui/static, so the pages read offline."""

from __future__ import annotations

from html import escape
from importlib import resources
from string import Template
from typing import Any

from app.errors import NotFound
from app.services import charts
from app.services import fleet as fleets
from app.services.context import Context
from app.services.fleet import comparison, page, ui
from app.services.fleet.crud import FleetView
from app.services.keyring import Principal
from app.services.workers import ACTIVE

STATIC = resources.files("app.ui") / "static"
ASSETS = {"ui.css": "text/css", "dashboard.js": "text/javascript",
          "fleet.js": "text/javascript"}
PER_PAGE = 50


def _template(name: str) -> Template:
    return Template((resources.files("app.ui") / "templates" / name).read_text())


def asset(name: str) -> tuple[bytes, str]:
    """A static file of the pages and its media type (404 for any other name)."""
    if name not in ASSETS:
        raise NotFound(f"asset '{name}' not found")
    return (STATIC / name).read_bytes(), ASSETS[name]


def _header(who: Principal, keys_on: bool) -> str:
    user = "admin" if who.admin else escape(who.user_id or "")
    out = ("<header class='bar'><a href='/ui'><b>fleetlite</b></a><a href='/ui'>fleets</a>"
           "<a href='/docs'>API</a>")
    if keys_on:
        out += (f"<form method='post' action='/ui/signout'>signed in as {user} "
                "<button type='submit' id='signout'>Sign out</button></form>")
    return out + "</header>"


def _owned(ctx: Context, who: Principal, fleet_id: str) -> FleetView:
    view = fleets.get(ctx, fleet_id=fleet_id)
    if not who.may_see(view.user_id):
        raise NotFound(f"fleet '{fleet_id}' not found")
    return view


def dashboard(ctx: Context, who: Principal, *, keys_on: bool, cursor: str | None) -> str:
    """The caller's fleets (the admin's: everyone's), newest first, PER_PAGE a page."""
    found = fleets.get_all(ctx, user_id=None if who.admin else who.user_id, limit=PER_PAGE,
                           cursor=cursor)
    rows = "\n".join(_row(v, who.admin) for v in found.items) or (
        "<tr><td colspan='9' class='text'>No fleets yet: POST /v1/users/{user}/fleets starts "
        "one.</td></tr>")
    more = (f"<p><a href='/ui?cursor={escape(found.next_cursor)}'>older fleets</a></p>"
            if found.next_cursor else "")
    scope = ("Everyone's fleets (admin)." if who.admin
             else f"The fleets of {escape(who.user_id or '')}.")
    return _template("dashboard.html").substitute(
        header=_header(who, keys_on), rows=rows, more=more, scope=scope)


def _row(v: FleetView, admin: bool) -> str:
    p, spec = v.progress, v.spec
    share = p["rounds_done"] / p["rounds"] if p["rounds"] else 0.0
    last = v.last_round or {}
    accuracy = last.get("global_accuracy")
    if accuracy is None:
        accuracy = last.get("client_accuracy_mean")
    acc = "&ndash;" if accuracy is None else f"{100 * accuracy:.1f}%"
    if v.status in ACTIVE and accuracy is not None:
        acc += " (so far)"
    name = ui.name_of(spec, v.id)
    owner = f" <span class='note'>({escape(v.user_id)})</span>" if admin else ""
    seconds = last.get("virtual_end_s")
    return (f"<tr data-fleet='{escape(v.id)}' data-status='{escape(v.status)}'>"
            f"<td class='text'><input type='checkbox' name='ids' value='{escape(v.id)}' "
            f"aria-label='compare {escape(name)}'></td>"
            f"<td class='text'><a href='/ui/fleets/{escape(v.id)}'>{escape(name)}</a>{owner}</td>"
            f"<td class='text'><span class='badge {escape(v.status)}'>{escape(v.status)}</span>"
            f"</td><td class='text'>{escape(ui.strategy(spec))}</td>"
            f"<td class='text'>{escape('; '.join(ui.traits(spec)) or 'plain')}</td>"
            f"<td class='progress'><span class='bar-progress'><span style='width:"
            f"{100 * share:.1f}%'></span></span> {p['rounds_done']} of {p['rounds']} rounds</td>"
            f"<td class='accuracy'>{acc}</td>"
            f"<td>{charts.duration(seconds) if seconds is not None else '&ndash;'}</td>"
            f"<td class='text'>{v.created_at:%Y-%m-%d %H:%M}</td></tr>")


def fleet_page(ctx: Context, who: Principal, *, fleet_id: str, keys_on: bool,
               devices_from: int = 0) -> str:
    """One fleet: the report's content, kept current by fleet.js while it runs."""
    view = _owned(ctx, who, fleet_id)
    p = view.progress
    progress = (f"{view.status}: round {p['round']} of {p['rounds']}, {p['rounds_done']} "
                f"rounds finished" if view.status in ACTIVE else
                f"{view.status}: {p['rounds_done']} of {p['rounds']} rounds")
    return _template("fleet.html").substitute(
        header=_header(who, keys_on), title=escape(ui.name_of(view.spec, view.id)),
        fleet_id=escape(view.id), status=escape(view.status), devices_from=devices_from,
        rounds_done=p["rounds_done"], progress=escape(progress),
        content=page.content(ctx, fleet_id=fleet_id, devices_from=devices_from))


def live(ctx: Context, who: Principal, *, fleet_id: str, devices_from: int = 0) -> str:
    """The part of a fleet's page that each finished round redraws."""
    _owned(ctx, who, fleet_id)
    return page.content(ctx, fleet_id=fleet_id, devices_from=devices_from)


def compare_page(ctx: Context, who: Principal, *, ids: list[str], keys_on: bool) -> str:
    """compare.html's content with the dashboard's header (404 for a fleet not the caller's)."""
    data: dict[str, Any] = fleets.compare(ctx, who, ids)
    return _template("compare.html").substitute(header=_header(who, keys_on),
                                                content=comparison.content(data))


def sign_in_page(next_path: str, error: str | None = None) -> str:
    """The sign-in form; `next_path` is where a valid key leads."""
    return _template("signin.html").substitute(
        next=escape(safe_next(next_path)),
        error=f"<p class='error' id='error'>{escape(error)}</p>" if error else "")


def safe_next(path: str | None) -> str:
    """Only a page of this service (never another site) may follow a sign-in."""
    if path and path.startswith("/ui") and not path.startswith("//") and "\\" not in path:
        return path
    return "/ui"
