"""The state database: URLs, sessions, migrations (also from two processes at once).

Every database test runs on SQLite (a file in tmp_path) and on the real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from gateway import audit
from gateway.statedb import StateDB, StateDBError, alembic_config, head_revision
from tests.db_helpers import spawn_workers, wait_for


@pytest.fixture
def db(db_url: str) -> Iterator[StateDB]:
    """Unlike the shared fixture, not migrated: the tests here migrate it themselves."""
    state = StateDB(db_url)
    yield state
    state.close()


def test_migrate_creates_the_schema_and_a_second_run_changes_nothing(db: StateDB) -> None:
    assert db.current_revision() is None
    db.migrate()
    assert db.current_revision() == head_revision()
    audit.append(db, actor="admin", action="setup")

    db.migrate()

    assert db.current_revision() == head_revision()
    assert audit.count(db) == 1
    assert audit.verify(db).ok


def test_models_match_the_migrations(db: StateDB) -> None:
    """A table changed in code without a new revision would fail here (alembic check)."""
    db.migrate()
    cfg = alembic_config()
    with db.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.check(cfg)


MIGRATE_WORKER = """
import pathlib, sys, time
from gateway.statedb import StateDB
url, ready, go = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
db = StateDB(url)
ready.touch()
while not go.exists():
    time.sleep(0.005)
db.migrate()
print(db.current_revision())
db.close()
"""


def test_processes_starting_at_once_all_migrate(db_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    readies = [tmp_path / f"ready-{i}" for i in range(3)]
    procs = spawn_workers(MIGRATE_WORKER, [[db_url, str(ready), str(go)] for ready in readies])
    try:
        wait_for(lambda: all(r.exists() for r in readies), "workers to start")
        go.touch()
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == head_revision()
    db = StateDB(db_url)
    try:
        assert db.current_revision() == head_revision()
        audit.append(db, actor="admin", action="setup")
        assert audit.verify(db).ok
    finally:
        db.close()


def test_session_commits_on_exit_and_rolls_back_on_error(db: StateDB) -> None:
    with db.session() as s:
        s.execute(text("CREATE TABLE scratch (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    with db.session(write=True) as s:
        s.execute(text("INSERT INTO scratch (k, v) VALUES (1, 'kept')"))
    with pytest.raises(RuntimeError, match="boom"), db.session(write=True) as s:
        s.execute(text("INSERT INTO scratch (k, v) VALUES (2, 'lost')"))
        raise RuntimeError("boom")
    with db.session() as s:
        assert s.execute(text("SELECT k, v FROM scratch")).all() == [(1, "kept")]


def test_sqlite_runs_in_wal_with_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    with StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}") as db, db.session() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert s.execute(text("PRAGMA busy_timeout")).scalar_one() == 30_000
        s.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        s.execute(text("CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent)"))
    with pytest.raises(Exception, match="FOREIGN KEY"), db.session() as s:
        s.execute(text("INSERT INTO child (id, p) VALUES (1, 42)"))


def test_sqlite_file_in_a_missing_folder_is_created(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "state.sqlite"
    with StateDB(f"sqlite:///{path}") as db:
        db.migrate()
    assert path.is_file()


def test_lock_on_sqlite_needs_a_write_session(tmp_path: Path) -> None:
    with StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}") as db:
        with pytest.raises(RuntimeError, match="write=True"), db.session() as s:
            db.lock(s, 1)
        with db.session(write=True) as s:
            db.lock(s, 1)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:////var/lib/archwatch/state.sqlite", "pysqlite"),
        ("sqlite+pysqlite:////var/lib/archwatch/state.sqlite", "pysqlite"),
        ("postgresql://archwatch:pw@db.example:5432/archwatch", "psycopg"),
        ("postgres://archwatch:pw@db.example/archwatch", "psycopg"),
        ("postgresql+psycopg://archwatch:pw@db.example/archwatch", "psycopg"),
    ],
)
def test_supported_urls(url: str, driver: str) -> None:
    db = StateDB(url)  # no connection is made
    assert db.engine.dialect.driver == driver
    assert "pw" not in db.url and "pw" not in repr(db)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root:hunter2@db.example/archwatch",
        "postgresql+asyncpg://root:hunter2@db.example/archwatch",
        "sqlite+aiosqlite:////tmp/x.sqlite",
        "sqlite://",
        "sqlite:///:memory:",
        "not a url hunter2",
        "postgresql://root:hunter2@db.example:notaport/archwatch",
    ],
)
def test_unsupported_urls_are_refused_without_leaking_the_password(url: str) -> None:
    with pytest.raises(StateDBError) as info:
        StateDB(url)
    assert "hunter2" not in str(info.value)
