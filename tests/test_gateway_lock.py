"""One gateway per data directory and per state database (gateway/single.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.single import GATEWAY_LOCK_KEY, GatewayLock, GatewayLockError
from gateway.statedb import StateDB


def _lock(data_dir: Path, url: str) -> tuple[GatewayLock, StateDB]:
    data_dir.mkdir(exist_ok=True)
    statedb = StateDB(url)
    return GatewayLock(data_dir, statedb), statedb


def test_a_second_gateway_on_one_data_directory_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, db1 = _lock(data, f"sqlite:///{data}/state.sqlite")
    second, db2 = _lock(data, f"sqlite:///{data}/state.sqlite")
    first.acquire()
    with pytest.raises(
        GatewayLockError, match=f"another gateway is running on data directory {data}"
    ):
        second.acquire()
    first.release()
    second.acquire()  # the first one stopped: the data directory is free again
    second.release()
    db1.close()
    db2.close()


def test_a_second_gateway_on_one_state_database_is_refused(tmp_path: Path, db_url: str) -> None:
    """Two data directories (two hosts, say), one state database: the second gateway
    would page everyone a second time, so it does not start; whatever locks it had taken
    are given back."""
    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{tmp_path}/shared/state.sqlite"
        (tmp_path / "shared").mkdir()
    first, db1 = _lock(tmp_path / "a", db_url)
    second, db2 = _lock(tmp_path / "b", db_url)
    first.acquire()
    with pytest.raises(GatewayLockError, match=r"another gateway is running on .*state database"):
        second.acquire()
    # Refused whole: b's data directory is not left locked.
    third, db3 = _lock(tmp_path / "b", f"sqlite:///{tmp_path}/b/own.sqlite")
    third.acquire()
    third.release()
    first.release()
    second.acquire()
    second.release()
    for statedb in (db1, db2, db3):
        statedb.close()


@pytest.mark.realserver
def test_the_refusal_never_shows_the_database_password(tmp_path: Path, postgres_url: str) -> None:
    # The test server trusts loopback, so the password is not checked; it must not show.
    with_password = postgres_url.replace("://", "://archwatch:s3cret-pw@", 1)
    if "@" in postgres_url:
        with_password = re.sub(r"://[^@/]*@", "://archwatch:s3cret-pw@", postgres_url)
    first, db1 = _lock(tmp_path / "a", with_password)
    second, db2 = _lock(tmp_path / "b", with_password)
    first.acquire()
    with pytest.raises(GatewayLockError) as exc_info:
        second.acquire()
    assert "s3cret-pw" not in str(exc_info.value)
    assert "archwatch:***@" in str(exc_info.value)
    first.release()
    db1.close()
    db2.close()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gateway.single import GatewayLock
    from gateway.statedb import StateDB
    GatewayLock(Path(sys.argv[1]), StateDB(sys.argv[2])).acquire()
    print("locked", flush=True)
    time.sleep(600)
    """
)


def test_a_gateway_killed_with_sigkill_leaves_no_lock_behind(tmp_path: Path, db_url: str) -> None:
    """The kernel (flock) and PostgreSQL (the closed session) release the locks of a killed
    gateway: no stale lock file to delete by hand before the restart."""
    data = tmp_path / "data"
    data.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data), db_url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        lock, statedb = _lock(data, db_url)
        with pytest.raises(GatewayLockError):
            lock.acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        # PostgreSQL notices the closed socket at once; a few tries cover the race.
        for attempt in range(50):
            try:
                lock.acquire()
                break
            except GatewayLockError:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        lock.release()
        statedb.close()
    finally:
        holder.kill()
        holder.wait()


def _terminate_lock_session(statedb: StateDB) -> None:
    """End the session holding the gateway's advisory lock, as a network break would."""
    with statedb.engine.connect() as conn:
        ended = conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted "
                "AND ((classid::bigint << 32) | objid::bigint) = :key"
            ),
            {"key": GATEWAY_LOCK_KEY},
        ).all()
    assert ended == [(True,)]


@pytest.mark.realserver
def test_a_lost_postgresql_lock_is_taken_again(tmp_path: Path, postgres_url: str) -> None:
    lock, statedb = _lock(tmp_path / "a", postgres_url)
    lock.acquire()
    assert lock.check() is False  # held: nothing to do
    _terminate_lock_session(statedb)
    assert lock.check() is True  # noticed and taken again
    assert lock.check() is False
    # Taken again for real: a second gateway is still refused.
    other, db2 = _lock(tmp_path / "b", postgres_url)
    with pytest.raises(GatewayLockError):
        other.acquire()
    lock.release()
    statedb.close()
    db2.close()


@pytest.mark.realserver
def test_a_gateway_whose_lock_another_took_must_stop(tmp_path: Path, postgres_url: str) -> None:
    lock, statedb = _lock(tmp_path / "a", postgres_url)
    lock.acquire()
    _terminate_lock_session(statedb)
    other, db2 = _lock(tmp_path / "b", postgres_url)
    other.acquire()  # the lock was free for a moment, and a second gateway started
    with pytest.raises(GatewayLockError, match="another gateway is running"):
        lock.check()
    other.release()
    lock.release()
    statedb.close()
    db2.close()
