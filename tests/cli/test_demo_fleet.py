"""`make demo-fleet` against a test server (its --quick size): one table, and FedPer's devices
end with better models than FedAvg's on a label-skewed population."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from app import demo_fleet
from tests.helpers import LiveServer

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def shape(text: str) -> list[str]:
    """Lines with ids, addresses, numbers and the widths of the gaps left out."""
    for pattern, mark in ((r"flt_[0-9a-f]{22}", "ID"), (r"http://[^/\s]+", "URL"),
                          (r"\d+(\.\d+)?", "N"), (r"[ \t]+", " ")):
        text = re.sub(pattern, mark, text)
    return [line.strip() for line in text.strip().splitlines()]


def test_demo_fleet_prints_one_table_where_fedper_beats_fedavg(
        server: LiveServer, client: httpx.Client, capsys: pytest.CaptureFixture[str]) -> None:
    demo_fleet.main(["--url", server.url, "--quick"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("strategy"))
    assert re.split(r"\s{2,}", lines[header].strip()) == list(demo_fleet.COLUMNS)
    rows = {cells[0]: cells for cells in (re.split(r"\s{2,}", line.strip())
                                          for line in lines[header + 1:header + 4])}
    assert list(rows) == list(demo_fleet.STRATEGIES)
    assert all(len(cells) == len(demo_fleet.COLUMNS) for cells in rows.values()), rows
    assert sum(line.startswith("strategy") for line in lines) == 1

    def percent(cell: str) -> float:
        assert re.fullmatch(r"\d+\.\d%", cell), cell
        return float(cell[:-1])

    shown = re.search(r"^```\n(\d+ devices, .*?)^```$", README, re.M | re.S)
    assert shown, "the README shows no make demo-fleet table"
    assert shape(shown.group(1)) == shape(out)  # what the README shows, but for the numbers

    mean = demo_fleet.COLUMNS.index("clients' mean")
    assert percent(rows["FedPer"][mean]) > percent(rows["FedAvg"][mean]), out
    assert rows["local only"][1] == "-"  # no global model is trained
    for name, cells in rows.items():
        fleet = client.get(f"/v1/fleets/{cells[-1]}").json()
        assert fleet["status"] == "succeeded", (name, fleet)
        report = client.get(f"/v1/fleets/{cells[-1]}/report").json()
        assert cells[mean] == f"{report['final']['client_accuracy_personal']['mean']:.1%}"


@pytest.mark.parametrize(("where", "url"), [("PORT=9000", "http://127.0.0.1:9000"),
                                           ("URL=http://10.0.0.5:7000", "http://10.0.0.5:7000")])
def test_make_demo_fleet_goes_where_make_run_serves_and_installs_only_its_extra(
        where: str, url: str) -> None:
    dry = subprocess.run(["make", "-n", "-B", "demo-fleet", where], capture_output=True,
                         cwd=Path(__file__).resolve().parents[2], text=True, check=True).stdout
    assert f"-m app.demo_fleet --url {url}" in dry
    assert "'.[demo]'" in dry and "'.[test]'" not in dry
