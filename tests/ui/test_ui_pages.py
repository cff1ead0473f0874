"""The dashboard's pages over HTTP (open mode, both backends): names, what each fleet ran,
durations in their unit, compare by name, assets from the package."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.helpers import assert_problem
from tests.ui.support import digits_dataset, finish, small_fleet


@pytest.fixture(scope="module")
def two(client: httpx.Client, mlp_id: str) -> list[dict[str, Any]]:
    """A FedAvg and a FedPer fleet of one user, both finished."""
    data = digits_dataset(client, "ann")
    plain = small_fleet(client, "ann", mlp_id, data, name="plain <avg>")
    per = small_fleet(client, "ann", mlp_id, data, name="fedper", personal=["dense_2/"],
                      finetune_epochs=1, round_deadline_s=40.0, over_commit=1.5)
    return [finish(client, plain["id"]), finish(client, per["id"])]


def test_get_dashboard_lists_fleets_by_name_with_what_sets_them_apart(
        client: httpx.Client, two: list[dict[str, Any]]) -> None:
    r = client.get("/ui")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "plain &lt;avg&gt;" in page and "<avg>" not in page  # escaped
    row = page[page.index(f"data-fleet='{two[1]['id']}'"):]
    row = row[:row.index("</tr>")]
    assert "fedper" in row and "FedPer over FedAvg" in row
    for trait in ("personal dense_2/", "fine-tune 1", "deadline 40 s", "over-commit 1.5x"):
        assert trait in row, row
    assert "3 of 3 rounds" in row and re.search(r"\d+\.\d%", row)
    assert page.count("name='ids'") >= 2


def test_get_fleet_page_says_what_it_ran_in_the_right_units(
        client: httpx.Client, two: list[dict[str, Any]]) -> None:
    r = client.get(f"/ui/fleets/{two[1]['id']}")
    assert r.status_code == 200
    page = r.text
    assert "<h1>fedper</h1>" in page and "FedPer over FedAvg" in page
    assert "40 s" in page and "1.5x" in page and "1 epochs" in page
    assert " h</td>" not in page and "0.00 h" not in page
    assert re.search(r"virtual time \((s|min)\)", page)  # the charts' axes too
    assert "All 6 devices that took part" in page or "devices that took part" in page
    assert "src=\"/ui/static/fleet.js\"" in page


def test_get_report_page_names_the_fleet_and_its_strategy(
        client: httpx.Client, two: list[dict[str, Any]]) -> None:
    page = client.get(f"/v1/fleets/{two[1]['id']}/report.html").text
    assert "<h1>fedper</h1>" in page and "FedPer over FedAvg" in page
    assert "strategy fedavg" not in page
    assert "virtual time (hours)" not in page


def test_get_compare_page_labels_fleets_by_name(client: httpx.Client,
                                               two: list[dict[str, Any]]) -> None:
    ids = [f["id"] for f in two]
    r = client.get("/ui/compare", params=[("ids", ids[0]), ("ids", ids[1])])
    assert r.status_code == 200
    page = r.text
    assert "plain &lt;avg&gt;" in page and ">fedper<" in page
    assert "FedPer over FedAvg" in page and "personal layers" in page
    assert ids[0] not in re.sub(r"href='[^']*'", "", page)  # names, not raw ids
    assert "virtual h" not in page and re.search(r"virtual time \((s|min)\)", page)
    same = client.get(f"/v1/fleets/compare.html?ids={ids[0]},{ids[1]}").text
    assert ">fedper<" in same
    data = client.get(f"/v1/fleets/compare?ids={ids[0]},{ids[1]}").json()
    assert [f["name"] for f in data["fleets"]] == ["plain <avg>", "fedper"]
    assert data["fleets"][1]["ran"]["personal layers"] == "dense_2/"


def test_get_compare_page_with_one_fleet_is_422(client: httpx.Client,
                                               two: list[dict[str, Any]]) -> None:
    assert_problem(client.get("/ui/compare", params={"ids": two[0]["id"]}), 422, "ids")


def test_get_fleet_page_of_a_missing_fleet_is_404(client: httpx.Client) -> None:
    assert_problem(client.get("/ui/fleets/flt_nope"), 404, "flt_nope")


@pytest.mark.parametrize("name", ["ui.css", "dashboard.js", "fleet.js"])
def test_get_asset_from_the_package(client: httpx.Client, name: str) -> None:
    r = client.get(f"/ui/static/{name}")
    assert r.status_code == 200 and len(r.content) > 500
    assert "http" not in r.text  # nothing from elsewhere


def test_get_asset_not_in_the_package_is_404(client: httpx.Client) -> None:
    assert client.get("/ui/static/..%2Fapi%2Fui.py").status_code == 404
    assert client.get("/ui/static/nope.js").status_code == 404
