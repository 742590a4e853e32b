"""Unit: the request bodies' validation (E.164 numbers, no extra fields, no type coercion)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from gateway.models import CreateAgent, PlaceBatch, PlaceCall, SipConfig
from pydantic import ValidationError


def _fields(exc: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [".".join(str(p) for p in err["loc"]) for err in exc.value.errors()]


@pytest.mark.parametrize("number", ["+14155550100", "+442071838750", "+12", "+123456789012345"])
def test_e164_numbers_are_accepted(number: str) -> None:
    assert PlaceCall.model_validate({"to_number": number}).to_number == number


@pytest.mark.parametrize(
    "number",
    [
        "14155550100",  # no +
        "+04155550100",  # leading zero country code
        "+1",  # too short
        "+1234567890123456",  # 16 digits
        "+1 415 555 0100",
        "+1-415-555-0100",
        "+1415555010a",
        "+14155550100\n",
        " +14155550100",
        "+1" + "".join(chr(0x0660 + int(d)) for d in "4155550100"),  # Arabic-Indic digits
        "",
    ],
)
def test_non_e164_numbers_are_refused(number: str) -> None:
    with pytest.raises(ValidationError) as exc:
        PlaceCall.model_validate({"to_number": number})
    assert _fields(exc) == ["to_number"]


def test_to_number_as_an_integer_is_refused_not_coerced() -> None:
    with pytest.raises(ValidationError) as exc:
        PlaceCall.model_validate({"to_number": 14155550100})
    assert _fields(exc) == ["to_number"]


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (PlaceCall, {"to_number": "+14155550100", "priority": "high"}),
        (PlaceBatch, {"to_numbers": ["+14155550100"], "recording_enabled": False}),
        (CreateAgent, {"name": "Ada", "phone_number": "+14155550100", "id": "x"}),
        (SipConfig, {"default_from_number": "+14155550100", "org": "other"}),
    ],
)
def test_extra_fields_are_refused(model: type[Any], body: dict[str, Any]) -> None:
    extra = (set(body) - set(model.model_fields)).pop()
    with pytest.raises(ValidationError) as exc:
        model.model_validate(body)
    assert _fields(exc) == [extra]


def test_place_call_optional_fields() -> None:
    agent_id = uuid.uuid4()
    call = PlaceCall.model_validate(
        {"to_number": "+14155550100", "from_number": "+14155550101", "agent_id": str(agent_id)}
    )
    assert (call.from_number, call.agent_id) == ("+14155550101", agent_id)
    with pytest.raises(ValidationError) as exc:
        PlaceCall.model_validate({"to_number": "+14155550100", "agent_id": "not-a-uuid"})
    assert _fields(exc) == ["agent_id"]


def test_batch_names_each_invalid_entry_by_index() -> None:
    with pytest.raises(ValidationError) as exc:
        PlaceBatch.model_validate({"to_numbers": ["+14155550100", "nope", "+1", 5]})
    assert _fields(exc) == ["to_numbers.1", "to_numbers.2", "to_numbers.3"]


@pytest.mark.parametrize("to_numbers", [[], "+14155550100", {"0": "+14155550100"}, None])
def test_batch_needs_a_non_empty_list(to_numbers: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        PlaceBatch.model_validate({"to_numbers": to_numbers})
    assert _fields(exc) == ["to_numbers"]


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_agent_name_must_be_1_to_100_characters(name: str) -> None:
    with pytest.raises(ValidationError) as exc:
        CreateAgent.model_validate({"name": name, "phone_number": "+14155550100"})
    assert _fields(exc) == ["name"]


def test_sip_default_may_be_cleared_but_must_be_given() -> None:
    assert SipConfig.model_validate({"default_from_number": None}).default_from_number is None
    with pytest.raises(ValidationError) as exc:
        SipConfig.model_validate({})
    assert _fields(exc) == ["default_from_number"]


@pytest.mark.parametrize("value", ["true", "yes", 1, 0, None])
def test_record_flags_are_booleans_not_coerced(value: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        CreateAgent.model_validate(
            {"name": "Ada", "phone_number": "+14155550100", "recording_enabled": value}
        )
    assert _fields(exc) == ["recording_enabled"]
    if value is not None:  # null means "as the agent says" on a call
        with pytest.raises(ValidationError) as exc:
            PlaceCall.model_validate({"to_number": "+14155550100", "record": value})
        assert _fields(exc) == ["record"]


def test_record_is_optional_and_recording_is_on_by_default() -> None:
    assert PlaceCall.model_validate({"to_number": "+14155550100"}).record is None
    assert PlaceBatch.model_validate({"to_numbers": ["+14155550100"]}).record is None
    agent = CreateAgent.model_validate({"name": "Ada", "phone_number": "+14155550100"})
    assert agent.recording_enabled is True
