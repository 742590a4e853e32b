"""The OpenAPI document stays in step with the routes, the models and the committed file; it
is served, with its docs page, without credentials and without anything from the internet."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from call_log.queries import ListQuery
from calls_events import (
    BATCH_CALL_STATUSES,
    CALL_STATUSES,
    CARRIER_STATUSES,
    OUTCOMES,
    WEBHOOK_EVENT_TYPES,
)
from calls_platform import asyncapi
from gateway import campaign_models, models, schemas
from gateway.openapi import (
    OPERATIONS,
    REF,
    build_openapi,
    parameter_schema,
    render,
    webhook_payload_schemas,
)
from openapi_spec_validator import validate
from pydantic import BaseModel

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Gateway

REPO = Path(__file__).resolve().parents[3]
# Served by every service and not part of the public API; the docs describe themselves.
UNDOCUMENTED = re.compile(r"^/(healthz|readyz|metrics|openapi\.json|asyncapi\.json|docs)(/|$)")
METHODS = ("get", "put", "post", "delete", "head", "patch", "options")


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def _app_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if not UNDOCUMENTED.match(path):
            routes.add((route.method, path))
    return routes


def test_document_is_valid_openapi_3_1() -> None:
    document = build_openapi()

    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


@pytest.mark.integration  # the running gateway (its database)
async def test_every_route_is_documented_and_every_documented_operation_is_routed(
    gateway: Gateway,
) -> None:
    server = gateway.client.server
    assert isinstance(server, TestServer)
    app: web.Application = server.app
    routes = _app_routes(app)
    documented = _documented(build_openapi())
    # aiohttp answers HEAD on every GET route by itself; only the recording's is worth a word
    implicit_heads = {("HEAD", path) for method, path in routes if method == "GET"} - documented

    assert routes - implicit_heads == documented


def test_every_request_body_is_the_json_schema_of_the_model_that_validates_it() -> None:
    document = build_openapi()
    components = document["components"]["schemas"]
    bodies = [op for op in OPERATIONS if op.body is not None]

    assert {op.body for op in bodies} == {
        models.CreateAgent,
        models.SipConfig,
        models.PlaceCall,
        models.PlaceBatch,
        models.ReportConversation,
        models.CreateApiKey,
        campaign_models.DoNotCallBody,
        campaign_models.CallingPolicyBody,
        models.CreateWebhookEndpoint,
        models.UpdateWebhookEndpoint,
        models.ReplayWebhooks,
    }
    for op in bodies:
        assert op.body is not None
        content = document["paths"][op.path][op.method]["requestBody"]["content"]
        assert content == {
            "application/json": {"schema": {"$ref": REF.format(model=op.body.__name__)}}
        }
        expected = op.body.model_json_schema(ref_template=REF, mode="validation")
        for name, definition in expected.pop("$defs", {}).items():
            assert components[name] == definition, name
        assert components[op.body.__name__] == expected, op.body.__name__


def test_every_json_response_is_a_documented_model() -> None:
    document = build_openapi()
    components = document["components"]["schemas"]
    for op in OPERATIONS:
        for reply in op.replies:
            if reply.model is None:
                continue
            expected = reply.model.model_json_schema(ref_template=REF, mode="serialization")
            expected.pop("$defs", None)
            assert components[reply.model.__name__] == expected, reply.model.__name__


def test_every_client_endpoint_takes_a_jwt_and_api_key_management_only_a_jwt() -> None:
    document = build_openapi()
    schemes = document["components"]["securitySchemes"]

    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyAuth"] == {
        **schemes["apiKeyAuth"],
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    assert document["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
    for path, item in document["paths"].items():
        for method, op in item.items():
            security = op.get("security", document["security"])
            if path.startswith("/webhooks/"):
                assert security == [], (method, path)
                assert any(p["name"] == "X-Twilio-Signature" for p in op["parameters"])
            elif path.startswith("/api-keys"):
                assert security == [{"bearerAuth": []}], (method, path)
            else:
                assert security == [{"bearerAuth": []}, {"apiKeyAuth": []}], (method, path)
            if not path.startswith("/webhooks/"):
                assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_errors_are_documented_with_the_error_schema_where_they_can_happen() -> None:
    document = build_openapi()
    error_ref = {"$ref": "#/components/schemas/Error"}
    for name, response in document["components"]["responses"].items():
        assert response["content"]["application/json"]["schema"] == error_ref, name
    for path, item in document["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            if "requestBody" in op and "application/json" in op["requestBody"]["content"]:
                assert {"400", "413", "415", "422"} <= codes, (method, path)
            if "{" in path:
                assert "404" in codes, (method, path)
            if method != "get" and method != "head" and not path.startswith("/webhooks/"):
                assert "429" in codes, (method, path)
    assert "409" in document["paths"]["/agents"]["post"]["responses"]
    assert "409" in document["paths"]["/calls/batch/{batch_id}/cancel"]["post"]["responses"]
    assert "416" in document["paths"]["/calls/{call_id}/recording"]["get"]["responses"]


def test_the_error_model_matches_what_json_error_sends() -> None:
    from calls_platform.http import json_error

    response = json_error(
        422, "validation_error", "invalid request body", [{"field": "to_number", "message": "x"}]
    )
    assert response.text is not None

    schemas.Error.model_validate_json(response.text)  # raises if the shapes part ways


def test_list_calls_parameters_are_the_call_logs_query_model() -> None:
    document = build_openapi()
    parameters = {p["name"]: p for p in document["paths"]["/calls"]["get"]["parameters"]}
    theirs = ListQuery.model_json_schema(by_alias=True)["properties"]

    assert set(parameters) == set(theirs) == {
        "page", "page_size", "direction", "status", "search", "agent_id", "from", "to",
    }  # fmt: skip
    for name in ("page", "page_size", "direction", "search", "agent_id", "from", "to"):
        their_schema = parameter_schema(theirs[name])
        their_schema.pop("description", None)
        assert parameters[name]["schema"] == their_schema, name
    # the call log checks status by hand against the shared lists: the document enumerates them
    assert parameters["status"]["schema"]["enum"] == list(
        dict.fromkeys([*CALL_STATUSES, *OUTCOMES])
    )


def test_response_enums_are_the_shared_vocabulary() -> None:
    components = build_openapi()["components"]["schemas"]
    summary = components["CallSummary"]["properties"]
    entry = components["BatchCall"]["properties"]

    assert summary["status"]["enum"] == list(CALL_STATUSES)
    outcome = next(v for v in summary["outcome"]["anyOf"] if v.get("type") == "string")
    assert outcome["enum"] == list(OUTCOMES)
    carrier = next(v for v in summary["carrier_status"]["anyOf"] if v.get("type") == "string")
    assert carrier["enum"] == list(CARRIER_STATUSES)
    assert entry["status"]["enum"] == list(BATCH_CALL_STATUSES)
    assert entry["call_status"]["enum"] == list(CALL_STATUSES)


@pytest.mark.parametrize("model", [schemas.CallSummary, schemas.Call], ids=["list item", "detail"])
def test_call_fields_are_the_ones_the_call_log_serves(model: type[BaseModel]) -> None:
    from call_log.queries import DETAIL_FIELDS, LIST_FIELDS

    fields = DETAIL_FIELDS if model is schemas.Call else LIST_FIELDS

    assert set(model.model_fields) == {name for name, _ in fields}


def test_committed_document_is_current() -> None:
    committed = (REPO / "docs" / "openapi.json").read_text(encoding="utf-8")

    assert committed == render(), "docs/openapi.json is stale: run `make openapi`"


@pytest.mark.integration  # the running gateway (its database)
async def test_openapi_json_is_served_without_credentials(gateway: Gateway) -> None:
    response = await gateway.client.get("/openapi.json")

    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == json.loads(render())


@pytest.mark.integration  # the running gateway (its database)
async def test_asyncapi_json_is_served_beside_it_without_credentials(gateway: Gateway) -> None:
    response = await gateway.client.get("/asyncapi.json")

    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == json.loads(asyncapi.render())


@pytest.mark.integration  # the running gateway (its database)
async def test_docs_page_is_served_without_credentials_and_needs_nothing_from_outside(
    gateway: Gateway,
) -> None:
    response = await gateway.client.get("/docs")
    page = await response.text()

    assert response.status == 200
    assert response.content_type == "text/html"
    assert not re.search(r"https?:|(src|href|url)[=:]\s*\"//", page)  # nothing from elsewhere
    assert "validatorUrl: null" in page  # Swagger UI would otherwise call an online validator
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "docs/assets/swagger-ui-bundle.js" in assets
    assert "docs/assets/swagger-ui.css" in assets
    for asset in assets:
        fetched = await gateway.client.get("/" + asset)
        body = await fetched.read()
        assert fetched.status == 200, asset
        assert len(body) > 0, asset


def test_committed_webhook_message_schemas_are_current() -> None:
    directory = REPO / "docs" / "events" / "webhooks"
    committed = {p.name.removesuffix(".schema.json") for p in directory.glob("*.schema.json")}
    schemas_now = webhook_payload_schemas()
    assert committed == set(schemas_now), "run `make openapi`"
    for event_type, schema in schemas_now.items():
        on_disk = json.loads((directory / f"{event_type}.schema.json").read_text())
        assert on_disk == schema, f"{event_type}.schema.json is stale: run `make openapi`"


def test_every_webhook_message_type_is_in_the_webhooks_section() -> None:
    document = build_openapi()
    assert set(document["webhooks"]) == set(WEBHOOK_EVENT_TYPES)
    for event_type, item in document["webhooks"].items():
        body = item["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        model = body.rsplit("/", 1)[1]
        assert model in document["components"]["schemas"]
        expected = (
            "WebhookBatchMessage" if event_type.startswith("batch.") else "WebhookCallMessage"
        )
        assert model == expected
