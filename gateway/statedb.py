"""The state database (audit log, alerts, users...): SQLite in the data dir or PostgreSQL.

SQLite connections run in WAL mode with a 30 s busy timeout and foreign keys on, so the
gateway and the API (two processes) can share one file. SQLAlchemy emits BEGIN itself (the
documented pysqlite recipe: ``isolation_level = None`` plus a ``begin`` event hook), which
makes DDL transactional and lets a writer start with ``BEGIN IMMEDIATE``: it takes the write
lock up front, so two writers queue on the busy timeout instead of one failing with
"database is locked" when it upgrades a read lock.

Calls block; async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
# pg_advisory_xact_lock key held while migrating: ASCII "archmigr" (fits a signed bigint).
MIGRATE_LOCK_KEY = 0x617263686D696772
# Connection execution option read by the SQLite ``begin`` hook: DEFERRED or IMMEDIATE.
_SQLITE_BEGIN = "archwatch_sqlite_begin"
_MIGRATE_ATTEMPTS = 5
_MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class StateDBError(Exception):
    """The state database URL is unusable (the message never contains its password)."""


def normalise_url(url: str) -> URL:
    """Parse ``url``; ``postgresql://`` and ``postgres://`` mean psycopg 3.

    Only SQLite (pysqlite) and PostgreSQL (psycopg) are supported: the audit log's locking
    and append-only triggers are written for these two.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # Not echoed: an unparseable URL cannot be redacted reliably.
        raise StateDBError("the state database URL is not a valid SQLAlchemy URL") from None
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql") and parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    supported = {("sqlite", "pysqlite"), ("postgresql", "psycopg")}
    if (parsed.get_backend_name(), parsed.get_driver_name()) not in supported:
        shown = parsed.render_as_string(hide_password=True)
        raise StateDBError(
            f"state database '{shown}': use sqlite:////path/state.sqlite "
            "or postgresql+psycopg://user:password@host/dbname"
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        # Each pooled connection would get its own empty database; the gateway and the API
        # must share one anyway.
        raise StateDBError("the SQLite state database must be a file: sqlite:////path/state.sqlite")
    return parsed


def alembic_config() -> Config:
    """An Alembic config pointing at the installed ``gateway/migrations`` (no ini file)."""
    cfg = Config()
    # ConfigParser interpolation: a literal '%' in the install path must be doubled.
    cfg.set_main_option("script_location", str(_MIGRATIONS_DIR).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this version of archwatch."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _is_sqlite_busy(exc: OperationalError) -> bool:
    name = getattr(exc.orig, "sqlite_errorname", "")
    return str(name).startswith("SQLITE_BUSY") or "database is locked" in str(exc.orig)


def _sqlite_on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    # pysqlite must not emit BEGIN itself; the begin hook below does.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    try:
        # busy_timeout first: switching to WAL needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
    if mode not in ("DEFERRED", "IMMEDIATE"):
        raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _make_engine(url: URL, echo: bool) -> Engine:
    if url.get_backend_name() != "sqlite":
        # pre_ping: a long-running gateway outlives PostgreSQL restarts.
        return create_engine(url, echo=echo, pool_pre_ping=True)
    assert url.database  # normalise_url refuses in-memory databases
    engine = create_engine(url, echo=echo)
    folder = Path(url.database).parent

    def make_folder(*_args: Any) -> None:
        # At first connect, not in __init__: building a StateDB has no side effects.
        folder.mkdir(parents=True, exist_ok=True)

    event.listen(engine, "do_connect", make_folder)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


class StateDB:
    """One state database: an engine, sessions, and its schema migrations.

    ``url`` is a SQLAlchemy URL: ``sqlite:////abs/path/state.sqlite`` (the default, in the
    data dir) or ``postgresql+psycopg://user:password@host/db``. Call :meth:`migrate` once at
    start-up; it is idempotent and safe when several processes start at once.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self._url = normalise_url(url)
        self.dialect: str = self._url.get_backend_name()
        self.engine: Engine = _make_engine(self._url, echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        writer = self.engine.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
        self._write_sessions = sessionmaker(writer, expire_on_commit=False)

    @property
    def url(self) -> str:
        """The URL with its password masked: safe to log."""
        return self._url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"StateDB({self.url!r})"

    def sqlite_path(self) -> Path | None:
        """The SQLite database's file; None for PostgreSQL or an in-memory database."""
        name = self._url.database
        if self.dialect != "sqlite" or not name or name == ":memory:":
            return None
        return Path(name)

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on normal exit, rolled back on error.

        ``write=True`` for a read-then-write transaction: on SQLite it starts with
        ``BEGIN IMMEDIATE`` (the database's write lock, waited for up to the busy timeout),
        so its reads cannot go stale before it writes. No effect on PostgreSQL.
        """
        factory = self._write_sessions if write else self._sessions
        with factory.begin() as session:
            yield session

    def lock(self, session: Session, key: int) -> None:
        """Serialise, across processes, the transactions that lock ``key`` until they end.

        PostgreSQL: ``pg_advisory_xact_lock(key)``. SQLite: the write lock already taken by
        ``session(write=True)`` serialises all writers, so ``session`` must be one.
        """
        if self.dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            return
        options = session.connection().get_execution_options()
        if options.get(_SQLITE_BEGIN) != "IMMEDIATE":
            raise RuntimeError("StateDB.lock needs a session(write=True) on SQLite")

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision; a no-op when it is already there.

        The whole upgrade runs in one transaction holding a cross-process lock (SQLite:
        ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock), so a second process that starts
        at the same time waits, then finds the schema current.
        """
        before = self.current_revision()
        for attempt in itertools.count(1):
            try:
                self._upgrade()
                break
            except OperationalError as exc:
                # The busy timeout covers normal contention; this covers lock errors SQLite
                # raises without waiting (e.g. while another process switches to WAL).
                if self.dialect != "sqlite" or not _is_sqlite_busy(exc):
                    raise
                if attempt >= _MIGRATE_ATTEMPTS:
                    raise
                time.sleep(0.2 * attempt)
        after = self.current_revision()
        if after != before:
            log.info("state database %s migrated from %s to %s", self.url, before, after)

    def _upgrade(self) -> None:
        cfg = alembic_config()
        with self.engine.connect() as conn:
            conn.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
            with conn.begin():
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATE_LOCK_KEY})
                # env.py runs on this connection, inside this transaction.
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")

    def current_revision(self) -> str | None:
        """The schema revision the database is at; None before the first migration."""
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def dispose(self) -> None:
        """Same as :meth:`close` (the engine's word for it)."""
        self.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
