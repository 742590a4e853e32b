"""When a call's recordings are to be listed at the carrier if its recording callback does not
come first (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dialer.lost_recordings import recordings_due_at

ENDED = datetime(2024, 5, 1, 12, 0, 7, tzinfo=UTC)


def due(**changes: object) -> datetime | None:
    options: dict[str, object] = {
        "status": "completed",
        "record": True,
        "recording_reported": False,
        "ended_at": ENDED,
        "grace_seconds": 300.0,
    }
    options.update(changes)
    return recordings_due_at(**options)  # type: ignore[arg-type]


def test_a_recorded_call_that_completed_is_due_the_grace_after_it_ended() -> None:
    assert due() == ENDED + timedelta(seconds=300)
    assert due(grace_seconds=2.0) == ENDED + timedelta(seconds=2)


def test_a_call_not_recorded_is_never_due() -> None:
    assert due(record=False) is None


def test_a_call_whose_recording_was_already_reported_is_never_due() -> None:
    assert due(recording_reported=True) is None


@pytest.mark.parametrize(
    "status", ["queued", "initiated", "ringing", "in-progress", "busy", "no-answer", "failed"]
)
def test_a_call_that_did_not_complete_has_no_recording_to_wait_for(status: str) -> None:
    assert due(status=status) is None
