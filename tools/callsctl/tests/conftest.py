"""Fixtures of the operator CLI's tests: a migrated database and a RabbitMQ vhost of their own,
and a runner that invokes `callsctl` in-process against them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from calls_events import CallInitiated, CallRequested, Envelope
from callsctl.cli import cli
from click.testing import CliRunner, Result

ORG = "org_callsctl"


@pytest.fixture(scope="session")
def ctl_database_url(database_factory: Callable[[str], str], ctl_amqp_url: str) -> str:
    """One database for the CLI tests, migrated by `python -m <service> migrate` for each."""
    url = database_factory("callsctl")
    for package in ("gateway", "dialer", "call_log", "recordings", "webhooks"):
        subprocess.run(
            [sys.executable, "-m", package, "migrate"],
            env={**os.environ, "DATABASE_URL": url, "AMQP_URL": ctl_amqp_url},
            check=True,
            capture_output=True,
        )
    return url


@pytest.fixture(scope="session")
def ctl_amqp_url(amqp_factory: Callable[[str], str]) -> str:
    return amqp_factory("callsctl")


Invoke = Callable[..., Result]


@pytest.fixture
def callsctl(ctl_database_url: str, ctl_amqp_url: str) -> Invoke:
    """Run `callsctl ARGS…` against this suite's database and vhost; fails on a non-zero exit
    unless `expect` says otherwise."""

    def invoke(*args: str, expect: int = 0, database_url: str | None = None) -> Result:
        result = CliRunner().invoke(
            cli,
            [
                "--database-url",
                database_url or ctl_database_url,
                "--amqp-url",
                ctl_amqp_url,
                *args,
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == expect, result.output
        return result

    return invoke


# what the test calls were requested with, besides their ids
REQUESTED = {
    "to_number": "+14155550100",
    "from_number": "+14155550199",
    "requested_by": "callsctl-test",
}


def call_events(
    call_id: uuid.UUID, *, at: datetime | None = None, initiated: bool = True
) -> list[Envelope]:
    stream = f"call-{call_id}"
    occurred = at or datetime.now(UTC)
    requested = CallRequested.model_validate({"call_id": call_id, **REQUESTED})
    initiations = [CallInitiated(call_id=call_id, call_sid="CA" + call_id.hex)]
    events: Sequence[Any] = [requested, *(initiations if initiated else [])]
    return [
        Envelope.wrap(e, stream_id=stream, organization_id=ORG, occurred_at=occurred)
        for e in events
    ]


def parse_json(result: Result) -> Any:
    return json.loads(result.stdout)
