"""The gateway's settings, read from the environment once, in main()."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from calls_platform.settings import BrokerSettings, broker_env

DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-in-production"


@dataclass(frozen=True)
class Settings(BrokerSettings):
    host: str
    port: int
    public_base_url: str
    jwt_secret: str
    twilio_account_sid: str
    twilio_auth_token: str
    call_log_url: str
    max_batch_size: int
    max_body_bytes: int
    agent_stream_url: str = "wss://agent-runtime.invalid/stream"
    # the recordings service's internal API (recordings are streamed through the gateway)
    recordings_url: str = "http://127.0.0.1:8083"
    webhooks_url: str = "http://127.0.0.1:8084"
    # JWT verification (see docs/security.md): HS256 with jwt_secret (and a previous secret
    # while rotating), or RS256/ES256 with a PEM public key or a JWKS.
    jwt_algorithm: str = "HS256"
    jwt_previous_secret: str = ""
    jwt_public_key: str = ""
    jwt_jwks: str = ""
    jwt_audience: str = ""
    jwt_issuer: str = ""
    jwt_leeway_seconds: int = 30
    jwt_organization_claim: str = "org_id"
    # the previous Twilio auth token, still accepted on webhooks while rotating
    twilio_previous_auth_token: str = ""
    # write requests (POST, PUT, DELETE) per second and burst; 0 turns a limit off
    rate_limit_org_per_second: float = 20.0
    rate_limit_org_burst: int = 100
    rate_limit_key_per_second: float = 10.0
    rate_limit_key_burst: int = 50

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        port = int(env.get("GATEWAY_PORT", "8080"))
        return cls(
            **broker_env(),
            host=env.get("GATEWAY_HOST", "127.0.0.1"),
            port=port,
            public_base_url=env.get("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}").rstrip("/"),
            jwt_secret=env.get("JWT_SECRET", DEV_JWT_SECRET),
            twilio_account_sid=env.get("TWILIO_ACCOUNT_SID", ""),
            twilio_auth_token=env.get("TWILIO_AUTH_TOKEN", ""),
            call_log_url=env.get("CALL_LOG_URL", "http://127.0.0.1:8081").rstrip("/"),
            max_batch_size=int(env.get("MAX_BATCH_SIZE", "10000")),
            max_body_bytes=int(env.get("MAX_BODY_BYTES", str(1024 * 1024))),
            agent_stream_url=env.get("AGENT_STREAM_URL", "wss://agent-runtime.invalid/stream"),
            recordings_url=env.get("RECORDINGS_URL", "http://127.0.0.1:8083").rstrip("/"),
            webhooks_url=env.get("WEBHOOKS_URL", "http://127.0.0.1:8084").rstrip("/"),
            jwt_algorithm=env.get("JWT_ALGORITHM", "HS256"),
            jwt_previous_secret=env.get("JWT_PREVIOUS_SECRET", ""),
            jwt_public_key=_value_or_file(env, "JWT_PUBLIC_KEY"),
            jwt_jwks=_value_or_file(env, "JWT_JWKS"),
            jwt_audience=env.get("JWT_AUDIENCE", ""),
            jwt_issuer=env.get("JWT_ISSUER", ""),
            jwt_leeway_seconds=int(env.get("JWT_LEEWAY_SECONDS", "30")),
            jwt_organization_claim=env.get("JWT_ORGANIZATION_CLAIM", "org_id"),
            twilio_previous_auth_token=env.get("TWILIO_PREVIOUS_AUTH_TOKEN", ""),
            rate_limit_org_per_second=float(env.get("RATE_LIMIT_ORG_PER_SECOND", "20")),
            rate_limit_org_burst=int(env.get("RATE_LIMIT_ORG_BURST", "100")),
            rate_limit_key_per_second=float(env.get("RATE_LIMIT_KEY_PER_SECOND", "10")),
            rate_limit_key_burst=int(env.get("RATE_LIMIT_KEY_BURST", "50")),
        )


def _value_or_file(env: Mapping[str, str], name: str) -> str:
    """`NAME` itself, or the contents of the file `NAME_FILE` names (a mounted Secret)."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    return Path(path).read_text() if path else ""
