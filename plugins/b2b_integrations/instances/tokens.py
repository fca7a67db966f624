"""Customer tokens: short-lived, signed, naming one customer, for pages a SaaS product embeds.

The SaaS backend (authenticated as an Airflow user) mints one for its customer; with it every read and
write of the instances API is confined to that customer. HS256 JWTs with their own issuer and audience,
signed with ``B2B_CUSTOMER_TOKEN_SECRET`` or, when unset, a key derived from Airflow's
``[api_auth] jwt_secret`` (derived, so a customer token is never accepted as an Airflow token or back).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

ISSUER = "b2b-integrations"
AUDIENCE = "b2b-customer"
SCOPES = ("read", "write")
MAX_TTL = timedelta(hours=24)
DEFAULT_TTL = timedelta(minutes=15)


class InvalidToken(Exception):
    """Expired, forged, malformed or not a customer token: the caller gets one 401 for all of them."""


class NoSigningKey(Exception):
    """Neither B2B_CUSTOMER_TOKEN_SECRET nor Airflow's jwt_secret is configured."""


@dataclass(frozen=True)
class CustomerToken:
    customer: str
    scopes: frozenset[str]
    expires_at: datetime


def _key() -> bytes:
    own = os.environ.get("B2B_CUSTOMER_TOKEN_SECRET", "")
    if own:
        return own.encode()
    from airflow.configuration import conf

    airflow_secret = conf.get("api_auth", "jwt_secret", fallback="") or ""
    if not airflow_secret:
        raise NoSigningKey(
            "customer tokens need a signing key: set B2B_CUSTOMER_TOKEN_SECRET (or [api_auth] jwt_secret), "
            "the same on every API server"
        )
    return hmac.new(airflow_secret.encode(), b"b2b-integrations customer token", hashlib.sha256).digest()


def mint(
    customer: str, scopes: tuple[str, ...] = SCOPES, ttl: timedelta = DEFAULT_TTL
) -> tuple[str, datetime]:
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {list(SCOPES)}")
    if not timedelta(seconds=1) <= ttl <= MAX_TTL:
        raise ValueError(f"ttl must be between 1 second and {int(MAX_TTL.total_seconds())} seconds")
    now = datetime.now(UTC).replace(microsecond=0)
    expires = now + ttl
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": customer,
        "scope": " ".join(sorted(set(scopes))),
        "iat": now,
        "exp": expires,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, _key(), algorithm="HS256"), expires


def verify(token: str) -> CustomerToken:
    try:
        claims = jwt.decode(
            token,
            _key(),
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
    except (jwt.PyJWTError, NoSigningKey) as e:
        raise InvalidToken(str(e)) from e
    scopes = frozenset(str(claims.get("scope", "")).split()) & set(SCOPES)
    if not isinstance(claims.get("sub"), str) or not scopes:
        raise InvalidToken("not a customer token")
    return CustomerToken(claims["sub"], scopes, datetime.fromtimestamp(claims["exp"], UTC))
