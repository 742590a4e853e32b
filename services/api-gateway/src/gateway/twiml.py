"""TwiML answers to Twilio's voice webhook."""

from __future__ import annotations

import uuid
from xml.sax.saxutils import quoteattr

from aiohttp import web


def _twiml(body: str) -> web.Response:
    return web.Response(
        text=f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>',
        content_type="text/xml",
    )


def connect_to_agent(stream_url: str, call_id: uuid.UUID) -> web.Response:
    """Hand the call's audio to the voice-agent runtime, telling it which call this is."""
    return _twiml(
        f"<Connect><Stream url={quoteattr(stream_url)}>"
        f'<Parameter name="call_id" value="{call_id}"/></Stream></Connect>'
    )


def reject() -> web.Response:
    """No agent answers this number."""
    return _twiml('<Reject reason="rejected"/>')
