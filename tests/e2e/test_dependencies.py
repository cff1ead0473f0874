"""Dependencies down: the S3 store or PostgreSQL stops answering mid-run.

Calls that need the missing one answer 503 problem+json within a bounded time, /readyz
names it, train and infer on live sessions go on (they touch neither), nothing saved
before is lost, and service comes back by itself when the dependency does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import create_engine, select

from app.config import Settings
from app.db.engine import POOL_TIMEOUT, Database
from app.db.migrate import upgrade
from app.db.tables import SessionRow
from app.errors import ServiceUnavailable
from tests.e2e.test_crash import assert_rows_match_blobs
from tests.helpers import (
    LiveServer,
    assert_problem,
    make_bucket,
    new_session,
    pg_available,
    pg_database,
    upload,
)

pytestmark = pytest.mark.slow

BOUND = 15.0  # seconds a call may take to say 503 (the timeouts inside are 3-5 s)
RNG = np.random.default_rng(5)
X = RNG.random((8, 28, 28), dtype=np.float32).tolist()
Y = np.eye(10, dtype=np.float32)[RNG.integers(0, 10, 8)].tolist()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def s3_settings(tmp_path: Path, bucket_at: str, store_at: str) -> Settings:
    """SQLite and an S3 store: the bucket made at bucket_at, the server talking to store_at
    (the same moto server, or a proxy in front of it)."""
    url = f"sqlite:///{tmp_path / 'fleetlite.db'}"
    upgrade(url)
    return Settings(database_url=url, store_url=f"s3://{make_bucket(bucket_at)}/fleet",  # type: ignore[arg-type]
                    s3_endpoint=store_at, s3_access_key_id="test", s3_secret_access_key="test",
                    work_dir=str(tmp_path / "tmp"), autosave_seconds=1.0, flush_seconds=0.5)


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = call()
    return r, time.monotonic() - started


def assert_quick_503(timings: dict[str, float], name: str, call: Callable[[], httpx.Response],
                     *needles: str) -> None:
    r, took = timed(call)
    assert_problem(r, 503, *needles)
    assert took < BOUND, (name, took)
    timings[name] = round(took, 2)


def wait_ready(c: httpx.Client) -> float:
    """Seconds until /readyz says 200 again, with no restart of the service."""
    started = time.monotonic()
    while (r := c.get("/readyz")).status_code != 200:
        assert time.monotonic() - started < BOUND, r.text
        time.sleep(0.2)
    return time.monotonic() - started


def postponed(c: httpx.Client, task: str) -> float:
    """How many background rounds of `task` were put off because a dependency was down."""
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(f'fleetlite_background_postponed_total{{task="{task}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_postponed(c: httpx.Client, task: str, before: float) -> None:
    """Wait until a background round of `task` has failed and been put off."""
    deadline = time.monotonic() + BOUND
    while postponed(c, task) <= before:
        assert time.monotonic() < deadline, f"no {task} round was put off"
        time.sleep(0.1)


def train(c: httpx.Client, sid: str, n: int) -> int:
    for _ in range(n):
        r = c.post(f"/v1/sessions/{sid}/train", json={"inputs": {"x": X, "y": Y}})
        assert r.status_code == 200, r.text
    return r.json()["step"]  # type: ignore[no-any-return]


def infer(c: httpx.Client, sid: str) -> list:  # type: ignore[type-arg]
    r = c.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": X}})
    assert r.status_code == 200, r.text
    return r.json()["outputs"]["output"]  # type: ignore[no-any-return]


def checkpoint(c: httpx.Client, sid: str) -> dict:  # type: ignore[type-arg]
    r = c.post(f"/v1/sessions/{sid}/checkpoints", json={"label": "by hand"})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_store_outage_answers_503_and_recovers_by_itself(
        tmp_path: Path, mlp_bytes: bytes) -> None:
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    settings = s3_settings(tmp_path, endpoint, endpoint)
    server = LiveServer(settings).start()
    timings: dict[str, float] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            model_id = upload(c, mlp_bytes, "mlp")
            sid = new_session(c, "sue", model_id)
            train(c, sid, 5)
            saved = checkpoint(c, sid)
            before = postponed(c, "autosave")
            moto.stop()  # the store is gone: connections are refused

            assert_quick_503(timings, "create checkpoint",
                             lambda: c.post(f"/v1/sessions/{sid}/checkpoints"), "store")
            assert_quick_503(timings, "download checkpoint",
                             lambda: c.get(f"/v1/checkpoints/{saved['id']}/file"), "store")
            assert_quick_503(timings, "session from checkpoint", lambda: c.post(
                "/v1/users/sue/sessions",
                json={"model_id": model_id, "checkpoint_id": saved["id"]}), "store")
            assert_quick_503(timings, "upload model", lambda: c.post(
                "/v1/models", files={"file": ("m.tflite", mlp_bytes)}, data={"name": "m"}),
                "store")
            assert_quick_503(timings, "readyz", lambda: c.get("/readyz"), "store")
            checks = c.get("/readyz").json()["checks"]
            assert checks["database"] == "ok" and checks["store"] != "ok", checks

            assert train(c, sid, 3) == 8  # the per-step path needs no store
            infer(c, sid)
            assert c.get(f"/v1/sessions/{sid}").json()["steps"] == 8
            wait_postponed(c, "autosave", before)  # an autosave round fails, to be retried

            moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            moto.start()  # the same bucket and objects: moto keeps its state in-process
            timings["readyz 200 again after"] = round(wait_ready(c), 2)
            again = checkpoint(c, sid)
            assert again["step"] == 8
            data = c.get(f"/v1/checkpoints/{saved['id']}/file").content
            assert hashlib.sha256(data).hexdigest() == saved["sha256"]  # nothing saved lost
            ckpts = c.get("/v1/users/sue/checkpoints").json()["items"]
            assert {k["id"] for k in ckpts} >= {saved["id"], again["id"]}
            assert {k["step"] for k in ckpts} <= {5, 8}  # no row for a save that failed
            from_saved = new_session(c, "sue", model_id, checkpoint_id=saved["id"])
            assert c.get(f"/v1/sessions/{from_saved}").json()["steps"] == 5
        assert_rows_match_blobs(settings)
    finally:
        server.stop()
        moto.stop()
    print(f"\nstore outage timings (s): {timings}")


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own, on a free port, that it may stop and start.

    The system cluster on 5432 serves the other tests and is never touched.
    """

    def __init__(self) -> None:
        pg_ctl = shutil.which("pg_ctl")
        if pg_ctl is None or not (Path(pg_ctl).parent / "initdb").exists():
            pytest.fail("pg_ctl and initdb are not installed (Debian: postgresql)")
        self.bin = Path(pg_ctl).parent
        self.dir = Path(tempfile.mkdtemp(prefix="fleetlite-pg-"))
        self.as_owner: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.dir, "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres",
                  "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_owner, str(self.bin / tool), *args], check=True,
                       stdout=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def _pids(self) -> list[int]:
        main = int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(main)], capture_output=True, text=True)
        return [main, *(int(p) for p in children.stdout.split())]

    def freeze(self) -> None:
        """SIGSTOP the server and its backends: the kernel still accepts connections and
        acknowledges data, but nothing ever answers."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def remove(self) -> None:
        subprocess.run([*self.as_owner, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"),
                        "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.remove()


def test_frozen_database_answers_503_within_seconds(postgres: PrivatePostgres, tmp_path: Path,
                                                    mlp_bytes: bytes) -> None:
    upgrade(postgres.url)
    settings = Settings(database_url=postgres.url, store_url=str(tmp_path / "store"),  # type: ignore[arg-type]
                        work_dir=str(tmp_path / "tmp"), db_timeout_seconds=2.0,
                        autosave_seconds=3600, flush_seconds=0.5)
    server = LiveServer(settings).start()
    timings: dict[str, float] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            model_id = upload(c, mlp_bytes, "mlp")
            sid = new_session(c, "fay", model_id)
            train(c, sid, 2)
            postgres.freeze()
            try:
                for name, call in {
                    "get session": lambda: c.get(f"/v1/sessions/{sid}"),
                    "create checkpoint": lambda: c.post(f"/v1/sessions/{sid}/checkpoints"),
                    "create session": lambda: c.post("/v1/users/fay/sessions",
                                                     json={"model_id": model_id}),
                    "list checkpoints": lambda: c.get("/v1/users/fay/checkpoints"),
                }.items():
                    r, took = timed(call)
                    assert_problem(r, 503, "database")
                    assert took < 8.0, (name, took)  # 2 s deadline, 3 s to connect again
                    timings[name] = round(took, 2)
                assert train(c, sid, 1) == 3  # the per-step path needs no database
            finally:
                postgres.thaw()
            timings["readyz 200 again after"] = round(wait_ready(c), 2)
            assert c.get(f"/v1/sessions/{sid}").json()["steps"] == 3
            assert c.post(f"/v1/sessions/{sid}/checkpoints").status_code == 201
    finally:
        server.stop()
    print("frozen database, seconds:", timings)


def row_steps(url: str, sid: str) -> int | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(SessionRow.steps).where(SessionRow.id == sid))
    finally:
        engine.dispose()


def test_database_outage_answers_503_and_recovers_by_itself(
        tmp_path: Path, mlp_bytes: bytes, postgres: PrivatePostgres) -> None:
    upgrade(postgres.url)
    settings = Settings(database_url=postgres.url, store_url=str(tmp_path / "store"),  # type: ignore[arg-type]
                        work_dir=str(tmp_path / "tmp"), autosave_seconds=1.0,
                        flush_seconds=0.5)
    server = LiveServer(settings).start()
    timings: dict[str, float] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            model_id = upload(c, mlp_bytes, "mlp")
            sid = new_session(c, "dan", model_id)
            train(c, sid, 5)
            saved = checkpoint(c, sid)
            before = postponed(c, "flush")
            postgres.stop()

            assert_quick_503(timings, "get session",
                             lambda: c.get(f"/v1/sessions/{sid}"), "database")
            assert_quick_503(timings, "create checkpoint",
                             lambda: c.post(f"/v1/sessions/{sid}/checkpoints"), "database")
            assert_quick_503(timings, "create session", lambda: c.post(
                "/v1/users/dan/sessions", json={"model_id": model_id}), "database")
            assert_quick_503(timings, "list checkpoints",
                             lambda: c.get("/v1/users/dan/checkpoints"), "database")
            assert_quick_503(timings, "readyz", lambda: c.get("/readyz"), "database")
            checks = c.get("/readyz").json()["checks"]
            assert checks["store"] == "ok" and checks["database"] != "ok", checks

            assert train(c, sid, 3) == 8  # the per-step path needs no database
            infer(c, sid)
            wait_postponed(c, "flush", before)  # flush and autosave rounds fail meanwhile

            postgres.start()
            timings["readyz 200 again after"] = round(wait_ready(c), 2)
            assert c.get(f"/v1/sessions/{sid}").json()["steps"] == 8
            deadline = time.monotonic() + BOUND  # background flush/autosave resumed
            while row_steps(postgres.url, sid) != 8:
                assert time.monotonic() < deadline, row_steps(postgres.url, sid)
                time.sleep(0.2)
            again = checkpoint(c, sid)
            assert again["step"] == 8
            old = c.get(f"/v1/checkpoints/{saved['id']}").json()
            assert old == saved  # nothing saved before is lost
            data = c.get(f"/v1/checkpoints/{saved['id']}/file").content
            assert hashlib.sha256(data).hexdigest() == saved["sha256"]
        # The checkpoint refused meanwhile left no blob behind (blob first, row second,
        # and the blob is deleted when the row cannot be written).
        assert_rows_match_blobs(settings)
    finally:
        server.stop()
    print(f"\ndatabase outage timings (s): {timings}")


class StallingProxy:
    """A TCP proxy that can stop passing bytes: the server behind it then accepts and
    never answers, the way a hung store does (unlike a stopped one, which refuses)."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.flowing = threading.Event()
        self.flowing.set()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.sock.close()
        self.flowing.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                if not self.flowing.is_set():
                    self.flowing.wait()
                    break  # held through the stall: its sender gave up on it, drop it
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()


def test_stalled_store_answers_503_within_the_read_timeout(
        tmp_path: Path, mlp_bytes: bytes, s3_endpoint: str) -> None:
    proxy = StallingProxy(int(s3_endpoint.rsplit(":", 1)[1]))
    settings = s3_settings(tmp_path, s3_endpoint, f"http://127.0.0.1:{proxy.port}")
    server = LiveServer(settings).start()
    timings: dict[str, float] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            model_id = upload(c, mlp_bytes, "mlp")
            sid = new_session(c, "stu", model_id)
            train(c, sid, 3)
            saved = checkpoint(c, sid)  # clean now: no autosave is in flight at the stall
            before = postponed(c, "autosave")
            proxy.stall()

            assert_quick_503(timings, "create checkpoint",
                             lambda: c.post(f"/v1/sessions/{sid}/checkpoints"), "store")
            assert_quick_503(timings, "readyz", lambda: c.get("/readyz"), "store")
            r, took = timed(lambda: c.post(f"/v1/sessions/{sid}/train",
                                           json={"inputs": {"x": X, "y": Y}}))
            assert r.status_code == 200 and took < BOUND, (r.text, took)
            timings["train"] = round(took, 2)
            wait_postponed(c, "autosave", before)  # an autosave round stalls, then gives up
            r, took = timed(lambda: c.post(f"/v1/sessions/{sid}/train",
                                           json={"inputs": {"x": X, "y": Y}}))
            assert r.status_code == 200 and took < BOUND, (r.text, took)
            assert r.json()["step"] == 5
            timings["train behind a stalled autosave"] = round(took, 2)

            proxy.resume()
            timings["readyz 200 again after"] = round(wait_ready(c), 2)
            assert checkpoint(c, sid)["step"] == 5
            data = c.get(f"/v1/checkpoints/{saved['id']}/file").content
            assert hashlib.sha256(data).hexdigest() == saved["sha256"]
        assert_rows_match_blobs(settings)
    finally:
        server.stop()
        proxy.close()
    print(f"\nstalled store timings (s): {timings}")


def test_exhausted_connection_pool_is_a_503_not_a_500() -> None:
    """Every pooled connection busy (a slow database under load): 503 after pool_timeout."""
    if not pg_available():
        pytest.fail("PostgreSQL does not answer on 127.0.0.1:5432; start it (.ci/run does)")
    with pg_database() as url:
        db = Database(url, statement_seconds=120)  # held on purpose: no watchdog in the way
        try:
            with ExitStack() as held:
                for _ in range(20):  # pool_size + max_overflow
                    held.enter_context(db.begin()).execute(select(1))
                started = time.monotonic()
                with pytest.raises(ServiceUnavailable, match="no connection free"):
                    db.ping()
                assert time.monotonic() - started < POOL_TIMEOUT + 3
            db.ping()  # the connections are back in the pool
        finally:
            db.dispose()
