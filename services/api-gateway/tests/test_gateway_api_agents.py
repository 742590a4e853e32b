"""Integration: agents (caller-ID numbers) and the organization's SIP default."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Gateway

pytestmark = pytest.mark.integration


async def test_create_agent_answers_201_with_its_id(gateway: Gateway, org: str) -> None:
    number = gateway.number()
    response = await gateway.post_json("/agents", org, {"name": " Ada ", "phone_number": number})
    assert response.status == 201
    agent = await response.json()
    assert uuid.UUID(agent["id"])
    assert agent["name"] == "Ada"  # surrounding whitespace is trimmed
    assert agent["phone_number"] == number
    assert agent["recording_enabled"] is True  # calls are recorded unless the agent says not
    assert datetime.fromisoformat(agent["created_at"]).tzinfo is not None


async def test_an_agent_may_turn_recording_off(gateway: Gateway, org: str) -> None:
    response = await gateway.post_json(
        "/agents",
        org,
        {"name": "Quiet", "phone_number": gateway.number(), "recording_enabled": False},
    )
    assert response.status == 201
    assert (await response.json())["recording_enabled"] is False
    [listed] = (await (await gateway.get("/agents", org)).json())["items"]
    assert listed["recording_enabled"] is False


async def test_list_agents_shows_only_the_callers_organization(
    gateway: Gateway, org: str, other_org: str
) -> None:
    mine = [gateway.number(), gateway.number()]
    for i, number in enumerate(mine):
        response = await gateway.post_json(
            "/agents", org, {"name": f"agent {i}", "phone_number": number}
        )
        assert response.status == 201
    response = await gateway.post_json(
        "/agents", other_org, {"name": "theirs", "phone_number": gateway.number()}
    )
    assert response.status == 201

    response = await gateway.get("/agents", org)
    assert response.status == 200
    items = (await response.json())["items"]
    assert [a["phone_number"] for a in items] == mine  # in creation order
    assert [a["name"] for a in items] == ["agent 0", "agent 1"]

    response = await gateway.get("/agents", other_org)
    assert [a["name"] for a in (await response.json())["items"]] == ["theirs"]


async def test_list_agents_of_a_new_organization_is_empty(gateway: Gateway, org: str) -> None:
    response = await gateway.get("/agents", org)
    assert response.status == 200
    assert await response.json() == {"items": []}


@pytest.mark.parametrize("same_org", [True, False], ids=["same org", "other org"])
async def test_duplicate_phone_number_is_409_json(
    gateway: Gateway, org: str, other_org: str, same_org: bool
) -> None:
    """A number rings one agent of one organization, so it is unique across organizations."""
    number = gateway.number()
    first = await gateway.post_json("/agents", org, {"name": "first", "phone_number": number})
    assert first.status == 201

    second_org = org if same_org else other_org
    response = await gateway.post_json(
        "/agents", second_org, {"name": "second", "phone_number": number}
    )
    assert response.status == 409
    error = (await response.json())["error"]
    assert error["code"] == "conflict"
    assert [d["field"] for d in error["details"]] == ["phone_number"]
    listed = await (await gateway.get("/agents", second_org)).json()
    assert [a["name"] for a in listed["items"]] == ([] if not same_org else ["first"])


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "Ada", "phone_number": "555-0100"}, ["phone_number"]),
        ({"name": "Ada"}, ["phone_number"]),
        ({"phone_number": "+14155550100"}, ["name"]),
        ({"name": "", "phone_number": "+14155550100"}, ["name"]),
        ({"name": "Ada", "phone_number": 14155550100}, ["phone_number"]),
        ({"name": "Ada", "phone_number": "+14155550100", "extra": 1}, ["extra"]),
        ({}, ["name", "phone_number"]),
    ],
)
async def test_invalid_agent_is_422_naming_the_field(
    gateway: Gateway, org: str, body: dict[str, Any], fields: list[str]
) -> None:
    response = await gateway.post_json("/agents", org, body)
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == fields
    assert await (await gateway.get("/agents", org)).json() == {"items": []}


async def test_agent_body_must_be_json(gateway: Gateway, org: str) -> None:
    response = await gateway.client.post(
        "/agents", data="name=Ada&phone_number=%2B14155550100", headers=gateway.auth(org)
    )
    assert response.status == 415
    assert (await response.json())["error"]["code"] == "unsupported_media_type"


async def test_sip_config_is_unset_until_put(gateway: Gateway, org: str) -> None:
    response = await gateway.get("/sip-config", org)
    assert response.status == 200
    assert await response.json() == {"default_from_number": None}


async def test_put_sip_config_sets_the_default_and_get_reads_it(
    gateway: Gateway, org: str, other_org: str
) -> None:
    first, second = gateway.number(), gateway.number()
    for number in (first, second):  # a second PUT replaces the first
        response = await gateway.client.put(
            "/sip-config", json={"default_from_number": number}, headers=gateway.auth(org)
        )
        assert response.status == 200
        assert await response.json() == {"default_from_number": number}

    assert await (await gateway.get("/sip-config", org)).json() == {"default_from_number": second}
    assert await (await gateway.get("/sip-config", other_org)).json() == {
        "default_from_number": None
    }

    response = await gateway.client.put(
        "/sip-config", json={"default_from_number": None}, headers=gateway.auth(org)
    )
    assert response.status == 200
    assert await (await gateway.get("/sip-config", org)).json() == {"default_from_number": None}


@pytest.mark.parametrize(
    ("body", "field"),
    [({"default_from_number": "0800 100 100"}, "default_from_number"), ({}, "default_from_number")],
)
async def test_invalid_sip_config_is_422_and_keeps_the_default(
    gateway: Gateway, org: str, body: dict[str, Any], field: str
) -> None:
    number = gateway.number()
    await gateway.client.put(
        "/sip-config", json={"default_from_number": number}, headers=gateway.auth(org)
    )
    response = await gateway.client.put("/sip-config", json=body, headers=gateway.auth(org))
    assert response.status == 422
    assert [d["field"] for d in (await response.json())["error"]["details"]] == [field]
    assert await (await gateway.get("/sip-config", org)).json() == {"default_from_number": number}
