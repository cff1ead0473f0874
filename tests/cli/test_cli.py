"""The `fleetlite` command line against a real server, in-process through typer's CliRunner."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from app.cli import app
from app.cli.api import Api
from tests.cli.support import (
    USER,
    cli,
    ctrl_c_cancels,
    field,
    ok,
    spawn,
    until_following,
    when_running,
)
from tests.helpers import LiveServer

EPOCH_ROW = re.compile(r"^(\d+)\s+(\d+\.\d{4})\s+(ckpt_\w+)$", re.M)


def test_models_upload_prints_id_name_and_signatures(
        upload_result: Result, model_id: str, server: LiveServer,
        client: httpx.Client) -> None:
    out = upload_result.stdout
    assert field(out, "name") == "mlp-cli"
    assert re.search(r"^\s+train\s+x float32\[-1,28,28\], y float32\[-1,10\] -> loss float32\[\]$",
                     out, re.M), out
    for signature in ("infer", "save", "restore"):
        assert re.search(rf"^\s+{signature}\s+\S", out, re.M), out
    assert client.get(f"/v1/models/{model_id}").json()["name"] == "mlp-cli"
    assert model_id in ok(cli(server, "models", "list")).stdout
    page = json.loads(ok(cli(server, "--json", "models", "list")).stdout)
    assert model_id in [m["id"] for m in page["items"]]


def test_sessions_create_show_list(server: LiveServer, client: httpx.Client,
                                   session_id: str, model_id: str) -> None:
    out = ok(cli(server, "sessions", "show", session_id)).stdout
    assert field(out, "user") == USER and field(out, "model") == model_id
    assert field(out, "steps") == "0"
    raw = json.loads(ok(cli(server, "--json", "sessions", "show", session_id)).stdout)
    assert raw == client.get(f"/v1/sessions/{session_id}").json()
    assert session_id in ok(cli(server, "sessions", "list", USER)).stdout


def test_datasets_list(server: LiveServer, dataset_id: str) -> None:
    out = ok(cli(server, "datasets", "list", USER)).stdout
    assert dataset_id in out and "digits" in out


def test_jobs_run_follows_the_job_to_success(server: LiveServer, client: httpx.Client,
                                             session_id: str, dataset_id: str) -> None:
    result = ok(cli(server, "jobs", "run", session_id, "--dataset", dataset_id, "--epochs", "2",
                    "--batch-size", "32", "--seed", "3"))
    out = result.stdout
    job_id = re.search(r"^job (job_\w+) succeeded", out, re.M).group(1)  # type: ignore[union-attr]
    assert "steps" in out and "last epoch loss" in out  # the progress bar's last frame
    rows = EPOCH_ROW.findall(out)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert [int(r[0]) for r in rows] == [1, 2]
    assert [r[1] for r in rows] == [f"{v:.4f}" for v in job["metrics"]["epoch_loss"]]
    assert [r[2] for r in rows] == job["checkpoint_ids"]
    chart = field(out, "loss chart")
    assert chart == f"{server.url}/v1/jobs/{job_id}/loss.svg"
    assert httpx.get(chart).headers["content-type"].startswith("image/svg+xml")
    shown = ok(cli(server, "jobs", "show", job_id)).stdout
    assert f"job {job_id} succeeded" in shown and EPOCH_ROW.findall(shown) == rows


def test_jobs_run_json_and_detach(server: LiveServer, client: httpx.Client,
                                  session_id: str, dataset_id: str) -> None:
    args = ("jobs", "run", session_id, "--dataset", dataset_id, "--epochs", "1",
            "--batch-size", "50", "--no-shuffle")
    final = json.loads(ok(cli(server, "--json", *args)).stdout)
    assert final["status"] == "succeeded" and final["shuffle"] is False
    assert final == client.get(f"/v1/jobs/{final['id']}").json()
    started = json.loads(ok(cli(server, "--json", *args, "--detach")).stdout)
    assert started["status"] in ("queued", "running", "succeeded")
    deadline = time.monotonic() + 30
    while client.get(f"/v1/jobs/{started['id']}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert started["id"] in ok(cli(server, "jobs", "list", USER)).stdout


def test_jobs_run_exits_1_when_the_job_is_cancelled(server: LiveServer, client: httpx.Client,
                                                    session_id: str, dataset_id: str) -> None:
    canceller = when_running(client, "job", lambda job: job["progress"]["step"] > 0,
                             lambda job: ok(cli(server, "jobs", "cancel", job["id"])))
    result = cli(server, "jobs", "run", session_id, "--dataset", dataset_id,
                 "--epochs", "5000", "--batch-size", "32")
    canceller.join()
    assert result.exit_code == 1, result.output
    job_id = re.search(r"^job (job_\w+) cancelled", result.stdout, re.M).group(1)  # type: ignore[union-attr]
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"


def test_ctrl_c_while_following_cancels_the_job_and_exits_130(
        server: LiveServer, client: httpx.Client, session_id: str, dataset_id: str) -> None:
    ctrl_c_cancels(server, client, "job", lambda job: job["progress"]["step"] > 0, "jobs", "run",
                   session_id, "--dataset", dataset_id, "--epochs", "5000", "--batch-size", "32")


def test_ctrl_c_while_following_a_detached_job_leaves_it_running(
        server: LiveServer, client: httpx.Client, session_id: str, dataset_id: str) -> None:
    job = json.loads(ok(cli(server, "--json", "jobs", "run", session_id, "--dataset", dataset_id,
                            "--epochs", "5000", "--batch-size", "32", "--detach")).stdout)
    child = spawn(server, "jobs", "follow", job["id"])
    assert f"following job {job['id']} (Ctrl-C stops following" in until_following(child)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert f"fleetlite --url {server.url} jobs cancel {job['id']}" in err, err
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running"
    ok(cli(server, "jobs", "cancel", job["id"]))


def test_checkpoints_create_list_download(server: LiveServer, client: httpx.Client,
                                          session_id: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    out = ok(cli(server, "checkpoints", "create", session_id, "--label", "from-cli")).stdout
    ckpt = field(out, "checkpoint")
    assert field(out, "label") == "from-cli" and field(out, "kind") == "manual"
    listed = ok(cli(server, "checkpoints", "list", USER, "--session", session_id)).stdout
    assert ckpt in listed and "from-cli" in listed
    expected = client.get(f"/v1/checkpoints/{ckpt}/file").content

    target = tmp_path / "mine.ckpt"
    ok(cli(server, "checkpoints", "download", ckpt, "-o", str(target)))
    assert target.read_bytes() == expected
    monkeypatch.chdir(tmp_path)
    assert "verified" in ok(cli(server, "checkpoints", "download", ckpt)).stdout
    assert (tmp_path / f"{ckpt}.ckpt").read_bytes() == expected


def test_download_refuses_a_file_whose_sha256_differs(
        server: LiveServer, session_id: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = field(ok(cli(server, "checkpoints", "create", session_id)).stdout, "checkpoint")
    real = Api.json

    def wrong_sha(self: Api, method: str, path: str, **kwargs: Any) -> Any:
        body = real(self, method, path, **kwargs)
        return {**body, "sha256": "0" * 64} if path == f"/v1/checkpoints/{ckpt}" else body

    monkeypatch.setattr(Api, "json", wrong_sha)
    target = tmp_path / "bad.ckpt"
    result = cli(server, "checkpoints", "download", ckpt, "-o", str(target))
    assert result.exit_code == 2
    assert "checksum mismatch" in result.stderr and "0" * 64 in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_server_errors_print_the_detail_and_exit_2(server: LiveServer,
                                                   client: httpx.Client) -> None:
    detail = client.get("/v1/sessions/ses_nope").json()["detail"]
    result = cli(server, "sessions", "show", "ses_nope")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {detail}"
    assert result.stdout == "" and "Traceback" not in result.output
    bad_user = cli(server, "sessions", "list", "no/such user")
    assert bad_user.exit_code == 2 and bad_user.stderr.startswith("error: ")
    job = cli(server, "jobs", "run", "ses_nope", "--dataset", "ds_nope", "--epochs", "1",
              "--batch-size", "1")
    assert job.exit_code == 2 and "ses_nope" in job.stderr


def test_a_closed_port_says_the_server_is_not_running() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = CliRunner().invoke(app, ["--url", url, "models", "list"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: cannot connect to {url}")
    assert "is the server running?" in result.stderr and "Traceback" not in result.output


def test_url_and_token_come_from_the_environment(server: LiveServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[httpx.Request] = []
    real_send = httpx.Client.send

    def record(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        sent.append(request)
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", record)
    result = CliRunner().invoke(app, ["models", "list"],
                                env={"FLEETLITE_URL": server.url, "FLEETLITE_TOKEN": "s3cret"})
    ok(result)
    assert str(sent[0].url).startswith(server.url)
    assert sent[0].headers["authorization"] == "Bearer s3cret"


def test_jobs_run_defaults_to_one_epoch_of_the_models_batch_size(
        server: LiveServer, client: httpx.Client, session_id: str, dataset_id: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    final = json.loads(ok(cli(server, "--json", "jobs", "run", session_id, "--dataset",
                              dataset_id)).stdout)
    assert (final["status"], final["epochs"], final["batch_size"]) == ("succeeded", 1, 32)
    real = Api.json

    def fixed_batch(self: Api, method: str, path: str, **kwargs: Any) -> Any:
        body = real(self, method, path, **kwargs)
        if path.startswith("/v1/models/"):  # as a model whose train signature fixes 16
            for spec in body["signatures"]["train"]["inputs"].values():
                spec["shape"] = [16, *spec["shape"][1:]]
        return body

    monkeypatch.setattr(Api, "json", fixed_batch)
    final = json.loads(ok(cli(server, "--json", "jobs", "run", session_id, "--dataset",
                              dataset_id)).stdout)
    assert (final["epochs"], final["batch_size"]) == (1, 16)
