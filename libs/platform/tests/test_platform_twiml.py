"""The TwiML that connects a call to the voice agent, as Twilio reads it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from calls_platform import twiml


def test_the_stream_gets_its_url_and_every_parameter_escaped() -> None:
    verbs = twiml.connect_stream(
        "wss://agents.example/stream?a=1&b=2",
        [("call_id", "c-1"), ("first_name", 'Ada "the first" <Lovelace>')],
    )
    root = ET.fromstring(twiml.document(verbs))
    assert root.tag == "Response"
    stream = root.find("./Connect/Stream")
    assert stream is not None
    assert stream.get("url") == "wss://agents.example/stream?a=1&b=2"
    assert [(p.get("name"), p.get("value")) for p in stream.findall("Parameter")] == [
        ("call_id", "c-1"),
        ("first_name", 'Ada "the first" <Lovelace>'),
    ]


def test_a_document_starts_with_the_xml_declaration_and_a_response_does_not() -> None:
    assert twiml.document("<Hangup/>") == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>'
    )
    assert twiml.response("<Hangup/>") == "<Response><Hangup/></Response>"
