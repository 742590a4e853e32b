"""The composition root's inputs: settings from the environment."""

from __future__ import annotations

import pytest
from calls_platform.settings import ConfigError
from recordings.config import DEFAULT_MAX_BYTES, Settings
from recordings.domain import RetryPolicy
from recordings.s3 import S3Settings

NAMES = (
    "RECORDINGS_DIR",
    "RECORDINGS_MAX_BYTES",
    "RECORDINGS_S3_BUCKET",
    "RECORDINGS_S3_ENDPOINT",
    "RECORDINGS_S3_REGION",
    "RECORDINGS_S3_ACCESS_KEY",
    "RECORDINGS_S3_SECRET_KEY",
    "RECORDINGS_DOWNLOAD_ATTEMPTS",
    "RECORDINGS_RETRY_BASE_SECONDS",
    "RECORDINGS_RETRY_MAX_SECONDS",
    "RECORDINGS_PORT",
    "RECORDINGS_SPOOL_DIR",
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "1" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token")
    return monkeypatch


def test_defaults_store_locally_with_a_200_mib_limit_and_five_attempts(
    env: pytest.MonkeyPatch,
) -> None:
    settings = Settings.from_env()
    assert settings.s3 is None
    assert settings.recordings_dir == "var/recordings"
    assert settings.max_bytes == DEFAULT_MAX_BYTES == 200 * 1024 * 1024
    assert settings.retry == RetryPolicy(max_attempts=5, base_seconds=1, max_seconds=30)
    assert settings.port == 8083
    assert settings.spool_dir is None


def test_a_bucket_selects_s3_storage(env: pytest.MonkeyPatch) -> None:
    s3 = "BUCKET=calls-recordings ENDPOINT=http://minio:9000 REGION=eu-west-1 ACCESS_KEY=key"
    for name, value in (setting.split("=") for setting in f"{s3} SECRET_KEY=secret".split()):
        env.setenv(f"RECORDINGS_S3_{name}", value)
    assert Settings.from_env().s3 == S3Settings(
        bucket="calls-recordings",
        endpoint_url="http://minio:9000",
        region="eu-west-1",
        access_key="key",
        secret_key="secret",
    )


def test_empty_s3_credentials_leave_them_to_the_default_chain(env: pytest.MonkeyPatch) -> None:
    env.setenv("RECORDINGS_S3_BUCKET", "calls-recordings")
    env.setenv("RECORDINGS_S3_ACCESS_KEY", "")
    s3 = Settings.from_env().s3
    assert s3 is not None
    assert (s3.endpoint_url, s3.access_key, s3.secret_key) == (None, None, None)


def test_limits_and_retries_are_configurable(env: pytest.MonkeyPatch) -> None:
    env.setenv("RECORDINGS_MAX_BYTES", "1024")
    env.setenv("RECORDINGS_DOWNLOAD_ATTEMPTS", "2")
    env.setenv("RECORDINGS_RETRY_BASE_SECONDS", "0.05")
    env.setenv("RECORDINGS_RETRY_MAX_SECONDS", "0.1")
    settings = Settings.from_env()
    assert settings.max_bytes == 1024
    assert settings.retry == RetryPolicy(max_attempts=2, base_seconds=0.05, max_seconds=0.1)


@pytest.mark.parametrize("name", ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"])
def test_the_carrier_credentials_are_required(env: pytest.MonkeyPatch, name: str) -> None:
    env.delenv(name)
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"):
        Settings.from_env()


def test_a_limit_of_nothing_is_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("RECORDINGS_MAX_BYTES", "0")
    with pytest.raises(ConfigError, match="RECORDINGS_MAX_BYTES"):
        Settings.from_env()
