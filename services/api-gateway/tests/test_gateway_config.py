"""The composition root's inputs: settings from the environment, and repeatable migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from gateway.__main__ import migrate
from gateway.config import DEV_JWT_SECRET, Settings

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Gateway


def test_settings_from_env_strip_trailing_slashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The public URL prefixes request paths when webhook signatures are checked."""
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://calls.example.com/")
    monkeypatch.setenv("CALL_LOG_URL", "http://call-log:8081/")
    monkeypatch.setenv("RECORDINGS_URL", "http://recordings:8083/")
    monkeypatch.setenv("MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("MIGRATE_ON_START", "false")
    settings = Settings.from_env()
    assert settings.public_base_url == "https://calls.example.com"
    assert settings.call_log_url == "http://call-log:8081"
    assert settings.recordings_url == "http://recordings:8083"
    assert settings.max_batch_size == 7
    assert settings.migrate_on_start is False


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GATEWAY_PORT",
        "PUBLIC_BASE_URL",
        "JWT_SECRET",
        "MAX_BODY_BYTES",
        "RECORDINGS_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert settings.port == 8080
    assert settings.public_base_url == "http://127.0.0.1:8080"
    assert settings.jwt_secret == DEV_JWT_SECRET
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.recordings_url == "http://127.0.0.1:8083"


@pytest.mark.integration
async def test_migrate_can_run_again(gateway: Gateway) -> None:
    """Every replica migrates on start; a database already migrated is left as it is."""
    head = await gateway.head()
    await migrate(gateway.settings.database_url)
    async with gateway.pool.connection() as conn:
        cur = await conn.execute("SELECT name FROM gateway.schema_migrations ORDER BY name")
        names = [row["name"] for row in await cur.fetchall()]
    assert names == [
        "0001_agents.sql",
        "0002_idempotency_keys.sql",
        "0003_api_keys.sql",
        "0004_campaigns.sql",
    ]
    assert await gateway.head() == head
