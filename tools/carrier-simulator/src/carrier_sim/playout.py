"""Call play-out: one background task per call that walks it through its statuses and POSTs
signed status, recording and async-AMD callbacks the way Twilio does.

:class:`PlayoutManager` owns the tasks, the single callback ``ClientSession`` and hang-ups
requested through the REST API. :class:`CallbackSender` signs and delivers one callback,
applying the drop/duplicate faults; failed deliveries are logged and never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
import structlog
from twilio.request_validator import RequestValidator
from yarl import URL

from carrier_sim.config import SimConfig
from carrier_sim.resources import API_VERSION, account_uri, rfc2822
from carrier_sim.scenarios import SIP_RESPONSE_CODES, Scenario, answered_by
from carrier_sim.store import CallRecord, CallStore, RecordingRecord, new_sid

log = structlog.get_logger(__name__)

CALLBACK_USER_AGENT = "TwilioProxy/1.1"


class CallbackSender:
    """Delivers signed webhooks (``X-Twilio-Signature``) over one shared session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        auth_token: str,
        store: CallStore,
        timeout_seconds: float,
    ) -> None:
        self._session = session
        self._validator = RequestValidator(auth_token)
        self._store = store
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        signature: str = self._validator.compute_signature(url, dict(params))
        return signature

    async def send(self, url: str, method: str, params: Mapping[str, str], *, kind: str) -> None:
        """Send one callback, honouring the ``drop_callbacks``/``drop_recording_callbacks``/
        ``duplicate_callbacks`` faults."""
        faults = self._store.faults
        if faults.drop_callbacks or (
            faults.drop_recording_callbacks and kind.startswith("recording:")
        ):
            log.info("callback.dropped", kind=kind, url=url, call_sid=params.get("CallSid"))
            return
        token = str(uuid.uuid4())
        for _ in range(2 if faults.duplicate_callbacks else 1):
            await self._deliver(url, method, params, kind=kind, token=token)

    async def _deliver(
        self, url: str, method: str, params: Mapping[str, str], *, kind: str, token: str
    ) -> None:
        method = "GET" if method.upper() == "GET" else "POST"
        if method == "GET":
            separator = "&" if "?" in url else "?"
            target = f"{url}{separator}{urlencode(params)}" if params else url
            signed: Mapping[str, str] = {}
            body: dict[str, str] | None = None
        else:
            target, signed, body = url, params, dict(params)
        headers = {
            "X-Twilio-Signature": self.sign(target, signed),
            "User-Agent": CALLBACK_USER_AGENT,
            "I-Twilio-Idempotency-Token": token,
        }
        try:
            async with self._session.request(
                method,
                URL(target, encoded=True),
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    log.warning(
                        "callback.rejected",
                        kind=kind,
                        url=target,
                        status=response.status,
                        call_sid=params.get("CallSid"),
                    )
                    return
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning(
                "callback.failed",
                kind=kind,
                url=target,
                error=repr(exc),
                call_sid=params.get("CallSid"),
            )
            return
        log.debug("callback.sent", kind=kind, url=target, call_sid=params.get("CallSid"))


@dataclass
class _Control:
    """Hang-up request from the REST API, observed by the play-out task."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    status: str = "completed"


def finalize(call: CallRecord, status: str, now: float | None = None) -> None:
    """Put a call in a terminal status, stamping end time and duration (idempotent)."""
    if call.is_terminal:
        return
    now = time.time() if now is None else now
    call.status = status
    call.end_time = now
    call.updated_at = now
    call.duration = 0 if call.answered_at is None else max(0, round(now - call.answered_at))


@dataclass(eq=False)
class _CallRun:
    """The play-out of one call: status transitions plus the callbacks they produce."""

    call: CallRecord
    scenario: Scenario
    control: _Control
    config: SimConfig
    store: CallStore
    sender: CallbackSender
    events: set[str] = field(init=False)
    held: list[dict[str, str]] = field(init=False, default_factory=list)
    reordering: bool = field(init=False)
    async_amd: bool = field(init=False)
    recording_sid: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.events = set(self.call.param_list("StatusCallbackEvent"))
        self.reordering = self.store.faults.reorder_callbacks
        self.async_amd = self.call.flag("AsyncAmd")

    async def _pause(self, seconds: float) -> bool:
        """Sleep; ``True`` when the call was hung up meanwhile."""
        if not self.control.event.is_set() and seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.control.event.wait(), seconds)
        return self.control.event.is_set()

    def _set_status(self, status: str) -> None:
        self.call.status = status
        self.call.updated_at = time.time()
        log.info("call.status", call_sid=self.call.sid, status=status, to=self.call.to)

    async def run(self) -> None:
        call, cfg = self.call, self.config
        if await self._pause(cfg.initiate_delay_seconds):
            return await self._end(self.control.status)
        call.start_time = time.time()
        call.updated_at = call.start_time
        await self._progress("initiated", "initiated")
        if await self._pause(cfg.ringing_delay_seconds):
            return await self._end(self.control.status)
        if not self.scenario.rings:
            return await self._end(self.scenario.outcome.value)
        self._set_status("ringing")
        await self._progress("ringing", "ringing")
        ring_seconds = self.scenario.ring_seconds
        if await self._pause(cfg.ring_seconds if ring_seconds is None else ring_seconds):
            return await self._end(self.control.status)
        if self.scenario.answerer is None:
            return await self._end(self.scenario.outcome.value)

        call.answered_at = time.time()
        call.answered_by = answered_by(self.scenario.answerer, call.param("MachineDetection"))
        self._set_status("in-progress")
        await self._progress("answered", "in-progress", with_answered_by=not self.async_amd)
        await self._flush_held()
        await self._recording_started()
        await self._async_amd_result()
        if await self._pause(self.scenario.talk_seconds):
            return await self._end(self.control.status)
        return await self._end(self.scenario.outcome.value)

    def _status_params(self, call_status: str, *, with_answered_by: bool) -> dict[str, str]:
        call = self.call
        params = {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": call_status,
            "Called": call.to,
            "Caller": call.from_,
            "CallbackSource": "call-progress-events",
            "Direction": "outbound-api",
            "From": call.from_,
            "SequenceNumber": str(call.next_sequence()),
            "Timestamp": rfc2822(time.time()) or "",
            "To": call.to,
        }
        if with_answered_by and call.answered_by is not None:
            params["AnsweredBy"] = call.answered_by
        return params

    async def _progress(
        self, event: str, call_status: str, *, with_answered_by: bool = True
    ) -> None:
        """A non-terminal status event: sent only when requested in StatusCallbackEvent."""
        if not self.call.status_callback or event not in self.events:
            return
        params = self._status_params(call_status, with_answered_by=with_answered_by)
        if self.reordering and event in ("initiated", "ringing"):
            self.held.append(params)
            return
        await self._send_status(params)

    async def _send_status(self, params: Mapping[str, str]) -> None:
        url = self.call.status_callback
        if url:
            method = self.call.param("StatusCallbackMethod") or "POST"
            await self.sender.send(url, method, params, kind=f"status:{params['CallStatus']}")

    async def _flush_held(self) -> None:
        held, self.held = self.held, []
        for params in held:
            await self._send_status(params)

    async def _end(self, status: str) -> None:
        call = self.call
        finalize(call, status)
        log.info("call.status", call_sid=call.sid, status=call.status, duration=call.duration)
        if call.status_callback:
            params = self._status_params(call.status, with_answered_by=True)
            seconds = call.duration or 0
            params["CallDuration"] = str(seconds)
            params["Duration"] = str(math.ceil(seconds / 60))  # billed minutes, as Twilio
            params["SipResponseCode"] = str(SIP_RESPONSE_CODES.get(call.status, 200))
            await self._send_status(params)
        await self._flush_held()
        await self._recording_finished()

    # --- recordings -------------------------------------------------------------------------

    def _recording_url(self, sid: str) -> str:
        base = self.config.public_url or self.call.base_url
        return f"{base.rstrip('/')}{account_uri(self.call.account_sid)}/Recordings/{sid}"

    def _recording_channels(self) -> int:
        return 2 if (self.call.param("RecordingChannels") or "").lower() == "dual" else 1

    def _recording_events(self) -> set[str]:
        return set(self.call.param_list("RecordingStatusCallbackEvent")) or {"completed"}

    async def _send_recording(self, params: Mapping[str, str]) -> None:
        url = self.call.param("RecordingStatusCallback")
        if url:
            method = self.call.param("RecordingStatusCallbackMethod") or "POST"
            kind = f"recording:{params['RecordingStatus']}"
            await self.sender.send(url, method, params, kind=kind)

    def _recording_params(self, sid: str, status: str) -> dict[str, str]:
        call = self.call
        return {
            "AccountSid": call.account_sid,
            "CallSid": call.sid,
            "RecordingChannels": str(self._recording_channels()),
            "RecordingSid": sid,
            "RecordingSource": "OutboundAPI",
            "RecordingStartTime": rfc2822(call.answered_at or call.created_at) or "",
            "RecordingStatus": status,
            "RecordingUrl": self._recording_url(sid),
        }

    async def _recording_started(self) -> None:
        if not self.call.flag("Record"):
            return
        self.recording_sid = new_sid("RE")
        if "in-progress" in self._recording_events():
            await self._send_recording(self._recording_params(self.recording_sid, "in-progress"))

    async def _recording_finished(self) -> None:
        call = self.call
        if not call.flag("Record"):
            return
        if call.answered_at is None or call.end_time is None:
            if "absent" in self._recording_events():
                params = self._recording_params(new_sid("RE"), "absent")
                del params["RecordingUrl"]
                params["RecordingDuration"] = "0"
                params["ErrorCode"] = "0"
                await self._send_recording(params)
            return
        sid = self.recording_sid or new_sid("RE")
        duration = max(0.0, call.end_time - call.answered_at)
        self.store.add_recording(
            RecordingRecord(
                sid=sid,
                account_sid=call.account_sid,
                call_sid=call.sid,
                channels=self._recording_channels(),
                duration_seconds=duration,
                start_time=call.answered_at,
                created_at=call.end_time,
            )
        )
        call.recording_sid = sid
        log.info("recording.completed", call_sid=call.sid, recording_sid=sid)
        if "completed" in self._recording_events():
            params = self._recording_params(sid, "completed")
            params["RecordingDuration"] = str(round(duration))
            params["ErrorCode"] = "0"
            await self._send_recording(params)

    async def _async_amd_result(self) -> None:
        call = self.call
        url = call.param("AsyncAmdStatusCallback")
        if not self.async_amd or not url or call.answered_by is None:
            return
        params = {
            "AccountSid": call.account_sid,
            "AnsweredBy": call.answered_by,
            "CallSid": call.sid,
            "MachineDetectionDuration": "1200",
        }
        method = call.param("AsyncAmdStatusCallbackMethod") or "POST"
        await self.sender.send(url, method, params, kind="amd")


class PlayoutManager:
    """Starts, tracks, hangs up and cancels the per-call play-out tasks."""

    def __init__(self, config: SimConfig, store: CallStore) -> None:
        self._config = config
        self._store = store
        self._session: aiohttp.ClientSession | None = None
        self._sender: CallbackSender | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._controls: dict[str, _Control] = {}

    async def start(self) -> None:
        """Open the callback session (called from the app's cleanup context)."""
        self._session = aiohttp.ClientSession()
        self._sender = CallbackSender(
            self._session,
            self._config.auth_token,
            self._store,
            self._config.callback_timeout_seconds,
        )

    async def close(self) -> None:
        """Cancel every play-out task, then close the callback session."""
        await self.cancel_all()
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._sender = None

    async def cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._controls.clear()

    @property
    def active(self) -> int:
        return len(self._tasks)

    def play(self, call: CallRecord, scenario: Scenario) -> None:
        """Start playing a freshly created call in the background."""
        if self._sender is None:
            raise RuntimeError("PlayoutManager.start() was not awaited")
        control = _Control()
        run = _CallRun(call, scenario, control, self._config, self._store, self._sender)
        task = asyncio.create_task(run.run(), name=f"playout-{call.sid}")
        self._tasks[call.sid] = task
        self._controls[call.sid] = control
        task.add_done_callback(lambda done: self._forget(call.sid, done))

    def _forget(self, sid: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(sid) is task:
            del self._tasks[sid]
            self._controls.pop(sid, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("playout.crashed", call_sid=sid, error=repr(task.exception()))

    def hang_up(self, call: CallRecord, status: str) -> None:
        """End a live call now (``canceled`` or ``completed``); the task sends the callbacks."""
        finalize(call, status)
        control = self._controls.get(call.sid)
        if control is not None:
            control.status = status
            control.event.set()
