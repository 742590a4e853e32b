"""What to record about a call's recordings when their callbacks may have been lost (pure).

Twilio does not retry a recording status callback either: when the watchdog learns by asking
that a recorded call ended `completed` (its callbacks were lost, so the recording callback
probably was too), the dialer lists the call's recordings at the carrier and records each
settled one as the RecordingReported the gateway would have appended for its callback, under
the same event id (`calls_platform.report_ids`), so a late callback and this are stored once.
A recording the carrier is still finishing (in progress, processing) is asked about again
later; so is a call with none listed yet, a few times.

A recording callback can also be lost alone, the call's status callbacks arriving fine: every
recorded call that ends `completed` (by callback or by asking) is therefore due for listing
`grace` after it ended (`recordings_due_at`), unless a RecordingReported for it has been seen
by then (the dialer's queue receives them; seeing one clears the mark). Twilio posts the
recording callback seconds to a couple of minutes after the call ends.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from calls_events import RecordingReported
from pydantic import ValidationError

from .carrier import CarrierRecording

# what a recording callback reports (the statuses RecordingReported knows)
SETTLED: Final = frozenset({"completed", "absent", "failed"})
# Twilio's statuses of a recording not finished yet
UNFINISHED: Final = frozenset({"in-progress", "paused", "stopped", "processing"})
# how long after a recorded call ended its recording callback is waited for before the
# carrier's list of its recordings is asked (DIALER_RECORDING_GRACE_SECONDS)
RECORDING_GRACE_SECONDS: Final = 300.0


def recordings_due_at(
    *,
    status: str,
    record: bool,
    recording_reported: bool,
    ended_at: datetime,
    grace_seconds: float,
) -> datetime | None:
    """When the recordings of a call just learned to be in `status` are to be listed at the
    carrier, if no RecordingReported comes first: `grace_seconds` after it ended, for a call
    recorded that ended `completed` (only such a call has a recording) and whose recording
    has not been reported yet; None: never."""
    if status != "completed" or not record or recording_reported:
        return None
    return ended_at + timedelta(seconds=grace_seconds)


@dataclass(frozen=True)
class Verdict:
    """`reports` to append; `again`: ask the carrier again later; `gave_up`: recordings were
    still unfinished (or none listed) after the last check allowed."""

    reports: list[RecordingReported]
    again: bool
    gave_up: bool
    # recordings listed with a status we do not know (logged, never reported)
    unknown: list[CarrierRecording]


def decide(
    call_id: uuid.UUID,
    call_sid: str,
    listed: list[CarrierRecording],
    *,
    checks_before: int,
    max_checks: int,
) -> Verdict:
    """`listed`: the carrier's recordings of the call; `checks_before`: how often they were
    listed before this time."""
    reports: list[RecordingReported] = []
    unknown: list[CarrierRecording] = []
    unfinished = False
    for recording in listed:
        if recording.status in UNFINISHED:
            unfinished = True
            continue
        if recording.status not in SETTLED:
            unknown.append(recording)
            continue
        try:
            reports.append(
                RecordingReported(
                    call_id=call_id,
                    call_sid=call_sid,
                    recording_sid=recording.sid,
                    # as the callback: only a completed recording has audio to fetch
                    recording_url=recording.url if recording.status == "completed" else None,
                    status=recording.status,
                    duration_seconds=recording.duration_seconds,
                    channels=recording.channels,
                    source=recording.source,
                    error_code=recording.error_code,
                    reported_via="reconciliation",
                )
            )
        except ValidationError:
            unknown.append(recording)  # not a recording we could ever fetch (bad SID, URL)
    waiting = unfinished or not listed
    last_check = checks_before + 1 >= max_checks
    return Verdict(
        reports=reports,
        again=waiting and not last_check,
        gave_up=waiting and last_check,
        unknown=unknown,
    )
