"""Request and response bodies of the user and API-key routes.

Request bodies forbid unknown fields (422 naming the field): a role can only set what its
model lists, so e.g. a user editing their own profile cannot slip in ``roles``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from api.accounts import KEEPER_KEY_REFUSAL, KEY_ROLES_REFUSED
from api.models import Role
from api.security import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"

Username = Annotated[str, StringConstraints(pattern=USERNAME_PATTERN)]
DisplayName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Password = Annotated[
    str, StringConstraints(min_length=MIN_PASSWORD_CHARS, max_length=MAX_PASSWORD_CHARS)
]
BuildingId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
KeyName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_. -]{0,63}$")]
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]
"""A table row id in a path: bounded, so it fits a database integer."""
Roles = Annotated[list[Role], Field(min_length=1, max_length=len(Role))]
Buildings = Annotated[list[BuildingId], Field(max_length=500)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(_Request):
    """What an admin sets on a new user."""

    username: Username
    password: Password
    roles: Roles
    display_name: DisplayName | None = None
    buildings: Buildings = []


class UserUpdate(_Request):
    """What an admin may change on a user; absent fields stay as they are."""

    display_name: DisplayName | None = None
    password: Password | None = None
    roles: Roles | None = None
    buildings: Buildings | None = None
    disabled: bool | None = None


class UserSelfUpdate(_Request):
    """What a user may change on their own account: the name shown, nothing else."""

    display_name: DisplayName


class UserPublic(BaseModel):
    """A user as shown by the API (never the password hash)."""

    id: int
    username: str
    display_name: str
    roles: list[Role]
    buildings: list[str]
    disabled: bool
    created_at: datetime
    updated_at: datetime


class UserPage(BaseModel):
    """One page of users."""

    items: list[UserPublic]
    total: int
    limit: int
    offset: int


class Me(BaseModel):
    """The calling principal; ``buildings`` is null when it sees every building."""

    kind: Literal["user", "apikey"]
    id: int
    name: str
    roles: list[Role]
    buildings: list[str] | None


class ApiKeyCreate(_Request):
    """What an admin sets on a new API key (never the role keeper: 422)."""

    name: KeyName
    roles: Roles

    @field_validator("roles")
    @classmethod
    def _no_keeper(cls, roles: list[Role]) -> list[Role]:
        # Checked here too (accounts.create_api_key refuses it as well) so that the client
        # gets a 422 naming the field rather than a 500.
        if KEY_ROLES_REFUSED.intersection(roles):
            raise PydanticCustomError("api_key_role", KEEPER_KEY_REFUSAL)
        return roles


class ApiKeyPublic(BaseModel):
    """An API key's public facts."""

    id: int
    name: str
    prefix: str
    roles: list[Role]
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    """A new key: ``key`` is shown this once and cannot be retrieved later."""

    key: str


class TokenResponse(BaseModel):
    """The OAuth2 password flow's answer."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int
