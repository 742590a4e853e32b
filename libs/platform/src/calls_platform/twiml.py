"""The TwiML that hands a call's audio to the voice-agent runtime, built in one place: the
gateway answers Twilio's voice webhook with it, and the dialer places calls with it."""

from __future__ import annotations

from collections.abc import Iterable
from xml.sax.saxutils import quoteattr

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


def connect_stream(stream_url: str, parameters: Iterable[tuple[str, str]]) -> str:
    """`<Connect><Stream>` to `stream_url`, each of `parameters` a `<Parameter>` the agent
    runtime is handed (names and values escaped as XML attributes)."""
    entries = "".join(
        f"<Parameter name={quoteattr(name)} value={quoteattr(value)}/>"
        for name, value in parameters
    )
    return f"<Connect><Stream url={quoteattr(stream_url)}>{entries}</Stream></Connect>"


def response(*verbs: str) -> str:
    """A `<Response>` of `verbs` (without the XML declaration; `document` adds it)."""
    return f"<Response>{''.join(verbs)}</Response>"


def document(*verbs: str) -> str:
    """A whole TwiML document: the XML declaration and a `<Response>` of `verbs`."""
    return XML_DECLARATION + response(*verbs)
