"""Credentials: argon2 password hashes, short-lived JWTs, API keys, the failed-login limit.

JWTs are HS256-signed with a key derived from the data directory's signing key (an HMAC of
a fixed label), so the API needs no secret of its own and a token cannot be replayed as an
acknowledgement link signature or vice versa. Expiry is checked against the injected
:class:`~gateway.clock.Clock`, not the wall clock, so tests can move time.

API keys look like ``aw_<prefix>_<secret>``: the prefix (public, unique) finds the row, and
only the SHA-256 of the whole key is stored; a 256-bit random secret needs no slow hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.clock import Clock

ACCESS_TOKEN_TTL_S = 15 * 60
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
JWT_ALGORITHM = "HS256"
_JWT_LABEL = b"archwatch api access token v1"
API_KEY_PREFIX = "aw_"

_hasher = PasswordHasher()
# Verified against when the username is unknown, so both cases cost the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class PasswordPolicyError(ValueError):
    """The password is too short or too long (the message says which)."""


def check_password_policy(password: str) -> None:
    """Raise :class:`PasswordPolicyError` unless ``password`` is acceptable."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise PasswordPolicyError(
            f"the password must have at least {MIN_PASSWORD_CHARS} characters"
        )
    if len(password) > MAX_PASSWORD_CHARS:
        raise PasswordPolicyError(f"the password must have at most {MAX_PASSWORD_CHARS} characters")


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (policy checked first)."""
    check_password_policy(password)
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    """True when ``password`` matches; ``None`` (unknown user) costs a verification too."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token and how many seconds it lives."""

    token: str
    expires_in: int


TokenKind = Literal["access", "console"]
# A console session lasts a working shift: the account is re-checked on every page anyway,
# so a disabled user is out at the next click. The cookie is HttpOnly and SameSite=Strict.
CONSOLE_TTL_S = 8 * 3600


class TokenError(Exception):
    """The bearer token is forged, malformed or expired (the message says which)."""


class Tokens:
    """Issues and checks access tokens for user ids."""

    def __init__(
        self,
        key: bytes | Callable[[], bytes],
        clock: Clock,
        *,
        ttl_s: int = ACCESS_TOKEN_TTL_S,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("the token lifetime must be positive")
        self._key_source = key
        self._key: bytes | None = None
        self._clock = clock
        self.ttl_s = ttl_s

    def _secret(self) -> bytes:
        if self._key is None:
            base = self._key_source() if callable(self._key_source) else self._key_source
            self._key = hmac.new(base, _JWT_LABEL, hashlib.sha256).digest()
        return self._key

    def issue(self, user_id: int, *, kind: TokenKind = "access") -> AccessToken:
        """A token for ``user_id``: an API ``access`` token valid for :attr:`ttl_s` seconds,
        or a ``console`` session token valid for a working shift (CONSOLE_TTL_S)."""
        now = self._clock.now_ns() // 1_000_000_000
        ttl = self.ttl_s if kind == "access" else CONSOLE_TTL_S
        claims = {"sub": str(user_id), "iat": now, "exp": now + ttl, "typ": kind}
        token = jwt.encode(claims, self._secret(), algorithm=JWT_ALGORITHM)
        return AccessToken(token=token, expires_in=ttl)

    def check(self, token: str, *, kind: TokenKind = "access") -> int:
        """The user id a token of ``kind`` was issued for; :class:`TokenError` otherwise (a
        console session token is no API bearer token, and the other way round)."""
        try:
            claims = jwt.decode(
                token,
                self._secret(),
                algorithms=[JWT_ALGORITHM],
                # Expiry is checked below against the injected clock.
                options={"verify_exp": False, "verify_iat": False, "require": ["sub", "exp"]},
            )
        except jwt.InvalidTokenError:
            raise TokenError("the access token is invalid") from None
        exp, sub = claims.get("exp"), claims.get("sub")
        if claims.get("typ") != kind or not isinstance(exp, int) or not isinstance(sub, str):
            raise TokenError("the access token is invalid")
        if self._clock.now_ns() // 1_000_000_000 >= exp:
            raise TokenError("the access token has expired; log in again")
        if not sub.isdigit():
            raise TokenError("the access token is invalid")
        return int(sub)


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A freshly generated key: ``key`` is shown once; ``prefix`` and ``key_hash`` are kept."""

    key: str
    prefix: str
    key_hash: str


def api_key_hash(key: str) -> str:
    """Lowercase hex SHA-256 of the whole key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key() -> NewApiKey:
    """A random key with 256 bits of secret."""
    prefix = secrets.token_hex(6)
    key = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return NewApiKey(key=key, prefix=prefix, key_hash=api_key_hash(key))


def api_key_prefix(key: str) -> str | None:
    """The lookup prefix of a presented key, or None when it is not shaped like one."""
    if not key.startswith(API_KEY_PREFIX) or len(key) > 200:
        return None
    prefix, sep, secret = key[len(API_KEY_PREFIX) :].partition("_")
    if not sep or not secret or len(prefix) != 12 or prefix.strip("0123456789abcdef"):
        return None
    return prefix


def same_hash(key: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented key with a stored hash."""
    return hmac.compare_digest(api_key_hash(key), stored_hash)
