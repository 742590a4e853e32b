"""The carrier port's adapter on the twilio library (Twilio, or a Twilio-compatible simulator)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import aiohttp
from calls_platform import twiml
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client
from twilio.rest.api.v2010.account.call import CallInstance

from . import carrier as port


def carrier_message(message: str) -> str:
    """The carrier's own words: twilio prefixes them with what it was doing."""
    for prefix in (
        "Unable to create record: ",
        "Unable to fetch record: ",
        "Unable to update record: ",
    ):
        message = message.removeprefix(prefix)
    return message


def classify_rest_error(status: int, code: int | None, message: str) -> port.DialResult:
    if status == 429 or code == 20429:
        return port.Throttled(message)
    if 400 <= status < 500:
        return port.Rejected(code=code, message=message, http_status=status)
    return port.Ambiguous(f"carrier answered HTTP {status}: {message}")


def stream_twiml(stream_url: str, call_id: str, variables: Mapping[str, str]) -> str:
    """The TwiML of a placed call: its audio to the voice agent, told which call this is and
    the call's variables (a variable named call_id cannot hide the call's own)."""
    parameters = [("call_id", call_id)]
    parameters += [(name, value) for name, value in variables.items() if name != "call_id"]
    return twiml.response(twiml.connect_stream(stream_url, parameters))


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str
    auth_token: str
    api_url: str | None
    public_base_url: str
    agent_stream_url: str
    machine_detection: str | None
    timeout_seconds: float


class TwilioCarrier:
    """Talks to Twilio (or a Twilio-compatible simulator) through the official library."""

    def __init__(self, settings: TwilioSettings) -> None:
        self._settings = settings
        # AsyncTwilioHttpClient ignores its own `timeout` (it sends every request with no
        # timeout at all), so each request is bounded here with asyncio.timeout instead.
        self._http = AsyncTwilioHttpClient()
        self._client = Client(settings.account_sid, settings.auth_token, http_client=self._http)
        if settings.api_url:
            self._client.api.base_url = settings.api_url.rstrip("/")

    def _callback(self, kind: str, request: port.DialRequest) -> str:
        # Twilio signs the URL, query included: call and organization cannot be forged
        return (
            f"{self._settings.public_base_url}/webhooks/twilio/{kind}"
            f"?call_id={request.call_id}&org={quote(request.organization_id, safe='')}"
        )

    def _twiml(self, request: port.DialRequest) -> str:
        return stream_twiml(self._settings.agent_stream_url, request.call_id, request.variables)

    async def create_call(self, request: port.DialRequest) -> port.DialResult:
        options: dict[str, object] = {}
        if self._settings.machine_detection:
            options["machine_detection"] = self._settings.machine_detection
        if request.record:
            # "absent" too, so an unanswered call's recording is settled rather than awaited
            options.update(
                record=True,
                recording_channels="dual",
                recording_status_callback=self._callback("recording", request),
                recording_status_callback_event=["completed", "absent"],
                recording_status_callback_method="POST",
            )
        try:
            async with asyncio.timeout(self._settings.timeout_seconds):
                call = await self._client.calls.create_async(
                    to=request.to_number,
                    from_=request.from_number,
                    twiml=self._twiml(request),
                    status_callback=self._callback("status", request),
                    status_callback_event=["initiated", "ringing", "answered", "completed"],
                    status_callback_method="POST",
                    **options,
                )
        except TwilioRestException as exc:
            return classify_rest_error(exc.status, exc.code, carrier_message(str(exc.msg)))
        except TwilioServiceException as exc:  # the RFC 9457 error format of newer APIs
            return classify_rest_error(exc.status, exc.code, exc.detail or exc.title)
        except aiohttp.ClientConnectorError as exc:
            return port.Unsent(f"could not connect to the carrier: {exc}")
        except TimeoutError as exc:
            return port.Ambiguous(f"carrier did not answer in time: {exc!r}")
        except (aiohttp.ClientError, TwilioException) as exc:
            return port.Ambiguous(f"carrier request broke off: {exc!r}")
        return port.Placed(call_sid=str(call.sid))

    async def find_calls(
        self, *, to_number: str, from_number: str, since: datetime
    ) -> list[port.CarrierCall]:
        async with asyncio.timeout(self._settings.timeout_seconds):
            # the library formats the datetime as UTC ("...Z") without converting it first
            calls = await self._client.calls.list_async(
                to=to_number, from_=from_number, start_time_after=since.astimezone(UTC), limit=50
            )
        return [port.CarrierCall(sid=str(c.sid), status=str(c.status)) for c in calls]

    async def fetch_call(self, call_sid: str) -> port.CarrierCall:
        try:
            async with asyncio.timeout(self._settings.timeout_seconds):
                call = await self._client.calls(call_sid).fetch_async()
        except TwilioRestException as exc:
            if exc.status == 404:
                raise port.UnknownCall(call_sid) from exc
            raise
        return _carrier_call(call)

    async def list_recordings(self, call_sid: str) -> list[port.CarrierRecording]:
        async with asyncio.timeout(self._settings.timeout_seconds):
            recordings = await self._client.calls(call_sid).recordings.list_async(limit=20)
        # Twilio's callback gives https://api.twilio.com/2010-04-01/Accounts/AC…/Recordings/RE…
        base = f"{self._client.api.base_url.rstrip('/')}/2010-04-01/Accounts"
        return [
            port.CarrierRecording(
                sid=str(r.sid),
                status=str(r.status),
                url=f"{base}/{r.account_sid or self._settings.account_sid}/Recordings/{r.sid}",
                duration_seconds=_seconds(r.duration),
                channels=r.channels,
                source=str(r.source) if r.source else None,
                error_code=r.error_code,
            )
            for r in recordings
        ]

    async def cancel_call(self, call_sid: str) -> port.CarrierCall | port.CancelRefused:
        try:
            async with asyncio.timeout(self._settings.timeout_seconds):
                call = await self._client.calls(call_sid).update_async(status="canceled")
        except TwilioRestException as exc:
            if 400 <= exc.status < 500 and exc.status != 429:
                return port.CancelRefused(code=exc.code, message=carrier_message(str(exc.msg)))
            raise
        return _carrier_call(call)

    async def close(self) -> None:
        await self._http.close()


def _seconds(value: object) -> int | None:
    """Twilio's durations are strings of whole seconds ("-1" while still recording)."""
    text = str(value) if value is not None else ""
    return int(text) if text.isdigit() else None


def _carrier_call(call: CallInstance) -> port.CarrierCall:
    end_time = call.end_time if isinstance(call.end_time, datetime) else None
    return port.CarrierCall(
        sid=str(call.sid),
        status=str(call.status),
        duration_seconds=_seconds(call.duration),
        answered_by=str(call.answered_by) if call.answered_by else None,
        end_time=end_time.astimezone(UTC) if end_time is not None else None,
    )
