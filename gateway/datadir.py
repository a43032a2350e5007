"""The one data directory: spool, embedded store, state database and signing key live here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataDir:
    """Paths inside ``--data-dir``. Created on first use."""

    root: Path

    def ensure(self) -> DataDir:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def spool(self) -> Path:
        return self.root / "spool.sqlite"

    @property
    def embedded_store(self) -> Path:
        return self.root / "store.sqlite"

    @property
    def state_db(self) -> Path:
        return self.root / "state.sqlite"

    def state_db_url(self, override: str | None = None) -> str:
        return override or f"sqlite:///{self.state_db.resolve()}"
