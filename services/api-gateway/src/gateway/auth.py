"""Who is calling: a Bearer JWT or an API key, resolved to an organization scope.

JWTs are HS256 with `JWT_SECRET` by default, or RS256/ES256 verified with a configured public
key or JWKS for deployments behind an identity provider. Exactly one algorithm is accepted, so
`alg: none` and algorithm confusion (an HS256 token "signed" with our public key) are refused
before any key is touched. API keys are looked up by hash (see api_keys.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import jwt

READ: Final = "calls:read"
WRITE: Final = "calls:write"
# the /webhook-endpoints routes, reads and writes alike (a key that reads calls need not see
# or change where they are pushed)
WEBHOOKS_MANAGE: Final = "webhooks:manage"
SCOPES: Final = frozenset({READ, WRITE, WEBHOOKS_MANAGE})

ALGORITHMS: Final = ("HS256", "RS256", "ES256")
# verified tokens remembered (a client sends the same token with every request until it
# expires): decoding and checking one was a tenth of the gateway's CPU per POST /calls
VERIFIED_TOKENS_KEPT: Final = 4096


@dataclass(frozen=True)
class Principal:
    organization_id: str
    subject: str
    # A JWT speaks for a user of the organization: every scope. An API key carries its own.
    scopes: frozenset[str] = SCOPES
    api_key_id: uuid.UUID | None = None

    @property
    def is_api_key(self) -> bool:
        return self.api_key_id is not None


class Unauthenticated(Exception):
    """The request carries no usable credentials; the message says why, for the 401 body."""


class InvalidJwtConfig(ValueError):
    """The JWT settings cannot verify anything (e.g. RS256 without a key); fails at start-up."""


@dataclass(frozen=True)
class JwtOptions:
    algorithm: str = "HS256"  # one of ALGORITHMS
    # HS256: the current secret first, then any previous one still honoured while rotating.
    secrets: tuple[str, ...] = ()
    # RS256/ES256: a PEM public key, or the JSON text of a JWKS (keys chosen by `kid`).
    public_key_pem: str = ""
    jwks_json: str = ""
    audience: str = ""
    issuer: str = ""
    leeway_seconds: int = 30
    organization_claim: str = "org_id"


class JwtVerifier:
    """Verifies Bearer tokens. A token that verified is remembered, by its exact text, until
    it expires (`exp` + leeway, the moment its full check would refuse it), so a client's
    every request after its first costs a dictionary lookup. The keys and claims it is checked
    against are fixed for the verifier's life (configuration is read at start-up)."""

    def __init__(
        self,
        options: JwtOptions,
        *,
        clock: Callable[[], float] = time.time,
        kept: int = VERIFIED_TOKENS_KEPT,
    ) -> None:
        if options.algorithm not in ALGORITHMS:
            raise InvalidJwtConfig(f"JWT_ALGORITHM must be one of {', '.join(ALGORITHMS)}")
        self._options = options
        self._keys = self._load_keys(options)
        self._clock = clock
        self._kept = kept
        self._verified: dict[str, tuple[Principal, float]] = {}

    @staticmethod
    def _load_keys(options: JwtOptions) -> dict[str | None, list[Any]]:
        """Verification keys by `kid` (None: keys for tokens that name no kid)."""
        if options.algorithm == "HS256":
            secrets = [s for s in options.secrets if s]
            if not secrets:
                raise InvalidJwtConfig("HS256 needs JWT_SECRET")
            return {None: secrets}
        if options.jwks_json:
            try:
                jwks = jwt.PyJWKSet.from_json(options.jwks_json)
            except (jwt.PyJWKSetError, jwt.PyJWKError, jwt.InvalidKeyError, ValueError) as exc:
                raise InvalidJwtConfig(f"JWT_JWKS_FILE is not a usable JWKS: {exc}") from None
            usable = [k for k in jwks.keys if k.algorithm_name == options.algorithm]
            if not usable:
                raise InvalidJwtConfig(f"the JWKS has no {options.algorithm} key")
            keys: dict[str | None, list[Any]] = {}
            for key in usable:
                keys.setdefault(key.key_id, []).append(key.key)
            if len(usable) == 1:
                keys.setdefault(None, []).append(usable[0].key)
            return keys
        if options.public_key_pem:
            try:
                algorithm = jwt.get_algorithm_by_name(options.algorithm)
                key = algorithm.prepare_key(options.public_key_pem)
            except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
                raise InvalidJwtConfig(f"JWT_PUBLIC_KEY is not a usable key: {exc}") from None
            return {None: [key]}
        raise InvalidJwtConfig(f"{options.algorithm} needs JWT_PUBLIC_KEY(_FILE) or JWT_JWKS_FILE")

    def verify(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated("missing Authorization header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("Authorization header must be 'Bearer <token>'")
        remembered = self._verified.get(token)
        if remembered is not None:
            principal, valid_until = remembered
            if self._clock() < valid_until:
                return principal
            del self._verified[token]
            raise Unauthenticated("token expired")
        principal, expires_at = self._decode(token)
        if len(self._verified) >= self._kept:
            del self._verified[next(iter(self._verified))]  # the longest remembered
        self._verified[token] = (principal, expires_at + self._options.leeway_seconds)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        """The token's principal and `exp`, after every check; Unauthenticated if one fails."""
        options = self._options
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("invalid token") from None
        # Pinning one algorithm refuses "none" and every confusion between key kinds.
        if header.get("alg") != options.algorithm:
            raise Unauthenticated("invalid token")
        kid = header.get("kid")
        candidates = self._keys.get(kid if isinstance(kid, str) else None, [])
        if not candidates:
            raise Unauthenticated("invalid token: unknown signing key")
        required = ["sub", options.organization_claim, "exp"]
        if options.audience:
            required.append("aud")
        if options.issuer:
            required.append("iss")
        claims: dict[str, Any] | None = None
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[options.algorithm],
                    audience=options.audience or None,
                    issuer=options.issuer or None,
                    leeway=options.leeway_seconds,
                    options={"require": required},
                )
                break
            except jwt.InvalidSignatureError:
                continue  # a previous secret may still verify it while secrets rotate
            except jwt.ExpiredSignatureError:
                raise Unauthenticated("token expired") from None
            except jwt.MissingRequiredClaimError as exc:
                raise Unauthenticated(f"token lacks the {exc.claim!r} claim") from None
            except jwt.InvalidAudienceError:
                raise Unauthenticated("token is for another audience") from None
            except jwt.InvalidIssuerError:
                raise Unauthenticated("token is from another issuer") from None
            except jwt.InvalidTokenError:
                raise Unauthenticated("invalid token") from None
        if claims is None:
            raise Unauthenticated("invalid token")
        org, sub = claims[options.organization_claim], claims["sub"]
        if not isinstance(org, str) or not org or not isinstance(sub, str) or not sub:
            raise Unauthenticated(
                f"token claims {options.organization_claim!r} and 'sub' must be non-empty strings"
            )
        return Principal(organization_id=org, subject=sub), float(claims["exp"])


def issue_token(secret: str, *, organization_id: str, subject: str, ttl_seconds: int) -> str:
    """A token for development and tests (production tokens come from your identity provider)."""
    now = int(time.time())
    return jwt.encode(
        {"sub": subject, "org_id": organization_id, "iat": now, "exp": now + ttl_seconds},
        secret,
        algorithm="HS256",
    )
