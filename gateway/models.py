"""The state database's declarative ``Base`` and the column types its tables share.

Every table of the state database (audit log, and later alerts, users, escalation) is a
mapped class on :class:`Base` and gets its own Alembic revision under
``gateway/migrations/versions``. Modules that define tables are listed in
:data:`MODEL_MODULES` so that ``Base.metadata`` is complete for autogenerate.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, MetaData
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

# Explicit constraint names: SQLite migrations (batch mode) can only drop named constraints.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Add a module here when it defines tables on Base.
MODEL_MODULES: tuple[str, ...] = (
    "gateway.audit",
    "alerting.state_models",
    "alerting.outbox",
    "alerting.escalation_models",
    "alerting.ack_models",
    "api.models",
    "gateway.heartbeat",
)


class Base(DeclarativeBase):
    """Declarative base of every state-database table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def load_all_models() -> MetaData:
    """Import every module in :data:`MODEL_MODULES`; return the complete metadata."""
    for name in MODEL_MODULES:
        importlib.import_module(name)
    return Base.metadata


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is refused because its zone is a guess."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no time zone; pass an aware one")
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC; always read back aware, in UTC.

    SQLite has no time zone type and SQLAlchemy drops ``tzinfo`` when storing there, so a
    non-UTC value would silently shift; converting on the way in makes both back ends agree.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        utc = as_utc(value)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
