"""Engine and session factory for SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from app.db.watchdog import Watchdog
from app.errors import ServiceUnavailable

POOL_TIMEOUT = 5  # seconds a call waits for a pooled connection before it answers 503
STATEMENT_SECONDS = 5.0  # the longest a transaction may wait on PostgreSQL before a 503


def make_engine(url: str, statement_seconds: float = STATEMENT_SECONDS) -> Engine:
    """An engine with bounded connect timeouts, so an outage answers 503 quickly."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=POOL_TIMEOUT,
        # Bounded waits: connecting, and a server that stops acknowledging (host down,
        # network cut) drops the connection in seconds rather than after TCP's ~15 minutes.
        connect_args={"connect_timeout": 3, "tcp_user_timeout": 5000, "keepalives": 1,
                      "keepalives_idle": 10, "keepalives_interval": 2, "keepalives_count": 3,
                      # A slow statement on a live server ends there; a frozen server is the
                      # watchdog's (app/db/watchdog.py).
                      "options": f"-c statement_timeout={int(statement_seconds * 1000)}"},
    )


@contextmanager
def _outage_as_503() -> Iterator[None]:
    """Database outages become ServiceUnavailable; other database errors pass through."""
    try:
        yield
    except (OperationalError, DBAPIError) as exc:
        if isinstance(exc, DBAPIError) and not exc.connection_invalidated and not isinstance(
            exc, OperationalError
        ):
            raise
        raise ServiceUnavailable(f"database unavailable: {exc.orig or exc}") from exc
    except PoolTimeout as exc:  # every pooled connection busy (a slow or stuck database)
        raise ServiceUnavailable("database unavailable: no connection free within "
                                 f"{POOL_TIMEOUT} s") from exc


class Database:
    """Owns the engine; hands out short transactions, each with a deadline on PostgreSQL."""

    def __init__(self, url: str, statement_seconds: float = STATEMENT_SECONDS) -> None:
        self.engine = make_engine(url, statement_seconds)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        self._watchdog: Watchdog | None = None
        if self.engine.dialect.name == "postgresql":
            self._watchdog = Watchdog(statement_seconds)
            _watch_pings(self.engine, self._watchdog)

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with (_outage_as_503(), self._factory.begin() as session,
              self._deadline(session.connection())):
            yield session

    @contextmanager
    def begin_core(self) -> Iterator[Connection]:
        """A Core connection in a transaction, for hot paths: a few statements cost a
        fraction of an ORM flush (a job's epoch rows, written while the next epoch trains)."""
        with _outage_as_503(), self.engine.begin() as conn, self._deadline(conn):
            yield conn

    @contextmanager
    def _deadline(self, conn: Connection) -> Iterator[None]:
        if self._watchdog is None:
            yield
            return
        token = self._watchdog.watch(_socket_of(conn.connection.dbapi_connection))
        try:
            yield
        finally:
            self._watchdog.release(token)

    def ping(self) -> None:
        """Raise ServiceUnavailable unless the database answers."""
        with self.begin() as s:
            s.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


def _socket_of(dbapi_connection: Any) -> int:
    return int(dbapi_connection.pgconn.socket)


def _watch_pings(engine: Engine, watchdog: Watchdog) -> None:
    """The pool's pre-ping runs before a transaction has its connection: watch it too."""
    ping = engine.dialect.do_ping

    def watched_ping(dbapi_connection: Any) -> bool:
        token = watchdog.watch(_socket_of(dbapi_connection))
        try:
            return ping(dbapi_connection)
        finally:
            watchdog.release(token)

    engine.dialect.do_ping = watched_ping  # type: ignore[method-assign]
