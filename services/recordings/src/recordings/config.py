"""The recordings service's settings, read from the environment once, in main()."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from calls_platform.settings import BrokerSettings, ConfigError, broker_env

from .domain import RetryPolicy
from .s3 import S3Settings

DEFAULT_MAX_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Settings(BrokerSettings):
    host: str
    port: int
    twilio_account_sid: str
    twilio_auth_token: str
    # local storage root (used when no S3 bucket is configured)
    recordings_dir: str
    # S3-compatible storage instead of the local directory
    s3: S3Settings | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # a download attempt gives up after this long without connecting or receiving a byte
    download_timeout_seconds: float = 30.0
    # recordings downloaded at once by one replica (the consumer's prefetch)
    concurrency: int = 4
    # where downloads are spooled while they are checked (None: the system's temp directory)
    spool_dir: str | None = None
    # a RecordingReported this old whose recording has no row is taken in from the event
    # store (its message never reached the recordings queue)
    intake_grace_seconds: float = 120.0

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        account_sid, auth_token = env.get("TWILIO_ACCOUNT_SID"), env.get("TWILIO_AUTH_TOKEN")
        if not account_sid or not auth_token:
            raise ConfigError("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set")
        bucket = env.get("RECORDINGS_S3_BUCKET", "")
        s3 = (
            S3Settings(
                bucket=bucket,
                endpoint_url=env.get("RECORDINGS_S3_ENDPOINT") or None,
                region=env.get("RECORDINGS_S3_REGION") or None,
                access_key=env.get("RECORDINGS_S3_ACCESS_KEY") or None,
                secret_key=env.get("RECORDINGS_S3_SECRET_KEY") or None,
            )
            if bucket
            else None
        )
        max_bytes = int(env.get("RECORDINGS_MAX_BYTES", str(DEFAULT_MAX_BYTES)))
        if max_bytes <= 0:
            raise ConfigError("RECORDINGS_MAX_BYTES must be positive")
        return cls(
            **broker_env(),
            host=env.get("RECORDINGS_HOST", "127.0.0.1"),
            port=int(env.get("RECORDINGS_PORT", "8083")),
            twilio_account_sid=account_sid,
            twilio_auth_token=auth_token,
            recordings_dir=env.get("RECORDINGS_DIR", "var/recordings"),
            s3=s3,
            max_bytes=max_bytes,
            retry=RetryPolicy(
                max_attempts=int(env.get("RECORDINGS_DOWNLOAD_ATTEMPTS", "5")),
                base_seconds=float(env.get("RECORDINGS_RETRY_BASE_SECONDS", "1")),
                max_seconds=float(env.get("RECORDINGS_RETRY_MAX_SECONDS", "30")),
            ),
            download_timeout_seconds=float(env.get("RECORDINGS_DOWNLOAD_TIMEOUT_SECONDS", "30")),
            concurrency=int(env.get("RECORDINGS_CONCURRENCY", "4")),
            spool_dir=env.get("RECORDINGS_SPOOL_DIR") or None,
            intake_grace_seconds=float(env.get("RECORDINGS_INTAKE_GRACE_SECONDS", "120")),
        )
