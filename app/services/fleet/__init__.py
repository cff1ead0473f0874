"""Fleets: federated rounds over a simulated population of devices, as one package.

Data flows one way: spec -> plan (build.py, once, frozen: plan.py) -> rounds (run.py and
rounds.py on the executor, updates.py, commit.py and write.py) -> record (record.py,
report.py) -> views (page.py, compare.py). Nothing below the record is read to answer a
GET. The verbs the API calls are re-exported here."""

from __future__ import annotations

from app.services.context import Context
from app.services.fleet import comparison as _compare
from app.services.fleet import page as _page
from app.services.fleet.crud import (
    FleetView,
    cancel,
    create,
    delete,
    get,
    get_all,
    live_view,
    resume_all,
)
from app.services.fleet.devices import catalogue
from app.services.fleet.record import client, clients, plan_of, report, rounds
from app.services.fleet.rows import get_row
from app.services.fleet.run import drive
from app.services.fleet.schedule import FairWorkers

compare = _compare.compare
compare_page = _compare.page
report_page = _page.render

__all__ = ["FleetView", "cancel", "catalogue", "client", "clients", "compare", "compare_page",
           "create", "delete", "fleet_workers", "get", "get_all", "get_row", "live_view",
           "plan_of", "report", "report_page", "resume_all", "rounds"]


def fleet_workers(ctx: Context, workers: int) -> FairWorkers:
    """The threads that drive fleets, a round at a time, the users' fleets in turn."""
    return FairWorkers(workers, lambda state: drive(ctx, state),
                       lambda fleet_id: get_row(ctx, fleet_id=fleet_id).user_id)
