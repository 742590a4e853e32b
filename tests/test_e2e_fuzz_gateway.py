"""Fuzzing the gateway through the OpenAPI document it serves (schemathesis), with the rest of
the system running as real processes: for every documented operation, generated requests
(valid and invalid) with valid credentials must never get a 5xx, and every response must be
documented: its status code, content type, headers and body schema.

`make test` runs a short, derandomized pass (FUZZ_EXAMPLES per operation and mode, default 20);
`make fuzz` runs a long one. Half of the generated call and batch ids are swapped for ones
that exist, so the 200 paths (a completed call with a transcript, a batch with its calls) are
checked against their schemas too, not only the 404s.

Not checked: that every schema-valid request is accepted (schemathesis' positive_data_acceptance).
Here a valid body is rightly refused for reasons a schema cannot say: an agent_id that is not
this organization's, a caller ID that does not resolve, an Idempotency-Key sent again with
another body. Each of those answers is a documented 422, and is checked as such.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from calls_testing import new_org_id
from calls_testing.system import System
from gateway.openapi import OPERATIONS
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))


@dataclass(frozen=True)
class Seeded:
    """What the fuzzed organization has, so generated requests can hit real resources."""

    base_url: str
    headers: dict[str, str]
    call_id: str
    batch_id: str


def _wait_for(url: str, headers: dict[str, str], done: Any, seconds: float = 30) -> Any:
    """GET `url` until `done(body)` of a 200 (a `503 catching_up` is retried, as documented)."""
    deadline = time.monotonic() + seconds
    while True:
        answer = requests.get(url, headers=headers, timeout=10)
        body = answer.json()
        if answer.status_code == 200 and done(body):
            return body
        assert time.monotonic() < deadline, f"{url}: {answer.status_code} {body}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def seeded(system: System) -> Seeded:
    org = new_org_id("org_fuzz")
    base, headers = system.gateway, system.auth(org)
    suffix = str(uuid.uuid4().int)[:7]
    put = requests.put(
        f"{base}/sip-config",
        json={"default_from_number": f"+1415{suffix}"},
        headers=headers,
        timeout=10,
    )
    assert put.status_code == 200, put.text
    placed = requests.post(
        f"{base}/calls", json={"to_number": f"+1628{suffix}"}, headers=headers, timeout=10
    )
    assert placed.status_code == 202, placed.text
    call_id = placed.json()["call_id"]
    batch = requests.post(
        f"{base}/calls/batch",
        json={"to_numbers": [f"+1629{suffix}", f"+1630{suffix}"]},
        headers=headers,
        timeout=10,
    )
    assert batch.status_code == 202, batch.text
    batch_id = batch.json()["batch_id"]
    # a conversation on a finished call: the call detail then has a transcript and usage
    _wait_for(f"{base}/calls/{call_id}", headers, lambda c: c["status"] in ("completed", "failed"))
    reported = requests.post(
        f"{base}/calls/{call_id}/conversation",
        json={
            "transcript": [{"role": "agent", "content": "Hi!"}],
            "provider_usage": {"openai": {"type": "llm", "model": "gpt-4o"}},
        },
        headers=headers,
        timeout=10,
    )
    assert reported.status_code == 202, reported.text
    return Seeded(base_url=base, headers=headers, call_id=call_id, batch_id=batch_id)


@pytest.fixture(scope="module")
def served_schema(seeded: Seeded) -> Any:
    return schemathesis.openapi.from_url(f"{seeded.base_url}/openapi.json", timeout=10)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), [(op.method.upper(), op.path) for op in OPERATIONS])
def test_gateway_never_errors_and_answers_as_documented(
    served_schema: Any, seeded: Seeded, method: str, path: str, mode: GenerationMode
) -> None:
    operation = served_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.explicit, Phase.generate],
    )
    def fuzz(case: Any) -> None:
        for name, real in (("call_id", seeded.call_id), ("batch_id", seeded.batch_id)):
            value = (case.path_parameters or {}).get(name)
            if mode.is_positive and isinstance(value, str) and value[-1:] in "02468ace":
                case.path_parameters[name] = real
        case.call_and_validate(
            base_url=seeded.base_url,
            headers=seeded.headers,
            timeout=30,
            excluded_checks=[positive_data_acceptance],
        )

    fuzz()
