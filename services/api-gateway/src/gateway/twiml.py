"""TwiML answers to Twilio's voice webhook (calls_platform.twiml builds the TwiML)."""

from __future__ import annotations

import uuid

from aiohttp import web
from calls_platform import twiml


def _twiml(*verbs: str) -> web.Response:
    return web.Response(text=twiml.document(*verbs), content_type="text/xml")


def connect_to_agent(stream_url: str, call_id: uuid.UUID) -> web.Response:
    """Hand the call's audio to the voice-agent runtime, telling it which call this is."""
    return _twiml(twiml.connect_stream(stream_url, [("call_id", str(call_id))]))


def reject() -> web.Response:
    """No agent answers this number."""
    return _twiml('<Reject reason="rejected"/>')
