"""A client no one here wrote: `openapi-python-client` generates one from the OpenAPI document
the gateway serves, and the README's walkthrough runs with it against the running system.

The generated models parse each response (`from_dict`): a field the document names that is
missing, a value outside an enum, a malformed uuid or datetime raises. Nullable enums fall back
to the raw string in generated code, so the walkthrough also checks each parsed value's type.
The only generator configuration: no post hooks (they would run ruff on the output) and the
recording's `audio/wav` read as bytes (the generator knows no audio types).
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from calls_testing import unique_number
from calls_testing.system import System

pytestmark = pytest.mark.integration

PACKAGE = "calls_api_client"
CONFIG = f"""\
project_name_override: calls-api-client
package_name_override: {PACKAGE}
post_hooks: []
content_type_overrides:
  audio/wav: application/octet-stream
"""


@pytest.fixture(scope="module")
def client_package(
    system_services: System, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModuleType]:
    """The client, generated from the served document into a temporary directory."""
    root = tmp_path_factory.mktemp("generated-client")
    document = root / "openapi.json"
    document.write_bytes(asyncio.run(_download(f"{system_services.gateway}/openapi.json")))
    (root / "config.yaml").write_text(CONFIG)
    generator = Path(sys.executable).with_name("openapi-python-client")
    generated = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(document),
            "--config",
            str(root / "config.yaml"),
            "--meta",
            "none",
            "--output-path",
            str(root / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    # every operation of the document is in the client (the warnings would say what was not)
    assert "Warning" not in generated.stdout, generated.stdout
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


async def _download(url: str) -> bytes:
    for _ in range(300):
        try:
            async with aiohttp.ClientSession() as http, http.get(url) as r:
                if r.status == 200:
                    return await r.read()
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not served")


def module(package: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.{name}")


def parsed(response: Any, model: Any) -> Any:
    """The response's parsed body, which must be the model the document names for it."""
    assert isinstance(response.parsed, model), (response.status_code, response.content[:500])
    return response.parsed


def assert_typed_call(package: ModuleType, call: Any) -> None:
    """What a parsed call holds is of the types the document gives (generated code would let
    an unknown value of a nullable enum through as a plain string)."""
    models = module(package, "models")
    name = type(call).__name__  # Call or CallSummary: their enums are generated apart
    assert isinstance(call.id, uuid.UUID)
    assert call.id == call.call_id
    assert isinstance(call.call_sid, str)
    assert isinstance(call.status, getattr(models, f"{name}Status"))
    assert call.carrier_status is None or isinstance(
        call.carrier_status, getattr(models, f"{name}CarrierStatusType0")
    )
    assert call.outcome is None or isinstance(call.outcome, getattr(models, f"{name}OutcomeType0"))
    assert isinstance(call.start_time, datetime)
    assert call.duration is None or isinstance(call.duration, float)


async def test_the_readme_walkthrough_with_a_generated_client(
    client_package: ModuleType, system: System
) -> None:
    models = module(client_package, "models")
    create_agent = module(client_package, "api.agents_and_caller_id.create_agent")
    put_sip_config = module(client_package, "api.agents_and_caller_id.put_sip_config")
    place_call = module(client_package, "api.calls.place_call")
    get_call = module(client_package, "api.calls.get_call")
    list_calls = module(client_package, "api.calls.list_calls")
    place_batch = module(client_package, "api.batches.place_batch")
    get_batch = module(client_package, "api.batches.get_batch")
    get_recording = module(client_package, "api.recordings.get_recording")
    org = f"org_client_{uuid.uuid4().hex[:8]}"
    client = client_package.AuthenticatedClient(
        base_url=system.gateway, token=system.token(org), raise_on_unexpected_status=True
    )
    agent_number = unique_number()

    async with client:
        agent = parsed(
            await create_agent.asyncio_detailed(
                client=client, body=models.CreateAgent(name="Ava", phone_number=agent_number)
            ),
            models.Agent,
        )
        sip = parsed(
            await put_sip_config.asyncio_detailed(
                client=client, body=models.SipConfig(default_from_number=agent_number)
            ),
            models.SipConfigView,
        )
        assert sip.default_from_number == agent_number

        accepted = parsed(
            await place_call.asyncio_detailed(
                client=client, body=models.PlaceCall(to_number=unique_number())
            ),
            models.CallAccepted,
        )
        assert accepted.call_sid == f"queued-{accepted.call_id.hex[:12]}"

        # the detail, until the call ended and its recording is stored
        deadline = time.monotonic() + 40
        while True:
            call = parsed(
                await get_call.asyncio_detailed(accepted.call_id, client=client),
                models.Call,
            )
            assert_typed_call(client_package, call)
            if call.recording_url:
                break
            assert time.monotonic() < deadline, call
            await asyncio.sleep(0.2)
        assert call.status == models.CallStatus.COMPLETED
        assert call.agent_name == agent.name
        assert call.transcript is None  # none reported

        started = call.start_time
        filters: list[dict[str, Any]] = [
            {},
            {"status": models.ListCallsStatus.COMPLETED},
            {"status": models.ListCallsStatus.VOICEMAIL},
            {"direction": models.ListCallsDirection.OUTBOUND},
            {"search": call.to_number[-7:]},
            {"agent_id": agent.id},
            {"from_": started - timedelta(minutes=1), "to": datetime.now(UTC) + timedelta(1)},
            {"page": 1, "page_size": 1},
        ]
        for given in filters:
            page = parsed(
                await list_calls.asyncio_detailed(client=client, **given), models.CallPage
            )
            for item in page.items:
                assert_typed_call(client_package, item)
            expected = 0 if given.get("status") == models.ListCallsStatus.VOICEMAIL else 1
            assert page.total == expected, given

        batch_accepted = parsed(
            await place_batch.asyncio_detailed(
                client=client,
                body=models.PlaceBatch(to_numbers=[unique_number(), "+15005550001"]),
            ),
            models.BatchAccepted,
        )
        deadline = time.monotonic() + 40
        while True:
            batch = parsed(
                await get_batch.asyncio_detailed(batch_accepted.batch_id, client=client),
                models.Batch,
            )
            for entry in batch.calls:
                assert isinstance(entry.status, models.BatchCallStatus)
                assert isinstance(entry.call_status, models.BatchCallCallStatus)
            if batch.queued == 0:
                break
            assert time.monotonic() < deadline, batch
            await asyncio.sleep(0.2)
        assert (batch.initiated, batch.failed) == (1, 1)
        assert [e.status for e in batch.calls] == [
            models.BatchCallStatus.INITIATED,
            models.BatchCallStatus.FAILED,
        ]

        audio = await get_recording.asyncio_detailed(accepted.call_id, client=client)
        assert audio.status_code == 200
        assert audio.headers["content-type"] == "audio/wav"
        assert bytes(audio.parsed)[:4] == b"RIFF"
