"""HTTP routes: the Twilio REST subset (Basic auth, Twilio JSON errors), the recording media,
the ``/_sim`` control API for tests and ``/healthz``.
"""

from __future__ import annotations

import asyncio
import binascii
import hmac
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, Final

import structlog
from aiohttp import BasicAuth, web

from carrier_sim.config import SimConfig
from carrier_sim.listing import ListQueryError, calls_page
from carrier_sim.playout import PlayoutManager
from carrier_sim.resources import (
    API_VERSION,
    account_uri,
    call_recordings_page,
    call_resource,
    error_body,
    recording_resource,
)
from carrier_sim.scenarios import Rejection, scenario_for
from carrier_sim.store import CallRecord, CallStore, CannedResponse, new_sid, params_from_pairs
from carrier_sim.wav import sine_wav

log = structlog.get_logger(__name__)

CONFIG_KEY = web.AppKey("config", SimConfig)
STORE_KEY = web.AppKey("store", CallStore)
PLAYOUT_KEY = web.AppKey("playout", PlayoutManager)

TWILIO_PREFIX = f"/{API_VERSION}/"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def twilio_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(error_body(status, code, message), status=status)


def _not_found(request: web.Request) -> web.Response:
    return twilio_error(404, 20404, f"The requested resource {request.path} was not found")


def _authorized(request: web.Request, config: SimConfig) -> bool:
    header = request.headers.get("Authorization", "")
    try:
        auth = BasicAuth.decode(header)
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(auth.login, config.account_sid) and hmac.compare_digest(
        auth.password, config.auth_token
    )


@web.middleware
async def twilio_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Basic auth and Twilio-shaped errors for everything under ``/2010-04-01/``."""
    if not request.path.startswith(TWILIO_PREFIX):
        return await handler(request)
    config = request.app[CONFIG_KEY]
    if not _authorized(request, config):
        response = twilio_error(401, 20003, "Authenticate")
        response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        return response
    if request.match_info.get("account_sid", config.account_sid) != config.account_sid:
        return _not_found(request)
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _not_found(request)
    except web.HTTPMethodNotAllowed:
        return twilio_error(405, 20004, "Method not allowed")


# --- calls ----------------------------------------------------------------------------------


def _canned_error(canned: CannedResponse) -> web.Response:
    status = canned.status or 500
    code = canned.code or (20429 if status == 429 else 20000 + status if status >= 500 else status)
    try:
        default_message = HTTPStatus(status).phrase
    except ValueError:
        default_message = "Error"
    return twilio_error(status, code, canned.message or default_message)


def _validate_create(fields: dict[str, str | list[str]]) -> Rejection | None:
    def first(name: str) -> str:
        value = fields.get(name)
        return (value[0] if value else "") if isinstance(value, list) else (value or "")

    if not first("To"):
        return Rejection(400, 21201, "A 'To' phone number is required.")
    if not first("From"):
        return Rejection(400, 21213, "A 'From' phone number is required.")
    if not (first("Url") or first("Twiml") or first("ApplicationSid")):
        return Rejection(
            400,
            21205,
            "Url parameter is required. For more information, "
            "see http://www.twilio.com/docs/api/twiml",
        )
    return None


async def create_call(request: web.Request) -> web.Response:
    """``POST /2010-04-01/Accounts/{AccountSid}/Calls.json``."""
    config, store = request.app[CONFIG_KEY], request.app[STORE_KEY]
    form = await request.post()
    fields = params_from_pairs([(k, v) for k, v in form.items() if isinstance(v, str)])
    store.create_requests += 1
    faults = store.faults
    canned = faults.create_responses.popleft() if faults.create_responses else None
    if faults.create_delay_seconds > 0:
        await asyncio.sleep(faults.create_delay_seconds)
    if canned is not None and canned.status is not None and not canned.call_created:
        log.info("create.fault", status=canned.status, to=fields.get("To"))
        return _canned_error(canned)

    rejection = _validate_create(fields)
    to = str(fields.get("To") or "")
    scenario = None
    if rejection is None:
        outcome = scenario_for(
            to,
            talk_seconds=config.talk_seconds,
            long_talk_seconds=config.long_talk_seconds,
            long_ring_seconds=config.long_ring_seconds,
            earlier_calls=sum(1 for call in store.calls.values() if call.to == to),
        )
        if isinstance(outcome, Rejection):
            rejection = outcome
        else:
            scenario = outcome
    if rejection is not None or scenario is None:
        assert rejection is not None
        log.info("create.rejected", to=to, code=rejection.code)
        return twilio_error(rejection.status, rejection.code, rejection.message)

    call = CallRecord(
        sid=new_sid("CA"),
        account_sid=config.account_sid,
        to=to,
        from_=str(fields.get("From")),
        params=fields,
        base_url=str(request.url.origin()),
        created_at=time.time(),
    )
    store.add_call(call)
    request.app[PLAYOUT_KEY].play(call, scenario)
    log.info("call.created", call_sid=call.sid, to=call.to, status=call.status)
    body = call_resource(call)
    if canned is not None:
        if canned.status is not None:
            log.info("create.fault", status=canned.status, call_sid=call.sid, call_created=True)
            return _canned_error(canned)
        if canned.timeout_seconds:
            log.info("create.stall", seconds=canned.timeout_seconds, call_sid=call.sid)
            await asyncio.sleep(canned.timeout_seconds)
    return web.json_response(body, status=201)


async def list_calls(request: web.Request) -> web.Response:
    """``GET /2010-04-01/Accounts/{AccountSid}/Calls.json``."""
    config, store = request.app[CONFIG_KEY], request.app[STORE_KEY]
    query = {key: request.query[key] for key in request.query}
    try:
        page = calls_page(
            list(store.calls.values()), query, f"{account_uri(config.account_sid)}/Calls.json"
        )
    except ListQueryError as exc:
        return twilio_error(400, 20001, str(exc))
    return web.json_response(page)


def _call_or_404(request: web.Request) -> CallRecord | web.Response:
    call = request.app[STORE_KEY].get_call(request.match_info["call_sid"])
    return call if call is not None else _not_found(request)


async def fetch_call(request: web.Request) -> web.Response:
    """``GET /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json``."""
    call = _call_or_404(request)
    if isinstance(call, web.Response):
        return call
    return web.json_response(call_resource(call))


async def update_call(request: web.Request) -> web.Response:
    """``POST .../Calls/{CallSid}.json``: ``Status=canceled|completed`` ends the call."""
    call = _call_or_404(request)
    if isinstance(call, web.Response):
        return call
    form = await request.post()
    status = str(form.get("Status") or "").lower()
    not_in_progress = twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.")
    if call.is_terminal:
        return not_in_progress
    if status == "canceled":
        if call.status not in ("queued", "ringing"):
            return not_in_progress
        request.app[PLAYOUT_KEY].hang_up(call, "canceled")
    elif status == "completed":
        ending = "completed" if call.status == "in-progress" else "canceled"
        request.app[PLAYOUT_KEY].hang_up(call, ending)
    elif status:
        return twilio_error(400, 21218, f"Invalid Status {status!r}")
    elif call.status != "in-progress":
        return not_in_progress  # a redirect (Url/Twiml) needs a live call
    log.info("call.updated", call_sid=call.sid, requested=status, status=call.status)
    return web.json_response(call_resource(call))


# --- recordings -----------------------------------------------------------------------------


async def recording(request: web.Request) -> web.StreamResponse:
    """``GET .../Recordings/{Sid}[.wav|.json]`` and ``DELETE .../Recordings/{Sid}.json``."""
    store = request.app[STORE_KEY]
    name = request.match_info["name"]
    sid, dot, extension = name.partition(".")
    record = store.get_recording(sid)
    if record is None:
        return _not_found(request)
    extension = extension.lower() if dot else ""
    if request.method == "DELETE":
        if extension not in ("", "json"):
            return _not_found(request)
        del store.recordings[sid]
        return web.Response(status=204)
    if extension == "json":
        return web.json_response(recording_resource(record))
    if extension in ("", "wav"):
        audio = sine_wav(record.duration_seconds, record.channels)
        return web.Response(body=audio, content_type="audio/x-wav")
    return _not_found(request)  # .mp3 and anything else: not simulated


async def call_recordings(request: web.Request) -> web.Response:
    """``GET .../Calls/{CallSid}/Recordings.json``: the recordings made of that call (what
    ``client.calls(sid).recordings.list_async()`` reads), newest first; ``PageSize``/``Page``."""
    call = _call_or_404(request)
    if isinstance(call, web.Response):
        return call
    try:
        page_size = min(1000, max(1, int(request.query.get("PageSize") or 50)))
        page = max(0, int(request.query.get("Page") or 0))
    except ValueError:
        return twilio_error(400, 20001, "PageSize and Page must be integers")
    made = [r for r in request.app[STORE_KEY].recordings.values() if r.call_sid == call.sid]
    list_uri = f"{account_uri(call.account_sid)}/Calls/{call.sid}/Recordings.json"
    return web.json_response(call_recordings_page(made, list_uri, page=page, page_size=page_size))


# --- control API ----------------------------------------------------------------------------


# what GET /sim/calls shows of each call (`from_` as `from`)
SIM_CALL_FIELDS: Final = (
    "sid",
    "to",
    "from_",
    "status",
    "created_at",
    "end_time",  # when the call reached a terminal status (None while it is live)
    "status_callback",
    "answered_by",
    "recording_sid",
    "params",
)


def _sim_call(call: CallRecord) -> dict[str, Any]:
    return {name.rstrip("_"): getattr(call, name) for name in SIM_CALL_FIELDS}


async def sim_calls(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    return web.json_response(
        {
            "calls": [_sim_call(call) for call in store.calls.values()],
            "create_requests": store.create_requests,
        }
    )


async def sim_reset(request: web.Request) -> web.Response:
    await request.app[PLAYOUT_KEY].cancel_all()
    request.app[STORE_KEY].reset()
    log.info("sim.reset")
    return web.json_response({"status": "ok"})


async def sim_get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[STORE_KEY].faults.to_json())


async def sim_set_faults(request: web.Request) -> web.Response:
    faults = request.app[STORE_KEY].faults
    try:
        data = await request.json()
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        faults.merge(data)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    log.info("sim.faults", faults=faults.to_json())
    return web.json_response(faults.to_json())


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def add_routes(app: web.Application) -> None:
    account = f"/{API_VERSION}/Accounts/{{account_sid}}"
    app.router.add_post(f"{account}/Calls.json", create_call)
    app.router.add_get(f"{account}/Calls.json", list_calls)
    app.router.add_get(f"{account}/Calls/{{call_sid}}.json", fetch_call)
    app.router.add_post(f"{account}/Calls/{{call_sid}}.json", update_call)
    app.router.add_get(f"{account}/Calls/{{call_sid}}/Recordings.json", call_recordings)
    app.router.add_get(f"{account}/Recordings/{{name}}", recording)
    app.router.add_delete(f"{account}/Recordings/{{name}}", recording)
    app.router.add_get("/_sim/calls", sim_calls)
    app.router.add_post("/_sim/reset", sim_reset)
    app.router.add_get("/_sim/faults", sim_get_faults)
    app.router.add_post("/_sim/faults", sim_set_faults)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
