"""Unit: the JWT verifier accepts only well-formed tokens of the one configured algorithm,
signed with our secret (HS256) or our identity provider's key (RS256/ES256)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from gateway.auth import (
    InvalidJwtConfig,
    JwtOptions,
    JwtVerifier,
    Principal,
    Unauthenticated,
    issue_token,
)

SECRET = "unit-test-secret-" + "s" * 64  # long enough for HS512 without a key-length warning
OTHER_SECRET = "another-secret-entirely-" + "o" * 32
verifier = JwtVerifier(JwtOptions(secrets=(SECRET,)))


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
    token = jwt.encode(claims(), None, algorithm="none")  # type: ignore[arg-type]  # "none" takes no key
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


# --- rotation, identity providers, audience and issuer ------------------------------------


def test_previous_secret_still_verifies_while_rotating() -> None:
    rotating = JwtVerifier(JwtOptions(secrets=(OTHER_SECRET, SECRET)))
    old = jwt.encode(claims(), SECRET, algorithm="HS256")
    new = jwt.encode(claims(sub="user_2"), OTHER_SECRET, algorithm="HS256")
    assert rotating.verify(bearer(old)).subject == "user_1"
    assert rotating.verify(bearer(new)).subject == "user_2"
    with pytest.raises(Unauthenticated, match="invalid token"):
        verifier.verify(bearer(new))  # once rotated out, the secret no longer verifies


def _rsa() -> tuple[Any, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public_pem


RSA_PRIVATE, RSA_PUBLIC_PEM = _rsa()


def test_rs256_with_a_public_key_accepts_tokens_signed_by_its_private_key() -> None:
    rs = JwtVerifier(JwtOptions(algorithm="RS256", public_key_pem=RSA_PUBLIC_PEM))
    token = jwt.encode(claims(), RSA_PRIVATE, algorithm="RS256")
    assert rs.verify(bearer(token)) == Principal(organization_id="org_acme", subject="user_1")


def test_rs256_refuses_a_token_signed_by_another_key() -> None:
    rs = JwtVerifier(JwtOptions(algorithm="RS256", public_key_pem=RSA_PUBLIC_PEM))
    other_private, _ = _rsa()
    with pytest.raises(Unauthenticated, match="invalid token"):
        rs.verify(bearer(jwt.encode(claims(), other_private, algorithm="RS256")))


def test_algorithm_confusion_hs256_signed_with_the_public_key_is_refused() -> None:
    """The classic attack: HMAC the token with the (public) RSA key as the secret."""
    rs = JwtVerifier(JwtOptions(algorithm="RS256", public_key_pem=RSA_PUBLIC_PEM))
    forged = hand_signed({"alg": "HS256", "typ": "JWT"}, claims(), key=RSA_PUBLIC_PEM)
    with pytest.raises(Unauthenticated, match="invalid token"):
        rs.verify(bearer(forged))
    unsigned = jwt.encode(claims(), None, algorithm="none")  # type: ignore[arg-type]  # no key
    with pytest.raises(Unauthenticated, match="invalid token"):
        rs.verify(bearer(unsigned))


def test_es256_with_a_jwks_picks_the_key_named_by_kid() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    keys = {kid: ec.generate_private_key(ec.SECP256R1()) for kid in ("k1", "k2")}
    jwks: dict[str, list[dict[str, Any]]] = {"keys": []}
    for kid, private in keys.items():
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
        jwks["keys"].append({**jwk, "kid": kid, "alg": "ES256", "use": "sig"})
    es = JwtVerifier(JwtOptions(algorithm="ES256", jwks_json=json.dumps(jwks)))
    for kid, private in keys.items():
        token = jwt.encode(claims(sub=kid), private, algorithm="ES256", headers={"kid": kid})
        assert es.verify(bearer(token)).subject == kid
    crossed = jwt.encode(claims(), keys["k1"], algorithm="ES256", headers={"kid": "k2"})
    with pytest.raises(Unauthenticated, match="invalid token"):
        es.verify(bearer(crossed))
    unknown = jwt.encode(claims(), keys["k1"], algorithm="ES256", headers={"kid": "k9"})
    with pytest.raises(Unauthenticated, match="unknown signing key"):
        es.verify(bearer(unknown))


def test_audience_and_issuer_are_checked_when_configured() -> None:
    strict = JwtVerifier(
        JwtOptions(secrets=(SECRET,), audience="calls-api", issuer="https://idp.example")
    )
    good = claims(aud="calls-api", iss="https://idp.example")
    assert strict.verify(bearer(jwt.encode(good, SECRET, algorithm="HS256"))).subject == "user_1"
    cases = [
        (claims(aud="other-api", iss="https://idp.example"), "another audience"),
        (claims(aud="calls-api", iss="https://evil.example"), "another issuer"),
        (claims(iss="https://idp.example"), "lacks the 'aud' claim"),
        (claims(aud="calls-api"), "lacks the 'iss' claim"),
    ]
    for payload, message in cases:
        with pytest.raises(Unauthenticated, match=message):
            strict.verify(bearer(jwt.encode(payload, SECRET, algorithm="HS256")))


def test_the_organization_claim_name_is_configurable() -> None:
    custom = JwtVerifier(JwtOptions(secrets=(SECRET,), organization_claim="https://x/org"))
    token = jwt.encode(claims(**{"https://x/org": "org_idp", "org_id": None}), SECRET)
    assert custom.verify(bearer(token)).organization_id == "org_idp"


def test_clock_skew_leeway_is_configurable() -> None:
    token = jwt.encode(claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="token expired"):
        JwtVerifier(JwtOptions(secrets=(SECRET,), leeway_seconds=0)).verify(bearer(token))


@pytest.mark.parametrize(
    "options",
    [
        JwtOptions(secrets=("",)),
        JwtOptions(algorithm="RS256"),
        JwtOptions(algorithm="RS256", public_key_pem="not a key"),
        JwtOptions(algorithm="ES256", jwks_json='{"keys": []}'),
        JwtOptions(algorithm="ES256", jwks_json="{not json"),
        JwtOptions(algorithm="none", secrets=(SECRET,)),
        JwtOptions(algorithm="HS512", secrets=(SECRET,)),
    ],
)
def test_unusable_configuration_fails_at_start_up(options: JwtOptions) -> None:
    with pytest.raises(InvalidJwtConfig):
        JwtVerifier(options)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_verified_token_is_remembered_until_it_expires_as_its_full_check_would_say() -> None:
    clock = Clock()
    remembering = JwtVerifier(JwtOptions(secrets=(SECRET,), leeway_seconds=30), clock=clock)
    exp = int(clock.now) + 60
    token = jwt.encode(claims(exp=exp), SECRET, algorithm="HS256")
    first = remembering.verify(bearer(token))
    clock.now = exp + 29.9  # within the leeway: still good
    assert remembering.verify(bearer(token)) == first
    clock.now = exp + 30  # where PyJWT's own check refuses it (exp <= now - leeway)
    with pytest.raises(Unauthenticated, match="token expired"):
        remembering.verify(bearer(token))


def test_a_refused_token_is_not_remembered_and_a_near_copy_of_a_good_one_is_checked() -> None:
    remembering = JwtVerifier(JwtOptions(secrets=(SECRET,)))
    good = jwt.encode(claims(), SECRET, algorithm="HS256")
    forged = jwt.encode(claims(org_id="org_other"), OTHER_SECRET, algorithm="HS256")
    assert remembering.verify(bearer(good)).organization_id == "org_acme"
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            remembering.verify(bearer(forged))
    header, payload, signature = good.split(".")
    tampered = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(Unauthenticated):
        remembering.verify(bearer(tampered))


def test_remembered_tokens_are_bounded_the_longest_remembered_going_first() -> None:
    clock = Clock()
    remembering = JwtVerifier(JwtOptions(secrets=(SECRET,)), clock=clock, kept=2)
    exp = int(clock.now) + 60
    tokens = [
        jwt.encode(claims(sub=f"user_{i}", exp=exp), SECRET, algorithm="HS256") for i in range(3)
    ]
    for token in tokens:
        remembering.verify(bearer(token))
    # past expiry by the verifier's clock only: a remembered token is refused without a full
    # check, the forgotten first one gets the full check, which (real time) still passes
    clock.now = exp + 3600
    for token in tokens[1:]:
        with pytest.raises(Unauthenticated, match="token expired"):
            remembering.verify(bearer(token))
    assert remembering.verify(bearer(tokens[0])).subject == "user_0"
