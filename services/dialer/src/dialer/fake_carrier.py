"""The Carrier port in memory: a complete, scriptable stand-in for the Twilio adapter, for the
dialer's unit tests (and the contract suite that holds both to the same behaviour).

It keeps the calls it placed or was told about, as Twilio would list them; answers creates
from a script (then places); lists each call's recordings as scripted; cancels a queued or
ringing call and refuses to cancel one that has moved on, as Twilio does (21220). It counts
everything it is asked.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime

from .carrier import (
    CancelRefused,
    CarrierCall,
    CarrierRecording,
    DialRequest,
    DialResult,
    Placed,
    UnknownCall,
)

CANCELABLE = frozenset({"queued", "ringing"})
NOT_IN_PROGRESS = CancelRefused(code=21220, message="Call is not in-progress. Cannot redirect.")


def new_call_sid() -> str:
    return "CA" + uuid.uuid4().hex


class FakeCarrier:
    """The Carrier port in memory.

    - `create_call` answers the next of `results` (once they run out: places the call, which
      is then `queued`), after `gate` opens (set by default: clear it to hold creates);
    - `has_call(to, from, sid, status=…)` adds a call the carrier has (newest first when
      listed, like Twilio); `calls[sid]` may be replaced to move a call on;
    - `recordings[sid]` is what `list_recordings` answers (an exception is raised);
    - `requests`, `searches`, `fetched`, `listed`, `cancels` say what it was asked.
    """

    def __init__(self, *results: DialResult) -> None:
        self.results: deque[DialResult] = deque(results)
        self.calls: dict[str, CarrierCall] = {}
        self.numbers: dict[str, tuple[str, str]] = {}
        self.created_at: dict[str, datetime] = {}
        self.recordings: dict[str, list[CarrierRecording] | Exception] = {}
        self.requests: list[DialRequest] = []
        self.searches: list[tuple[str, str, datetime]] = []
        self.fetched: list[str] = []
        self.listed: list[str] = []
        self.cancels: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.closed = False

    def has_call(
        self, to_number: str, from_number: str, sid: str, status: str = "queued"
    ) -> CarrierCall:
        call = CarrierCall(sid=sid, status=status)
        self.calls[sid] = call
        self.numbers[sid] = (to_number, from_number)
        self.created_at[sid] = datetime.now(UTC)
        return call

    async def create_call(self, request: DialRequest) -> DialResult:
        self.requests.append(request)
        await self.gate.wait()
        result = self.results.popleft() if self.results else Placed(new_call_sid())
        if isinstance(result, Placed) and result.call_sid not in self.calls:
            self.has_call(request.to_number, request.from_number, result.call_sid)
        return result

    async def find_calls(
        self, *, to_number: str, from_number: str, since: datetime
    ) -> list[CarrierCall]:
        self.searches.append((to_number, from_number, since))
        found = [
            sid
            for sid, numbers in self.numbers.items()
            if numbers == (to_number, from_number) and self.created_at[sid] >= since
        ]
        return [self.calls[sid] for sid in reversed(found)]

    async def fetch_call(self, call_sid: str) -> CarrierCall:
        self.fetched.append(call_sid)
        try:
            return self.calls[call_sid]
        except KeyError:
            raise UnknownCall(call_sid) from None

    async def list_recordings(self, call_sid: str) -> list[CarrierRecording]:
        self.listed.append(call_sid)
        found = self.recordings.get(call_sid, [])
        if isinstance(found, Exception):
            raise found
        return list(found)

    async def cancel_call(self, call_sid: str) -> CarrierCall | CancelRefused:
        self.cancels.append(call_sid)
        call = await self.fetch_call(call_sid)
        if call.status not in CANCELABLE:
            return NOT_IN_PROGRESS
        canceled = replace(call, status="canceled", end_time=datetime.now(UTC))
        self.calls[call_sid] = canceled
        return canceled

    async def close(self) -> None:
        self.closed = True
