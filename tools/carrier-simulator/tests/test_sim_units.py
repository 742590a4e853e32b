"""Unit tests for config, store/faults, list filtering and paging, resources and WAV output."""

from __future__ import annotations

import calendar
import io
import wave
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from carrier_sim.config import DEFAULT_ACCOUNT_SID, SimConfig
from carrier_sim.listing import ListQueryError, calls_page, matches, parse_time_filter
from carrier_sim.resources import call_resource, rfc2822
from carrier_sim.store import CallRecord, Faults, params_from_pairs
from carrier_sim.wav import SAMPLE_RATE, sine_wav

T0 = float(calendar.timegm((2024, 5, 1, 12, 0, 0)))


def _call(sid: str, to: str = "+14155551212", at: float = T0) -> CallRecord:
    return CallRecord(
        sid=sid,
        account_sid=DEFAULT_ACCOUNT_SID,
        to=to,
        from_="+15017122661",
        params={},
        base_url="http://sim",
        created_at=at,
        start_time=at + 0.02,
    )


def test_config_defaults_and_env() -> None:
    default = SimConfig.from_env({})
    assert default.account_sid == "ACf00df00df00df00df00df00df00df00d"
    assert default.auth_token == "simulator-auth-token"
    assert (default.host, default.port) == ("127.0.0.1", 8090)
    assert (default.ring_seconds, default.talk_seconds) == (0.5, 2.0)
    assert default.long_ring_seconds == 60.0
    assert default.public_url == "http://127.0.0.1:8090"
    custom = SimConfig.from_env(
        {
            "SIM_HOST": "0.0.0.0",
            "SIM_PORT": "9000",
            "SIM_ACCOUNT_SID": "AC1",
            "SIM_AUTH_TOKEN": "tok",
            "SIM_RING_SECONDS": "0.1",
            "SIM_TALK_SECONDS": "0.2",
            "SIM_LONG_RING_SECONDS": "5",
            "SIM_PUBLIC_URL": "http://carrier:9000/",
        }
    )
    assert custom == SimConfig(
        host="0.0.0.0",
        port=9000,
        account_sid="AC1",
        auth_token="tok",
        ring_seconds=0.1,
        talk_seconds=0.2,
        long_ring_seconds=5.0,
        public_url="http://carrier:9000",
    )


def test_params_from_pairs_keeps_repeats() -> None:
    params = params_from_pairs(
        [("To", "+1"), ("StatusCallbackEvent", "initiated"), ("StatusCallbackEvent", "answered")]
    )
    assert params == {"To": "+1", "StatusCallbackEvent": ["initiated", "answered"]}
    call = _call("CA1")
    call.params = params_from_pairs([("StatusCallbackEvent", "ringing completed")])
    assert call.param_list("StatusCallbackEvent") == ["ringing", "completed"]


def test_faults_merge_and_validation() -> None:
    faults = Faults()
    faults.merge({"create_responses": [{"status": 429, "code": 20429}], "drop_callbacks": True})
    faults.merge({"duplicate_callbacks": True})
    assert faults.drop_callbacks
    assert faults.duplicate_callbacks
    assert faults.to_json()["create_responses"] == [{"status": 429, "code": 20429}]
    with pytest.raises(ValueError, match="unknown"):
        faults.merge({"nope": 1})
    with pytest.raises(ValueError, match="status"):
        faults.merge({"create_responses": [{"code": 1}], "reorder_callbacks": True})
    assert not faults.reorder_callbacks  # nothing applied on error


def test_time_filters() -> None:
    assert parse_time_filter("2024-05-01").start == float(calendar.timegm((2024, 5, 1, 0, 0, 0)))
    assert parse_time_filter("2024-05-01T12:00:00Z").start == T0
    with pytest.raises(ListQueryError):
        parse_time_filter("yesterday")
    call = _call("CA1")
    assert matches(call, {"StartTime>": "2024-05-01T12:00:00Z"})
    assert not matches(call, {"StartTime>": "2024-05-01T12:00:01Z"})
    assert matches(call, {"StartTime<": "2024-05-01T12:00:01Z"})
    assert not matches(call, {"StartTime<": "2024-05-01"})
    assert matches(call, {"StartTime": "2024-05-01"})
    assert not matches(call, {"StartTime": "2024-05-02"})
    assert not matches(call, {"EndTime>": "2024-05-01"})  # still running
    assert matches(call, {"To": "+14155551212", "From": "+15017122661"})
    assert not matches(call, {"Status": "completed"})


def test_paging_follows_page_tokens() -> None:
    calls = [_call(f"CA{i:032x}", at=T0 + i) for i in range(5)]
    uri = "/2010-04-01/Accounts/AC/Calls.json"
    first = calls_page(calls, {"PageSize": "2", "To": "+14155551212"}, uri)
    assert [c["sid"] for c in first["calls"]] == [calls[4].sid, calls[3].sid]
    assert (first["page"], first["start"], first["end"], first["page_size"]) == (0, 0, 1, 2)
    assert first["previous_page_uri"] is None
    next_query = {k: v[0] for k, v in parse_qs(urlsplit(first["next_page_uri"]).query).items()}
    assert next_query["To"] == "+14155551212"
    assert next_query["PageToken"] == "PA" + calls[3].sid
    second = calls_page(calls, next_query, uri)
    assert [c["sid"] for c in second["calls"]] == [calls[2].sid, calls[1].sid]
    last_query = {k: v[0] for k, v in parse_qs(urlsplit(second["next_page_uri"]).query).items()}
    last = calls_page(calls, last_query, uri)
    assert [c["sid"] for c in last["calls"]] == [calls[0].sid]
    assert last["next_page_uri"] is None
    assert last["previous_page_uri"] is not None


def test_call_resource_shape() -> None:
    body = call_resource(_call("CA" + "a" * 32))
    assert body["status"] == "queued"
    assert body["direction"] == "outbound-api"
    assert body["to_formatted"] == "(415) 555-1212"
    assert body["start_time"] == "Wed, 01 May 2024 12:00:00 +0000"
    assert body["end_time"] is None
    assert body["duration"] is None
    assert body["uri"] == f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Calls/{'CA' + 'a' * 32}.json"
    assert parsedate_to_datetime(body["date_created"]) == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert rfc2822(None) is None


@pytest.mark.parametrize("channels", [1, 2])
def test_sine_wav(channels: int) -> None:
    data = sine_wav(0.5, channels)
    with wave.open(io.BytesIO(data)) as parsed:
        assert parsed.getnchannels() == channels
        assert parsed.getsampwidth() == 2
        assert parsed.getframerate() == SAMPLE_RATE
        assert parsed.getnframes() == SAMPLE_RATE // 2
        assert any(parsed.readframes(100))
    with pytest.raises(ValueError, match="channels"):
        sine_wav(1.0, 3)
