"""The ids of carrier reports appended by more than one service (pure)."""

from __future__ import annotations

import uuid

from calls_platform.eventstore import deterministic_event_id
from calls_platform.report_ids import recording_reported_id

CALL_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
RECORDING = "RE" + "0123456789abcdef" * 2


def test_a_recording_report_id_is_the_gateways_callback_id() -> None:
    # what services/api-gateway/src/gateway/carrier_callbacks.py derives for a recording callback:
    # deterministic_event_id("recording", str(call_id), recording_sid, status)
    assert recording_reported_id(CALL_ID, RECORDING, "completed") == deterministic_event_id(
        "recording", str(CALL_ID), RECORDING, "completed"
    )


def test_a_recording_report_id_never_changes() -> None:
    # stored events carry these ids: a change would let a late callback be stored twice
    assert recording_reported_id(CALL_ID, RECORDING, "completed") == uuid.uuid5(
        uuid.NAMESPACE_URL,
        f"calls-backend:recording:{CALL_ID}:{RECORDING}:completed",
    )


def test_a_recording_report_id_differs_by_call_recording_and_status() -> None:
    ids = {
        recording_reported_id(CALL_ID, RECORDING, "completed"),
        recording_reported_id(CALL_ID, RECORDING, "absent"),
        recording_reported_id(CALL_ID, "RE" + "f" * 32, "completed"),
        recording_reported_id(uuid.uuid4(), RECORDING, "completed"),
    }
    assert len(ids) == 4
