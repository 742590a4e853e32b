"""What the dialer records about a call's recordings listed at the carrier (pure)."""

from __future__ import annotations

import uuid

from dialer.carrier import CarrierRecording
from dialer.lost_recordings import decide

CALL_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
CALL_SID = "CA" + "0" * 32
ACCOUNT = "https://api.twilio.com/2010-04-01/Accounts/AC" + "1" * 32


def recording(status: str, sid: str = "RE" + "a" * 32, **fields: object) -> CarrierRecording:
    options: dict[str, object] = {
        "duration_seconds": 61,
        "channels": 2,
        "source": "OutboundAPI",
        "error_code": None,
    }
    options.update(fields)
    return CarrierRecording(sid=sid, status=status, url=f"{ACCOUNT}/Recordings/{sid}", **options)  # type: ignore[arg-type]


def test_a_completed_recording_is_reported_as_its_callback_would_have_been() -> None:
    verdict = decide(CALL_ID, CALL_SID, [recording("completed")], checks_before=0, max_checks=5)

    [report] = verdict.reports
    assert report.call_id == CALL_ID
    assert report.call_sid == CALL_SID
    assert report.recording_sid == "RE" + "a" * 32
    assert report.recording_url == f"{ACCOUNT}/Recordings/RE{'a' * 32}"  # no extension
    assert report.status == "completed"
    assert (report.duration_seconds, report.channels) == (61, 2)
    assert report.source == "OutboundAPI"
    assert report.reported_via == "reconciliation"
    assert (verdict.again, verdict.gave_up) == (False, False)


def test_absent_and_failed_recordings_are_reported_without_a_url() -> None:
    listed = [
        recording("absent", "RE" + "b" * 32, duration_seconds=0, error_code=0),
        recording("failed", "RE" + "c" * 32),
    ]
    verdict = decide(CALL_ID, CALL_SID, listed, checks_before=0, max_checks=5)

    assert [(r.status, r.recording_url) for r in verdict.reports] == [
        ("absent", None),
        ("failed", None),
    ]
    assert not verdict.again


def test_a_recording_still_processing_is_asked_about_again_and_the_finished_ones_reported() -> None:
    listed = [recording("processing", "RE" + "b" * 32), recording("completed")]
    verdict = decide(CALL_ID, CALL_SID, listed, checks_before=0, max_checks=5)

    assert [r.recording_sid for r in verdict.reports] == ["RE" + "a" * 32]
    assert (verdict.again, verdict.gave_up) == (True, False)


def test_every_unfinished_status_is_asked_about_again() -> None:
    for status in ("in-progress", "paused", "stopped", "processing"):
        verdict = decide(CALL_ID, CALL_SID, [recording(status)], checks_before=0, max_checks=5)
        assert (verdict.reports, verdict.again) == ([], True), status


def test_no_recording_listed_yet_is_asked_about_again() -> None:
    verdict = decide(CALL_ID, CALL_SID, [], checks_before=3, max_checks=5)
    assert (verdict.reports, verdict.again, verdict.gave_up) == ([], True, False)


def test_after_the_last_check_allowed_it_gives_up() -> None:
    unfinished = decide(CALL_ID, CALL_SID, [recording("processing")], checks_before=4, max_checks=5)
    assert (unfinished.again, unfinished.gave_up) == (False, True)
    nothing = decide(CALL_ID, CALL_SID, [], checks_before=4, max_checks=5)
    assert (nothing.again, nothing.gave_up) == (False, True)


def test_unknown_statuses_and_unfetchable_recordings_are_set_aside_never_reported() -> None:
    odd = recording("deleted", "RE" + "b" * 32)
    bad_sid = recording("completed", "RE" + "Z" * 32)
    verdict = decide(
        CALL_ID, CALL_SID, [odd, bad_sid, recording("completed")], checks_before=0, max_checks=5
    )

    assert [r.recording_sid for r in verdict.reports] == ["RE" + "a" * 32]
    assert verdict.unknown == [odd, bad_sid]
    assert not verdict.again
