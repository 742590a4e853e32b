"""In-memory state: call and recording records, the create-request counter and injected faults.

Plain data only; the play-out tasks that mutate call records live in :mod:`carrier_sim.playout`.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TERMINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
MULTI_VALUE_PARAMS = frozenset({"StatusCallbackEvent", "RecordingStatusCallbackEvent"})


def new_sid(prefix: str) -> str:
    """A Twilio-style SID: two-letter prefix and 32 lowercase hex digits."""
    return prefix + uuid.uuid4().hex


def params_from_pairs(pairs: list[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Form fields as a dict: repeated (and known multi-value) fields become lists."""
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return {
        key: values if key in MULTI_VALUE_PARAMS or len(values) > 1 else values[0]
        for key, values in grouped.items()
    }


@dataclass
class CallRecord:
    """One simulated call, as created by ``POST .../Calls.json``."""

    sid: str
    account_sid: str
    to: str
    from_: str
    params: dict[str, str | list[str]]
    base_url: str
    created_at: float
    status: str = "queued"
    updated_at: float = 0.0
    start_time: float | None = None
    answered_at: float | None = None
    end_time: float | None = None
    duration: int | None = None
    answered_by: str | None = None
    recording_sid: str | None = None
    sequence: int = 0

    def __post_init__(self) -> None:
        if not self.updated_at:
            self.updated_at = self.created_at

    def param(self, name: str) -> str | None:
        """First value of a create parameter, or ``None`` when absent or empty."""
        value = self.params.get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        return value or None

    def param_list(self, name: str) -> list[str]:
        """All values of a repeated parameter, split on spaces/commas, lowercased."""
        value = self.params.get(name)
        raw = value if isinstance(value, list) else ([value] if value else [])
        return [part.lower() for item in raw for part in item.replace(",", " ").split()]

    def flag(self, name: str) -> bool:
        return (self.param(name) or "").lower() == "true"

    @property
    def status_callback(self) -> str | None:
        return self.param("StatusCallback")

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def next_sequence(self) -> int:
        """SequenceNumber for the next status callback (0, 1, 2, ...)."""
        number = self.sequence
        self.sequence += 1
        return number


@dataclass
class RecordingRecord:
    """A completed recording of an answered call."""

    sid: str
    account_sid: str
    call_sid: str
    channels: int
    duration_seconds: float
    start_time: float
    created_at: float
    source: str = "OutboundAPI"
    status: str = "completed"


@dataclass(frozen=True)
class CannedResponse:
    """One queued answer for a future create request (see ``POST /_sim/faults``)."""

    status: int | None = None
    code: int | None = None
    message: str | None = None
    timeout_seconds: float | None = None
    call_created: bool = False

    @classmethod
    def from_json(cls, data: object) -> CannedResponse:
        if not isinstance(data, Mapping):
            raise ValueError("create_responses entries must be objects")
        status = data.get("status")
        timeout = data.get("timeout_seconds")
        if status is None and timeout is None:
            raise ValueError("create_responses entries need 'status' or 'timeout_seconds'")
        code = data.get("code")
        message = data.get("message")
        return cls(
            status=None if status is None else int(status),
            code=None if code is None else int(code),
            message=None if message is None else str(message),
            timeout_seconds=None if timeout is None else float(timeout),
            call_created=bool(data.get("call_created", False)),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.status is not None:
            out["status"] = self.status
        if self.code is not None:
            out["code"] = self.code
        if self.message is not None:
            out["message"] = self.message
        if self.timeout_seconds is not None:
            out["timeout_seconds"] = self.timeout_seconds
        if self.call_created:
            out["call_created"] = True
        return out


@dataclass
class Faults:
    """Misbehaviour injected by tests; read live by the API and the play-out tasks."""

    create_responses: deque[CannedResponse] = field(default_factory=deque)
    drop_callbacks: bool = False
    # only the recording status callbacks are lost (the call's status callbacks still come)
    drop_recording_callbacks: bool = False
    duplicate_callbacks: bool = False
    reorder_callbacks: bool = False
    create_delay_seconds: float = 0.0

    def merge(self, data: Mapping[str, object]) -> None:
        """Apply the keys present in ``data``; ``create_responses`` replaces the queue.

        Validates everything before changing anything; raises ``ValueError`` on bad input.
        """
        known = {
            "create_responses",
            "drop_callbacks",
            "drop_recording_callbacks",
            "duplicate_callbacks",
            "reorder_callbacks",
            "create_delay_seconds",
        }
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        responses: deque[CannedResponse] | None = None
        if "create_responses" in data:
            raw = data["create_responses"] or []
            if not isinstance(raw, list):
                raise ValueError("create_responses must be a list")
            responses = deque(CannedResponse.from_json(item) for item in raw)
        flags: dict[str, bool] = {}
        for key in (
            "drop_callbacks",
            "drop_recording_callbacks",
            "duplicate_callbacks",
            "reorder_callbacks",
        ):
            if key in data:
                value = data[key]
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be a boolean")
                flags[key] = value
        delay: float | None = None
        if "create_delay_seconds" in data:
            raw_delay = data["create_delay_seconds"]
            if not isinstance(raw_delay, int | float) or isinstance(raw_delay, bool):
                raise ValueError("create_delay_seconds must be a number")
            delay = max(0.0, float(raw_delay))

        if responses is not None:
            self.create_responses = responses
        for key, value in flags.items():
            setattr(self, key, value)
        if delay is not None:
            self.create_delay_seconds = delay

    def to_json(self) -> dict[str, Any]:
        return {
            "create_responses": [item.to_json() for item in self.create_responses],
            "drop_callbacks": self.drop_callbacks,
            "drop_recording_callbacks": self.drop_recording_callbacks,
            "duplicate_callbacks": self.duplicate_callbacks,
            "reorder_callbacks": self.reorder_callbacks,
            "create_delay_seconds": self.create_delay_seconds,
        }


@dataclass
class CallStore:
    """All simulator state. Calls are kept in creation order."""

    calls: dict[str, CallRecord] = field(default_factory=dict)
    recordings: dict[str, RecordingRecord] = field(default_factory=dict)
    create_requests: int = 0
    faults: Faults = field(default_factory=Faults)

    def add_call(self, call: CallRecord) -> None:
        self.calls[call.sid] = call

    def get_call(self, sid: str) -> CallRecord | None:
        return self.calls.get(sid)

    def add_recording(self, recording: RecordingRecord) -> None:
        self.recordings[recording.sid] = recording

    def get_recording(self, sid: str) -> RecordingRecord | None:
        return self.recordings.get(sid)

    def reset(self) -> None:
        self.calls.clear()
        self.recordings.clear()
        self.create_requests = 0
        self.faults = Faults()
