"""Bearer authentication and the ownership rule: another user's object is a 404."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from app.api.deps import get_fleet
from app.errors import FleetliteError, NotFound
from app.services import keys
from app.services.fleet import Fleet
from app.services.keyring import ADMIN, Principal

bearer = HTTPBearer(auto_error=False, scheme_name="key",
                    description="The admin token or a user's key (when FLEETLITE_ADMIN_TOKEN "
                                "is set)")


class Unauthorized(FleetliteError):
    """No key, or a key that is not (or no longer) valid."""

    status, type_slug = 401, "unauthorized"


class Forbidden(FleetliteError):
    """A valid user key asking for an admin-only operation."""

    status, type_slug = 403, "forbidden"


async def principal(request: Request,
                    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
                    ) -> Principal:
    """Who is calling; 401 unless the token stands for someone."""
    fleet: Fleet = get_fleet(request)
    if fleet.settings.admin_token is None:
        return ADMIN
    token = creds.credentials if creds else None
    prefix = keys.key_prefix(token) if token else None
    if prefix is not None and fleet.keys.get(prefix) is None:
        found = await run_in_threadpool(keys.authenticate, fleet, token)  # first use: a DB read
    else:
        found = keys.authenticate(fleet, token)
    if found is None:
        raise Unauthorized("a valid key is required: Authorization: Bearer <key>",
                           headers={"WWW-Authenticate": "Bearer"})
    return found


PrincipalDep = Annotated[Principal, Depends(principal)]


def require_admin(who: Principal) -> None:
    """403 unless the caller is the admin."""
    if not who.admin:
        raise Forbidden("only the admin token may do this")


def check_user(who: Principal, user_id: str) -> None:
    """404 for another user's path, as if the user did not exist."""
    if not who.may_see(user_id):
        raise NotFound(f"user '{user_id}' not found")


def check_owner(who: Principal, owner: str, kind: str, object_id: str) -> None:
    """404 for another user's object, exactly as for an id that does not exist."""
    if not who.may_see(owner):
        raise NotFound(f"{kind} '{object_id}' not found")
