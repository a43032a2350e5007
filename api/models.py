"""The API's tables in the state database: users, API keys and failed logins (migration 0006).

Roles and assigned buildings are JSON lists: they are read whole with the row on every
authenticated request, never queried by element.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.models import Base, UTCDateTime

BIGINT_ID = BigInteger().with_variant(Integer(), "sqlite")


class Role(StrEnum):
    """What a user or key may do; a principal may hold several. ``admin`` passes every check."""

    KEEPER = "keeper"
    SECURITY = "security"
    INSPECTOR = "inspector"
    DRILL_COORDINATOR = "drill_coordinator"
    ADMIN = "admin"


class UserRow(Base):
    """A person who logs in with a password (``users``)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(Text())
    roles: Mapped[list[Any]] = mapped_column(JSON())
    buildings: Mapped[list[Any]] = mapped_column(JSON())
    disabled: Mapped[bool] = mapped_column(Boolean(), default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApiKeyRow(Base):
    """A machine's key (``api_keys``): only its SHA-256 is kept; ``prefix`` finds the row."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    roles: Mapped[list[Any]] = mapped_column(JSON())
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LoginAttemptRow(Base):
    """A failed login (``login_attempts``), kept for the rate limit's window."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    at_ns: Mapped[int] = mapped_column(BigInteger(), index=True)
