"""The envelope, the type registry, upcasting and field validation of the shared events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from calls_events import (
    BatchCancelRequested,
    BatchPaused,
    BatchRequested,
    BatchResumed,
    CallCanceled,
    CallExpired,
    CallFailed,
    CallingPolicySet,
    CallingWindow,
    CallInitiated,
    CallRequested,
    CallRetryScheduled,
    CallScheduled,
    CallSkipped,
    CallStatusReported,
    ConversationReported,
    DoNotCallAdded,
    DoNotCallRemoved,
    Envelope,
    Event,
    InboundCallReceived,
    ProviderUse,
    RecordingDeleted,
    RecordingFailed,
    RecordingReported,
    RecordingStored,
    RetryPolicy,
    Schedule,
    TranscriptTurn,
    UnknownEventType,
    _base,
    event_class,
    event_types,
    upcaster,
)
from pydantic import ValidationError

CALL_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
SID = "CA" + "0" * 32
RECORDING = "RE" + "0123456789abcdef" * 2
AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

# One example of every event type, with every optional field set so all of them round-trip.
EXAMPLES: list[Event] = [
    CallRequested(
        call_id=CALL_ID,
        to_number="+15551230001",
        from_number="+442071838750",
        agent_id=uuid.uuid4(),
        agent_name="Ada",
        batch_id="batch_1",
        batch_index=3,
        record=False,
        requested_by="key_1",
        variables={"first_name": "Ada"},
        metadata={"crm": {"id": 42}},
        schedule=Schedule(
            start_at=AT,
            end_at=AT,
            window=CallingWindow(start="09:00", end="20:00", days=("mon",), time_zone="UTC"),
        ),
        retry=RetryPolicy(max_attempts=3, on=("busy",), delay_seconds=60, backoff=2),
        max_concurrency=2,
        attempt=2,
        previous_call_id=uuid.uuid4(),
        first_call_id=uuid.uuid4(),
    ),
    CallScheduled(call_id=CALL_ID, not_before=AT, reason="window"),
    CallSkipped(call_id=CALL_ID, reason="do_not_call"),
    CallExpired(call_id=CALL_ID, end_at=AT),
    CallRetryScheduled(
        call_id=CALL_ID, retry_call_id=uuid.uuid4(), attempt=2, not_before=AT, because="busy"
    ),
    BatchPaused(batch_id="batch_1", requested_by="key_1"),
    BatchResumed(batch_id="batch_1", requested_by="key_1"),
    DoNotCallAdded(number="+15551230001", reason="asked", requested_by="key_1"),
    DoNotCallRemoved(number="+15551230001", requested_by="key_1"),
    CallingPolicySet(
        window=CallingWindow(start="08:00", end="21:00"),
        max_concurrency=5,
        daily_cap_per_number=2,
        requested_by="key_1",
    ),
    CallInitiated(call_id=CALL_ID, call_sid=SID, source="reconciliation"),
    CallFailed(call_id=CALL_ID, error_code=21211, error_message="invalid 'To'", http_status=400),
    CallCanceled(call_id=CALL_ID, reason="batch canceled"),
    CallStatusReported(
        call_id=CALL_ID,
        call_sid=SID,
        carrier_status="completed",
        sequence_number=4,
        duration_seconds=61,
        answered_by="machine_end_beep",
        sip_response_code=200,
        reported_at=AT,
        source="reconciliation",
    ),
    BatchRequested(
        batch_id="batch_1",
        total=2,
        from_number="+15551230002",
        agent_id=uuid.uuid4(),
        duplicates_dropped=1,
        requested_by="key_1",
    ),
    BatchCancelRequested(batch_id="batch_1", requested_by="key_1"),
    ConversationReported(
        call_id=CALL_ID,
        transcript=[
            TranscriptTurn(role="agent", content="Hello!"),
            TranscriptTurn(role="caller", content="Hi."),
        ],
        provider_usage={"llm": ProviderUse(type="llm", model="some-model")},
        ended_by="caller",
    ),
    InboundCallReceived(
        call_id=CALL_ID,
        call_sid=SID,
        from_number="anonymous",
        to_number="+15551230002",
        agent_id=uuid.uuid4(),
        agent_name="Ada",
        received_at=AT,
    ),
    RecordingReported(
        call_id=CALL_ID,
        call_sid=SID,
        recording_sid=RECORDING,
        recording_url=f"https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/{RECORDING}",
        status="completed",
        duration_seconds=61,
        channels=2,
        source="OutboundAPI",
        error_code=0,
        reported_via="reconciliation",
    ),
    RecordingStored(
        call_id=CALL_ID,
        call_sid=SID,
        recording_sid=RECORDING,
        storage_key=f"0123456789abcdef/{CALL_ID}/{RECORDING}.wav",
        size_bytes=1_952_044,
        content_type="audio/wav",
        duration_seconds=61,
    ),
    RecordingFailed(call_id=CALL_ID, recording_sid=RECORDING, reason="HTTP 503", attempts=5),
    RecordingDeleted(call_id=CALL_ID, recording_sid=RECORDING, requested_by="key_1"),
]


@pytest.fixture
def scratch_registry() -> Iterator[None]:
    """Lets a test define throwaway event types without leaving them in the global registry."""
    events, upcasters = dict(_base._REGISTRY), dict(_base._UPCASTERS)
    yield
    _base._REGISTRY.clear()
    _base._REGISTRY.update(events)
    _base._UPCASTERS.clear()
    _base._UPCASTERS.update(upcasters)


def wrap(event: Event, **kwargs: Any) -> Envelope:
    return Envelope.wrap(event, stream_id="call-1", organization_id="org_a", **kwargs)


def test_every_registered_event_type_has_an_example() -> None:
    assert {e.TYPE for e in EXAMPLES} == set(event_types())


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e.TYPE)
def test_wrap_then_event_round_trips_every_event_type(event: Event) -> None:
    envelope = wrap(event, correlation_id="corr", causation_id="cause")

    assert envelope.event_type == event.TYPE
    assert envelope.event_version == event.VERSION
    assert envelope.event() == event


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e.TYPE)
def test_envelope_survives_json_round_trip(event: Event) -> None:
    envelope = wrap(event, occurred_at=AT)

    decoded = Envelope.model_validate_json(envelope.model_dump_json())

    assert decoded == envelope
    assert decoded.event() == event


def test_wrap_keeps_given_event_id_and_occurred_at() -> None:
    event_id = uuid.uuid4()

    envelope = wrap(EXAMPLES[0], event_id=event_id, occurred_at=AT)

    assert (envelope.event_id, envelope.occurred_at) == (event_id, AT)
    assert envelope.position is None
    assert envelope.stream_version is None


def test_wrap_gives_each_event_a_fresh_id() -> None:
    assert wrap(EXAMPLES[0]).event_id != wrap(EXAMPLES[0]).event_id


def test_unknown_event_type_raises_unknown_event_type() -> None:
    envelope = Envelope(
        event_type="NoSuchEvent", event_version=1, stream_id="s", organization_id="o", data={}
    )

    with pytest.raises(UnknownEventType):
        envelope.event()
    with pytest.raises(UnknownEventType):
        event_class("NoSuchEvent")


def test_unknown_event_type_is_a_lookup_error() -> None:
    assert issubclass(UnknownEventType, LookupError)


@pytest.mark.usefixtures("scratch_registry")
def test_defining_an_event_type_twice_raises() -> None:
    with pytest.raises(TypeError, match="defined twice"):

        class AnotherCallRequested(Event):
            TYPE: ClassVar[str] = "CallRequested"

    assert event_class("CallRequested") is CallRequested


def test_event_data_that_does_not_match_its_type_is_rejected() -> None:
    envelope = Envelope(
        event_type="CallCanceled",
        event_version=1,
        stream_id="s",
        organization_id="o",
        data={"call_id": str(CALL_ID), "reason": "x", "surprise": True},
    )

    with pytest.raises(ValidationError):
        envelope.event()


def test_events_are_immutable() -> None:
    event = CallCanceled(call_id=CALL_ID, reason="batch canceled")

    with pytest.raises(ValidationError):
        event.reason = "changed"  # type: ignore[misc]


@pytest.mark.usefixtures("scratch_registry")
def test_upcasters_upgrade_data_stored_by_older_versions() -> None:
    class TestOnlyAgentRenamed(Event):
        """v1 had `name`; v2 split it into `given_name` and `family_name`; v3 added `title`."""

        TYPE: ClassVar[str] = "TestOnlyAgentRenamed.v3"
        VERSION: ClassVar[int] = 3

        given_name: str
        family_name: str
        title: str

    @upcaster("TestOnlyAgentRenamed.v3", 1)
    def split_name(data: dict[str, Any]) -> dict[str, Any]:
        given, family = data["name"].split(" ", 1)
        return {"given_name": given, "family_name": family}

    @upcaster("TestOnlyAgentRenamed.v3", 2)
    def add_title(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "title": "agent"}

    def stored(version: int, data: dict[str, Any]) -> Envelope:
        return Envelope(
            event_type="TestOnlyAgentRenamed.v3",
            event_version=version,
            stream_id="agent-1",
            organization_id="org_a",
            data=data,
        )

    expected = TestOnlyAgentRenamed(given_name="Ada", family_name="Lovelace", title="agent")
    assert stored(1, {"name": "Ada Lovelace"}).event() == expected
    assert stored(2, {"given_name": "Ada", "family_name": "Lovelace"}).event() == expected
    assert stored(3, expected.model_dump()).event() == expected
    assert wrap(expected).event_version == 3
    # the cached event is the one of the version it was read as: a copy that says the data
    # is of an older version is upcast, not served the newer reading
    current = stored(2, {"given_name": "Ada", "family_name": "Lovelace", "title": "engineer"})
    assert current.event() == expected.model_copy(update={"title": "agent"})
    as_v3 = current.model_copy(update={"event_version": 3})
    assert as_v3.event() == expected.model_copy(update={"title": "engineer"})


@pytest.mark.parametrize(
    "number",
    [
        "+15551230001",
        "+442071838750",
        "+12",  # shortest: country code and one digit
        "+123456789012345",  # longest: 15 digits
    ],
)
def test_e164_accepts_valid_numbers(number: str) -> None:
    CallRequested(call_id=CALL_ID, to_number=number, from_number=number, requested_by="t")


@pytest.mark.parametrize(
    "number",
    [
        "15551230001",  # no +
        "+05551230001",  # country codes do not start with 0
        "+1",  # too short
        "+1234567890123456",  # 16 digits
        "+1 555 123 0001",
        "+1-555-123-0001",
        "+1555123000a",
        "+15551230001\n",
        " +15551230001",
        "+1\u0665\u0665\u0665\u0661\u0662\u0663",  # Arabic-Indic digits
        "+1\uff15\uff15\uff15\uff11\uff12\uff13",  # full-width digits
        "",
    ],
)
def test_e164_rejects_bad_numbers(number: str) -> None:
    with pytest.raises(ValidationError):
        CallRequested(
            call_id=CALL_ID, to_number=number, from_number="+15551230002", requested_by="t"
        )
    with pytest.raises(ValidationError):
        BatchRequested(batch_id="b", total=1, from_number=number, requested_by="t")


@pytest.mark.parametrize(
    "sid",
    [
        "RE" + "0" * 31,  # too short
        "RE" + "0" * 33,  # too long
        "RE" + "A" * 32,  # Twilio SIDs are lowercase hex
        "CA" + "0" * 32,  # a call SID
        "RE" + "0" * 30 + "/.",
        "../" + "0" * 31,
        "",
    ],
)
def test_recording_sids_are_refused_unless_re_and_32_hex_digits(sid: str) -> None:
    with pytest.raises(ValidationError):
        RecordingReported(
            call_id=CALL_ID, call_sid=SID, recording_sid=sid, recording_url=None, status="absent"
        )
    with pytest.raises(ValidationError):
        RecordingFailed(call_id=CALL_ID, recording_sid=sid, reason="x", attempts=1)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x/y", "//x/y", "x"])
def test_recording_urls_must_be_http(url: str) -> None:
    with pytest.raises(ValidationError):
        RecordingReported(
            call_id=CALL_ID,
            call_sid=SID,
            recording_sid=RECORDING,
            recording_url=url,
            status="completed",
        )


def test_a_recording_report_stored_before_reported_via_existed_reads_as_a_callback() -> None:
    stored = {
        "call_id": str(CALL_ID),
        "call_sid": SID,
        "recording_sid": RECORDING,
        "recording_url": f"https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/{RECORDING}",
        "status": "completed",
        "source": "OutboundAPI",
    }
    assert RecordingReported.model_validate(stored).reported_via == "callback"


def test_a_call_request_stored_before_campaigns_still_loads_with_no_rules() -> None:
    stored = Envelope(
        event_type="CallRequested",
        event_version=1,
        stream_id=f"call-{CALL_ID}",
        organization_id="org_a",
        data={
            "call_id": str(CALL_ID),
            "to_number": "+15551230001",
            "from_number": "+15551230002",
            "requested_by": "key_1",
        },
    )
    event = stored.event()
    assert isinstance(event, CallRequested)
    assert (event.variables, event.metadata, event.schedule, event.retry) == ({}, {}, None, None)
    assert (event.attempt, event.previous_call_id, event.max_concurrency) == (1, None, None)


@pytest.mark.parametrize(
    "window",
    [
        {"start": "9:00", "end": "20:00"},
        {"start": "09:00", "end": "24:00"},
        {"start": "09:00", "end": "20:00", "days": []},
        {"start": "09:00", "end": "20:00", "days": ["monday"]},
        {"start": "09:00", "end": "20:00", "time_zone": "Mars/Olympus"},
    ],
)
def test_a_calling_window_refuses_what_it_cannot_mean(window: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CallingWindow.model_validate(window)


def test_the_typed_event_is_validated_once_and_a_copy_with_other_data_is_validated_again() -> None:
    call_id = uuid.uuid4()
    envelope = Envelope.wrap(
        CallRequested(
            call_id=call_id, to_number="+14155550100", from_number="+14155550101", requested_by="t"
        ),
        stream_id=f"call-{call_id}",
        organization_id="org_1",
    )
    untouched = envelope.model_copy()
    first = envelope.event()
    assert envelope.event() is first  # the same (immutable) event, not validated again
    assert envelope == untouched  # asking for it changes nothing about the envelope
    other = uuid.uuid4()
    copy = envelope.model_copy(update={"data": {**envelope.data, "call_id": str(other)}})
    assert isinstance(copy.event(), CallRequested)
    assert copy.event().call_id == other  # type: ignore[attr-defined]
    renamed = envelope.model_copy(update={"event_type": "NoSuchEvent"})
    with pytest.raises(UnknownEventType):
        renamed.event()
