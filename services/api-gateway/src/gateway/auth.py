"""Who is calling: Bearer JWTs (HS256 with JWT_SECRET), resolved to an organization scope."""

from __future__ import annotations

from dataclasses import dataclass

import jwt


@dataclass(frozen=True)
class Principal:
    organization_id: str
    subject: str


class Unauthenticated(Exception):
    """The request carries no usable credentials; the message says why, for the 401 body."""


class JwtVerifier:
    # Only HS256 is accepted: "none" and any algorithm confusion are refused by construction.
    ALGORITHMS = ("HS256",)

    def __init__(self, secret: str, *, leeway_seconds: int = 30) -> None:
        self._secret = secret
        self._leeway = leeway_seconds

    def verify(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated("missing Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("Authorization header must be 'Bearer <token>'")
        try:
            claims = jwt.decode(
                token.strip(),
                self._secret,
                algorithms=list(self.ALGORITHMS),
                leeway=self._leeway,
                options={"require": ["sub", "org_id", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("invalid token") from None
        org, sub = claims["org_id"], claims["sub"]
        if not isinstance(org, str) or not org or not isinstance(sub, str) or not sub:
            raise Unauthenticated("token claims 'org_id' and 'sub' must be non-empty strings")
        return Principal(organization_id=org, subject=sub)


def issue_token(secret: str, *, organization_id: str, subject: str, ttl_seconds: int) -> str:
    """A token for development and tests (production tokens come from your identity provider)."""
    import time

    now = int(time.time())
    return jwt.encode(
        {"sub": subject, "org_id": organization_id, "iat": now, "exp": now + ttl_seconds},
        secret,
        algorithm="HS256",
    )
