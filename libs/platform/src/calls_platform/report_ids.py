"""Event ids of carrier reports that more than one service can append.

A carrier report may reach us twice by different roads: Twilio's callback (through the
gateway), and the answer to our own question when the callback was lost (the dialer asks the
carrier). Both must derive the same event id from the same facts, so the store keeps the one
that arrives first and skips the other; the derivation lives here, once.
"""

from __future__ import annotations

import uuid

from .eventstore import deterministic_event_id


def recording_reported_id(call_id: uuid.UUID, recording_sid: str, status: str) -> uuid.UUID:
    """The id of the RecordingReported saying that `recording_sid` of call `call_id` reached
    `status` (completed, absent, failed), whether from the recording callback or the
    carrier's list of the call's recordings. Keyed by the call too: event ids are unique
    store-wide, so a report is only ever deduplicated against a report on the same call."""
    return deterministic_event_id("recording", str(call_id), recording_sid, status)
