"""One gateway per data directory and per state database, enforced rather than assumed.

Two gateways on one state database would both evaluate the rules, both page the duty
officer and both apply each queued acknowledgement; two on one data directory would both
drain one spool. :class:`GatewayLock` makes the second one refuse to start instead:

* the data directory: ``fcntl.flock`` on ``gateway.lock`` there (held by the open file, so
  the kernel releases it when the process dies, even by SIGKILL);
* a PostgreSQL state database (which gateways on other hosts may share): a session-level
  ``pg_try_advisory_lock`` on a connection kept open for the gateway's life; PostgreSQL
  releases it when that connection closes, again also when the process is killed. A SQLite
  state database is a file on this host: ``flock`` on ``<file>.gateway.lock`` beside it.

The API and the CLI's other commands take no lock: they may run beside the gateway.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any

from sqlalchemy import text

from gateway.statedb import StateDB

# pg_try_advisory_lock key: ASCII "archgate" (fits a signed bigint).
GATEWAY_LOCK_KEY = 0x6172636867617465
LOCK_FILE = "gateway.lock"


class GatewayLockError(Exception):
    """Another gateway already runs on this data directory or state database."""


def _flock(path: Path, what: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise GatewayLockError(
            f"another gateway is running on {what} (it holds {path}); "
            "one gateway per data directory and state database"
        ) from None
    # For whoever finds the file: which process holds it.
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class GatewayLock:
    """Held by a running gateway: its data directory and its state database are its own."""

    def __init__(self, data_dir: Path, statedb: StateDB) -> None:
        self._data_dir = data_dir
        self._statedb = statedb
        self._fds: list[int] = []
        self._pg: Any = None  # the connection holding the advisory lock

    def acquire(self) -> None:
        """Take every lock or none; raises :class:`GatewayLockError`. Blocking."""
        try:
            self._fds.append(_flock(self._data_dir / LOCK_FILE, f"data directory {self._data_dir}"))
            if self._statedb.dialect == "postgresql":
                self._lock_postgresql()
            else:
                db_file = self._statedb.sqlite_path()
                if db_file is not None:
                    # Its own lock file, not the data directory's: a gateway with another
                    # data directory may name this database by path.
                    lock_file = db_file.with_name(db_file.name + ".gateway.lock")
                    self._fds.append(_flock(lock_file, f"state database {db_file}"))
        except BaseException:
            self.release()
            raise

    def _lock_postgresql(self) -> None:
        conn = self._statedb.engine.connect()
        try:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": GATEWAY_LOCK_KEY}
            ).scalar()
            conn.commit()  # the session-level lock outlives this transaction
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        if not got:
            conn.close()
            raise GatewayLockError(
                f"another gateway is running on the state database {self._statedb.url} "
                "(it holds the gateway's advisory lock); one gateway per state database"
            )
        self._pg = conn

    def check(self) -> bool:
        """Make sure the PostgreSQL lock is still held; True when it had to be taken again.

        The lock lives as long as its connection: a network break or a server restart ends
        it silently, and a second gateway could then start. Called every few seconds; a
        lost lock is taken again at once, and if another gateway got it meanwhile this one
        must stop: raises :class:`GatewayLockError`. A state database that cannot be reached
        raises its own error, to be retried on the next check. Blocking.
        """
        if self._statedb.dialect != "postgresql":
            return False  # flock is held by the open file: nothing can take it away
        conn = self._pg
        if conn is not None:
            held = 0
            with contextlib.suppress(Exception):  # a broken connection has lost the lock
                held = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND pid = pg_backend_pid() AND granted "
                        "AND ((classid::bigint << 32) | objid::bigint) = :key"
                    ),
                    {"key": GATEWAY_LOCK_KEY},
                ).scalar()
                conn.commit()
            if held:
                return False
            self._pg = None
            with contextlib.suppress(Exception):
                conn.invalidate()
                conn.close()
        self._lock_postgresql()
        return True

    def release(self) -> None:
        """Give every lock back (idempotent). Blocking."""
        if self._pg is not None:
            conn, self._pg = self._pg, None
            with contextlib.suppress(Exception):
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": GATEWAY_LOCK_KEY})
                conn.commit()
            # Really closed, not returned to the pool: a closed session holds no lock even
            # if the unlock above failed.
            conn.invalidate()
            conn.close()
        while self._fds:
            os.close(self._fds.pop())
