"""Unit: the JWT verifier accepts only well-formed HS256 tokens signed with our secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from gateway.auth import JwtVerifier, Principal, Unauthenticated, issue_token

SECRET = "unit-test-secret-" + "s" * 64  # long enough for HS512 without a key-length warning
OTHER_SECRET = "another-secret-entirely-" + "o" * 32
verifier = JwtVerifier(SECRET)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "user_1", "org_id": "org_acme", "iat": now, "exp": now + 60}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], payload: dict[str, Any], key: str = SECRET) -> str:
    """A token HMAC-SHA256-signed with `key` whatever its header claims (PyJWT won't forge)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    mac = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_valid_token_yields_its_principal() -> None:
    token = issue_token(SECRET, organization_id="org_acme", subject="user_1", ttl_seconds=60)
    assert verifier.verify(bearer(token)) == Principal(organization_id="org_acme", subject="user_1")


def test_scheme_is_case_insensitive_and_surrounding_space_tolerated() -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert verifier.verify(f"bearer  {token} ").organization_id == "org_acme"


def test_token_within_the_leeway_is_still_accepted() -> None:
    token = jwt.encode(claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256")
    assert verifier.verify(bearer(token)).subject == "user_1"


@pytest.mark.parametrize("header", [None, ""])
def test_missing_header_is_refused(header: str | None) -> None:
    with pytest.raises(Unauthenticated, match="missing Authorization header"):
        verifier.verify(header)


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Token abc.def.ghi",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        jwt.encode(claims(), SECRET, algorithm="HS256"),  # the token without a scheme
    ],
)
def test_non_bearer_header_is_refused(header: str) -> None:
    with pytest.raises(Unauthenticated, match="Bearer <token>"):
        verifier.verify(header)


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "a.b", "....", "eyJhbGciOiJIUzI1NiJ9.e30."])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(Unauthenticated, match="invalid token"):
        verifier.verify(bearer(token))


def test_token_signed_with_another_secret_is_refused() -> None:
    token = jwt.encode(claims(), OTHER_SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="invalid token"):
        verifier.verify(bearer(token))


def test_tampered_payload_is_refused() -> None:
    header, _, signature = jwt.encode(claims(), SECRET, algorithm="HS256").split(".")
    forged = _b64(json.dumps(claims(org_id="org_victim")).encode())
    with pytest.raises(Unauthenticated, match="invalid token"):
        verifier.verify(bearer(f"{header}.{forged}.{signature}"))


def test_expired_token_is_refused() -> None:
    token = jwt.encode(claims(exp=int(time.time()) - 3600), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="token expired"):
        verifier.verify(bearer(token))


def test_issued_token_past_its_ttl_is_refused() -> None:
    token = issue_token(SECRET, organization_id="org_acme", subject="user_1", ttl_seconds=-3600)
    with pytest.raises(Unauthenticated, match="token expired"):
        verifier.verify(bearer(token))


def test_alg_none_is_refused() -> None:
    token = jwt.encode(claims(), None, algorithm="none")
    assert token.endswith(".")  # unsigned
    with pytest.raises(Unauthenticated, match="invalid token"):
        verifier.verify(bearer(token))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_hand_made_unsigned_token_is_refused(alg: str) -> None:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims()).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        with pytest.raises(Unauthenticated, match="invalid token"):
            verifier.verify(bearer(token))


@pytest.mark.parametrize("alg", ["RS256", "HS512", "HS384", "ES256", "PS256", "EdDSA", "hs256"])
def test_hmac_sha256_signature_under_another_alg_header_is_refused(alg: str) -> None:
    """The signature is valid HS256 with our secret; only the header lies about the algorithm."""
    token = hand_signed({"alg": alg, "typ": "JWT"}, claims())
    with pytest.raises(Unauthenticated, match="invalid token"):
        verifier.verify(bearer(token))


def test_hand_signed_hs256_control_is_accepted() -> None:
    """Guards the test above: the same forgery with an honest header verifies."""
    token = hand_signed({"alg": "HS256", "typ": "JWT"}, claims())
    assert verifier.verify(bearer(token)).organization_id == "org_acme"


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_token_properly_signed_with_another_hmac_algorithm_is_refused(alg: str) -> None:
    token = jwt.encode(claims(), SECRET, algorithm=alg)
    with pytest.raises(Unauthenticated, match="invalid token"):
        verifier.verify(bearer(token))


def test_rs256_signed_token_is_refused() -> None:
    """An RS256 token (as an identity provider would sign it) is not ours to accept."""
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k1"}).encode())
    payload = _b64(json.dumps(claims()).encode())
    signature = _b64(b"\x01" * 256)  # shaped like a 2048-bit RSA signature
    token = f"{header}.{payload}.{signature}"
    with pytest.raises(Unauthenticated, match="invalid token"):
        verifier.verify(bearer(token))


@pytest.mark.parametrize("claim", ["sub", "org_id", "exp"])
def test_missing_required_claim_is_refused(claim: str) -> None:
    token = jwt.encode(claims(**{claim: None}), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match=f"lacks the '{claim}' claim"):
        verifier.verify(bearer(token))


@pytest.mark.parametrize(
    "overrides",
    [{"org_id": ""}, {"sub": ""}, {"org_id": 42}, {"org_id": ["org_acme"]}, {"org_id": {}}],
)
def test_empty_or_non_string_identity_claims_are_refused(overrides: dict[str, Any]) -> None:
    token = jwt.encode(claims(**overrides), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        verifier.verify(bearer(token))


def test_non_numeric_exp_is_refused() -> None:
    token = jwt.encode(claims(exp="tomorrow"), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="invalid token"):
        verifier.verify(bearer(token))


def test_token_not_yet_valid_is_refused() -> None:
    token = jwt.encode(claims(nbf=int(time.time()) + 3600), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="invalid token"):
        verifier.verify(bearer(token))
