"""Users, API keys and failed logins in the state database (blocking; use ``asyncio.to_thread``).

Used by the API's routes and by ``archwatch user add`` / ``archwatch apikey create``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from api.models import ApiKeyRow, LoginAttemptRow, Role, UserRow
from api.security import NewApiKey, api_key_prefix, hash_password, new_api_key, same_hash
from gateway.statedb import StateDB

LOGIN_WINDOW_S = 15 * 60
MAX_FAILURES_PER_USERNAME = 5
# Higher: many people may log in from behind one address (a building's NAT).
MAX_FAILURES_PER_ADDRESS = 20
_NS = 1_000_000_000


KEY_ROLES_REFUSED = frozenset({Role.KEEPER})
KEEPER_KEY_REFUSAL = (
    "API keys cannot hold the role keeper: keys are not scoped to buildings; "
    "give a machine inspector (read-only) or security"
)
"""Why a key may not be a keeper: a keeper sees only the buildings assigned to them (#6),
and a key has no buildings, so it would see every one."""


class UsernameTaken(Exception):
    """Another user already has this username."""


def _roles(values: Iterable[str]) -> tuple[Role, ...]:
    return tuple(sorted({Role(v) for v in values}))


@dataclass(frozen=True, slots=True)
class User:
    """A user as the API sees it (never the password hash)."""

    id: int
    username: str
    display_name: str
    roles: tuple[Role, ...]
    buildings: tuple[str, ...]
    disabled: bool
    created_at: datetime
    updated_at: datetime


def _user(row: UserRow) -> User:
    return User(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        roles=_roles(row.roles),
        buildings=tuple(sorted(set(row.buildings))),
        disabled=row.disabled,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def create_user(
    db: StateDB,
    *,
    username: str,
    password: str,
    roles: Iterable[Role],
    now: datetime,
    display_name: str = "",
    buildings: Iterable[str] = (),
) -> User:
    """A new user; :class:`UsernameTaken` when the name is in use, PasswordPolicyError
    when the password is unacceptable."""
    password_hash = hash_password(password)
    row = UserRow(
        username=username,
        display_name=display_name or username,
        password_hash=password_hash,
        roles=[r.value for r in _roles(roles)],
        buildings=sorted(set(buildings)),
        disabled=False,
        created_at=now,
        updated_at=now,
    )
    try:
        with db.session(write=True) as session:
            session.add(row)
            session.flush()
            return _user(row)
    except IntegrityError:
        raise UsernameTaken(f"the username {username!r} is taken") from None


def get_user(db: StateDB, user_id: int) -> User | None:
    """The user with this id, or None."""
    with db.session() as session:
        row = session.get(UserRow, user_id)
        return None if row is None else _user(row)


def login_user(db: StateDB, username: str) -> tuple[User | None, str | None]:
    """The user and its password hash, or (None, None) when unknown."""
    with db.session() as session:
        row = session.execute(
            select(UserRow).where(UserRow.username == username)
        ).scalar_one_or_none()
        if row is None:
            return None, None
        return _user(row), row.password_hash


def list_users(db: StateDB, *, limit: int, offset: int) -> tuple[list[User], int]:
    """One page of users by id, and how many there are."""
    with db.session() as session:
        rows = session.execute(select(UserRow).order_by(UserRow.id).limit(limit).offset(offset))
        total = session.execute(select(func.count()).select_from(UserRow)).scalar_one()
        return [_user(r) for r in rows.scalars()], int(total)


def update_user(
    db: StateDB,
    user_id: int,
    *,
    now: datetime,
    display_name: str | None = None,
    password: str | None = None,
    roles: Iterable[Role] | None = None,
    buildings: Iterable[str] | None = None,
    disabled: bool | None = None,
) -> User | None:
    """Change the given fields; None when there is no such user."""
    password_hash = hash_password(password) if password is not None else None
    with db.session(write=True) as session:
        row = session.get(UserRow, user_id)
        if row is None:
            return None
        if display_name is not None:
            row.display_name = display_name
        if password_hash is not None:
            row.password_hash = password_hash
        if roles is not None:
            row.roles = [r.value for r in _roles(roles)]
        if buildings is not None:
            row.buildings = sorted(set(buildings))
        if disabled is not None:
            row.disabled = disabled
        row.updated_at = now
        session.flush()
        return _user(row)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key's public facts (never the key or its hash)."""

    id: int
    name: str
    prefix: str
    roles: tuple[Role, ...]
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


def _key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        roles=_roles(row.roles),
        created_by=row.created_by,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def create_api_key(
    db: StateDB, *, name: str, roles: Iterable[Role], created_by: str, now: datetime
) -> tuple[ApiKey, str]:
    """A new key and its secret text (shown once, never stored); ValueError for a role a
    key may not hold (:data:`KEY_ROLES_REFUSED`)."""
    key_roles = _roles(roles)
    if KEY_ROLES_REFUSED & set(key_roles):
        raise ValueError(KEEPER_KEY_REFUSAL)
    new: NewApiKey = new_api_key()
    row = ApiKeyRow(
        name=name,
        prefix=new.prefix,
        key_hash=new.key_hash,
        roles=[r.value for r in key_roles],
        created_by=created_by,
        created_at=now,
        revoked_at=None,
    )
    with db.session(write=True) as session:
        session.add(row)
        session.flush()
        return _key(row), new.key


def find_api_key(db: StateDB, key: str) -> ApiKey | None:
    """The live (unrevoked) key matching ``key``, or None."""
    prefix = api_key_prefix(key)
    if prefix is None:
        return None
    with db.session() as session:
        row = session.execute(
            select(ApiKeyRow).where(ApiKeyRow.prefix == prefix)
        ).scalar_one_or_none()
        if row is None or row.revoked_at is not None or not same_hash(key, row.key_hash):
            return None
        return _key(row)


def list_api_keys(db: StateDB) -> list[ApiKey]:
    """Every key, revoked ones included, by id."""
    with db.session() as session:
        return [
            _key(r) for r in session.execute(select(ApiKeyRow).order_by(ApiKeyRow.id)).scalars()
        ]


def revoke_api_key(db: StateDB, key_id: int, *, now: datetime) -> ApiKey | None:
    """Revoke (idempotently: the first time counts); None when there is no such key."""
    with db.session(write=True) as session:
        row = session.get(ApiKeyRow, key_id)
        if row is None:
            return None
        if row.revoked_at is None:
            row.revoked_at = now
            session.flush()
        return _key(row)


def _clip(text: str) -> str:
    # Stored as given by the client: bounded, and without NUL (PostgreSQL text refuses it).
    return text.replace("\x00", "")[:64]


def login_retry_after(db: StateDB, username: str, address: str, now_ns: int) -> int | None:
    """Seconds until a login for ``username`` from ``address`` may be tried again, or None
    when neither has reached its failure limit within the window."""
    since = now_ns - LOGIN_WINDOW_S * _NS
    waits: list[int] = []
    with db.session() as session:
        for column, value, limit in (
            (LoginAttemptRow.username, _clip(username), MAX_FAILURES_PER_USERNAME),
            (LoginAttemptRow.address, _clip(address), MAX_FAILURES_PER_ADDRESS),
        ):
            times = session.execute(
                select(LoginAttemptRow.at_ns)
                .where(column == value, LoginAttemptRow.at_ns > since)
                .order_by(LoginAttemptRow.at_ns.desc())
                .limit(limit)
            ).scalars()
            recent = list(times)
            if len(recent) >= limit:
                # Allowed again once the oldest of the last `limit` failures leaves the window.
                waits.append(recent[-1] + LOGIN_WINDOW_S * _NS - now_ns)
    if not waits:
        return None
    return max(1, -(-max(waits) // _NS))


def record_login_failure(db: StateDB, username: str, address: str, now_ns: int) -> None:
    """Remember a failed login; forget failures older than the window."""
    with db.session(write=True) as session:
        session.execute(
            delete(LoginAttemptRow).where(LoginAttemptRow.at_ns <= now_ns - LOGIN_WINDOW_S * _NS)
        )
        session.add(LoginAttemptRow(username=_clip(username), address=_clip(address), at_ns=now_ns))


def clear_login_failures(db: StateDB, username: str) -> None:
    """A successful login forgets that username's failures (not the address's: someone with
    one valid account must not be able to reset the limit while guessing others)."""
    with db.session(write=True) as session:
        session.execute(delete(LoginAttemptRow).where(LoginAttemptRow.username == _clip(username)))
