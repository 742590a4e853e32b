"""The OpenAPI 3.1 document of the public API, built from the pydantic models.

Request bodies are the JSON Schemas of the very models that validate them (models.py); responses
are the models in schemas.py. `build_openapi` is a pure function of the operation table below:
the gateway serves its result at GET /openapi.json, `make openapi` writes it to
docs/openapi.json, and test_gateway_openapi*.py keeps the table, the app's routes and the
committed file in step.

Carrier callbacks are documented too, tagged as carrier-facing: Twilio calls them with form
bodies and an `X-Twilio-Signature`, never with the client credentials.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal

from calls_events import (
    BATCH_WEBHOOK_EVENT_TYPES,
    E164,
    WEBHOOK_EVENT_DESCRIPTIONS,
    WEBHOOK_EVENT_TYPES,
)
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from . import campaign_models, models, schemas

REF: Final = "#/components/schemas/{model}"
JSON: Final = "application/json"

Security = Literal["client", "jwt", "twilio"]

# Reusable error responses, one per status; every one carries the Error schema.
ERRORS: Final[Mapping[int, tuple[str, str]]] = {
    400: ("MalformedJson", "The body is not JSON (`malformed_json`)."),
    401: (
        "Unauthorized",
        "No credentials, or a token or API key that is malformed, wrongly signed, expired "
        "or revoked (`unauthorized`).",
    ),
    403: (
        "Forbidden",
        "The credentials are valid but may not do this: an API key without the scope "
        "(`calls:read` for reads, `calls:write` for writes: `insufficient_scope`), or an API "
        "key managing API keys (`forbidden`).",
    ),
    404: ("NotFound", "No such resource in the caller's organization (`not_found`)."),
    409: ("Conflict", "The request conflicts with the current state (`conflict`)."),
    413: ("PayloadTooLarge", "The body is over `MAX_BODY_BYTES`, 1 MiB by default."),
    415: (
        "UnsupportedMediaType",
        "A body without `Content-Type: application/json` (`unsupported_media_type`).",
    ),
    422: (
        "ValidationError",
        "A field, parameter or header is wrong; `details` names each one (`validation_error`, "
        "`idempotency_key_reused`). Strings may not contain NUL (U+0000).",
    ),
    416: (
        "RangeNotSatisfiable",
        "The range starts past the end of the recording (`range_not_satisfiable`); "
        "`Content-Range: bytes */<size>` gives the size.",
    ),
    429: ("RateLimited", "Too many writes; retry after `Retry-After` seconds (`rate_limited`)."),
    502: (
        "BadGateway",
        "A service behind the gateway (call log, recordings) is unavailable (`error`).",
    ),
    503: (
        "CatchingUp",
        "Not yet readable: the call log is still recording events accepted a moment ago (a "
        "10,000-number batch takes about a second); retry after `Retry-After` seconds "
        "(`catching_up`). Never returned for something that does not exist.",
    ),
}
JSON_BODY_ERRORS: Final = (400, 413, 415, 422)

PATH_PARAMETERS: Final[Mapping[str, dict[str, Any]]] = {
    "call_id": {"type": "string", "format": "uuid"},
    "key_id": {"type": "string", "format": "uuid"},
    "batch_id": {"type": "string", "pattern": schemas.BATCH_ID_PATTERN},
    "number": {"type": "string", "pattern": E164, "description": "E.164; `%2B` for the `+`"},
    "endpoint_id": {"type": "string", "format": "uuid"},
    "delivery_id": {"type": "string", "format": "uuid"},
    "replay_id": {"type": "string", "format": "uuid"},
}

IDEMPOTENCY_KEY: Final = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Send the same key again (with the same body) to get the same response "
    "without queuing anything twice; 1 to 255 characters.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
RANGE: Final = {
    "name": "Range",
    "in": "header",
    "required": False,
    "description": "One byte range: `bytes=<first>-<last>`, `bytes=<first>-` or "
    "`bytes=-<last n>`. A malformed header, or several ranges, is ignored.",
    "schema": {"type": "string", "examples": ["bytes=0-1023"]},
}
TWILIO_SIGNATURE: Final = {
    "name": "X-Twilio-Signature",
    "in": "header",
    "required": True,
    "description": "HMAC-SHA1 over `PUBLIC_BASE_URL` + path + query and the form parameters, "
    "keyed with `TWILIO_AUTH_TOKEN`.",
    "schema": {"type": "string"},
}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


WEBHOOK_QUERY: Final = (
    _query("call_id", "the call, as the dialer set it in the callback URL", {"type": "string"}),
    _query("org", "the call's organization, as the dialer set it", {"type": "string"}),
)


@dataclass(frozen=True)
class Reply:
    """A success response: a model as JSON, or a given content map (audio, TwiML), or nothing."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    content: Mapping[str, Any] | None = None
    headers: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Operation:
    """One operation: `route` is its method and path (`"get /calls/{call_id}"`)."""

    route: str
    operation_id: str
    summary: str
    replies: tuple[Reply, ...]
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    form: Mapping[str, Any] | None = None
    parameters: tuple[Mapping[str, Any], ...] = ()
    security: Security = "client"
    description: str = ""
    tag: str = ""

    @property
    def method(self) -> str:
        return self.route.split(" ", 1)[0]

    @property
    def path(self) -> str:
        return self.route.split(" ", 1)[1]


def _tagged(tag: str, *operations: Operation) -> tuple[Operation, ...]:
    return tuple(replace(op, tag=tag) for op in operations)


def _write(*errors: int) -> tuple[int, ...]:
    """Errors of a write with a JSON body, besides the operation's own."""
    return tuple(sorted({*JSON_BODY_ERRORS, 429, *errors}))


def _header(description: str, schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": dict(schema or {"type": "string"})}


AUDIO_HEADERS: Final = {
    "Content-Length": _header("bytes in this response", {"type": "integer"}),
    "Accept-Ranges": _header("always `bytes`"),
}
WAV: Final = {"audio/wav": {"schema": {"type": "string", "contentMediaType": "audio/wav"}}}

TWILIO_FORM: Final = {
    "type": "object",
    "description": "Twilio's callback parameters (every one a string), e.g. `AccountSid`, "
    "`CallSid`, `CallStatus`, `SequenceNumber`, `CallDuration`, `AnsweredBy`, `RecordingSid`, "
    "`RecordingUrl`, `RecordingStatus`, `To`, `From`.",
    "additionalProperties": {"type": "string"},
}


class Tag(StrEnum):
    """The document's tags, in the order it lists them (TAGS)."""

    CALLS = "Calls"
    BATCHES = "Batches"
    CAMPAIGNS = "Campaign rules"
    RECORDINGS = "Recordings"
    SETUP = "Agents and caller ID"
    KEYS = "API keys"
    WEBHOOKS = "Webhooks"
    CARRIER = "Carrier callbacks"


DELIVERY_QUERY: Final = (
    _query(
        "status",
        "only deliveries in this state",
        {"type": "string", "enum": ["pending", "delivered", "failed"]},
    ),
    _query(
        "event_type",
        "only messages of this type",
        {"type": "string", "enum": list(WEBHOOK_EVENT_TYPES)},
    ),
    _query("call_id", "only this call's messages", {"type": "string", "format": "uuid"}),
    _query("page", "page number", {"type": "integer", "minimum": 1, "default": 1}),
    _query(
        "page_size",
        "deliveries per page",
        {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    ),
)

OPERATIONS: Final[tuple[Operation, ...]] = (
    *_tagged(
        Tag.SETUP,
        Operation(
            "post /agents",
            "createAgent",
            "Create an agent",
            body=models.CreateAgent,
            replies=(Reply(201, "The agent.", schemas.Agent),),
            errors=_write(409),
            description="A phone number belongs to one agent: a number already assigned is `409`.",
        ),
        Operation(
            "get /agents",
            "listAgents",
            "List the organization's agents",
            replies=(Reply(200, "Every agent, oldest first.", schemas.AgentList),),
        ),
        Operation(
            "put /sip-config",
            "putSipConfig",
            "Set the default caller ID",
            body=models.SipConfig,
            replies=(Reply(200, "The configuration now in force.", schemas.SipConfigView),),
            errors=_write(),
        ),
        Operation(
            "get /sip-config",
            "getSipConfig",
            "Read the default caller ID",
            replies=(Reply(200, "The configuration.", schemas.SipConfigView),),
        ),
    ),
    *_tagged(
        Tag.BATCHES,
        Operation(
            "post /calls/batch",
            "placeBatch",
            "Queue a batch of calls",
            body=models.PlaceBatch,
            parameters=(IDEMPOTENCY_KEY,),
            replies=(Reply(202, "Every call is durably queued.", schemas.BatchAccepted),),
            errors=_write(),
            description="Up to `MAX_BATCH_SIZE` (10,000) numbers; a number listed twice is dialed "
            "once. Caller ID, agent and recording are resolved once for the whole batch, as for a "
            "single call.",
        ),
        Operation(
            "get /calls/batch/{batch_id}",
            "getBatch",
            "A batch's progress",
            replies=(Reply(200, "The batch and its calls.", schemas.Batch),),
            errors=(404, 502, 503),
        ),
        Operation(
            "post /calls/batch/{batch_id}/cancel",
            "cancelBatch",
            "Cancel a batch",
            replies=(
                Reply(
                    202,
                    "Calls not yet answered will end with outcome `canceled`.",
                    schemas.BatchCanceled,
                ),
            ),
            errors=(404, 409, 429, 502, 503),
            description="Calls not yet dialed are not dialed; calls dialed but not yet answered "
            "(queued at the carrier or ringing) are canceled at the carrier; a call in progress is "
            "not cut off. A batch whose every call has ended is `409`; asking twice is harmless.",
        ),
        Operation(
            "post /calls/batch/{batch_id}/pause",
            "pauseBatch",
            "Pause a batch (extension)",
            replies=(Reply(202, "Nothing more is dialed until resumed.", schemas.BatchPauseState),),
            errors=(404, 409, 429, 502, 503),
            description="Calls already placed ring on; calls not yet dialed wait. Pausing a "
            "paused batch changes nothing. A canceled or finished batch is `409`.",
        ),
        Operation(
            "post /calls/batch/{batch_id}/resume",
            "resumeBatch",
            "Resume a paused batch (extension)",
            replies=(Reply(202, "Dialing continues.", schemas.BatchPauseState),),
            errors=(404, 409, 429, 502, 503),
        ),
    ),
    *_tagged(
        Tag.CAMPAIGNS,
        Operation(
            "put /do-not-call/{number}",
            "addDoNotCall",
            "Put a number on the do-not-call list (extension)",
            body=campaign_models.DoNotCallBody,
            replies=(
                Reply(201, "Listed.", schemas.DoNotCallEntry),
                Reply(200, "Already listed: nothing changed.", schemas.DoNotCallEntry),
            ),
            errors=_write(404),
            description="The body is optional. A number that is not E.164 is `404`. A listed "
            "number is never dialed, even by calls "
            "accepted before it was listed: their calls end `failed` with outcome `do_not_call`.",
        ),
        Operation(
            "delete /do-not-call/{number}",
            "removeDoNotCall",
            "Take a number off the do-not-call list (extension)",
            replies=(Reply(204, "Removed."),),
            errors=(404, 429),
        ),
        Operation(
            "get /do-not-call",
            "listDoNotCall",
            "The do-not-call list (extension)",
            parameters=(
                _query("page", "1-based", {"type": "integer", "minimum": 1, "default": 1}),
                _query(
                    "page_size",
                    "at most 500",
                    {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                ),
            ),
            replies=(Reply(200, "One page of listed numbers.", schemas.DoNotCallPage),),
            errors=(422,),
        ),
        Operation(
            "put /calling-policy",
            "putCallingPolicy",
            "Set the organization's calling policy (extension)",
            body=campaign_models.CallingPolicyBody,
            replies=(Reply(200, "The policy now in force.", schemas.CallingPolicy),),
            errors=_write(),
            description="`window` applies to calls accepted from now on that set no window "
            "(copied into each call when it is accepted); `max_concurrency` and "
            "`daily_cap_per_number` apply at dial time to every call of the organization. A field "
            "left out is no rule.",
        ),
        Operation(
            "get /calling-policy",
            "getCallingPolicy",
            "Read the organization's calling policy (extension)",
            replies=(Reply(200, "The policy.", schemas.CallingPolicy),),
        ),
    ),
    *_tagged(
        Tag.CALLS,
        Operation(
            "post /calls",
            "placeCall",
            "Place an outbound call",
            body=models.PlaceCall,
            parameters=(IDEMPOTENCY_KEY,),
            replies=(Reply(202, "The call is durably queued.", schemas.CallAccepted),),
            errors=_write(),
            description="Caller ID: an explicit `from_number`, else the agent's number, else the "
            "organization's default (`422` naming `from_number` if none resolves). An `agent_id` "
            "that is unknown or another organization's is `422` naming `agent_id`.",
        ),
        Operation(
            "get /calls",
            "listCalls",
            "List calls, newest first",
            replies=(Reply(200, "One page of calls.", schemas.CallPage),),
            errors=(422, 502),
        ),
        Operation(
            "get /calls/{call_id}",
            "getCall",
            "A call with its outcome and transcript",
            replies=(Reply(200, "The call.", schemas.Call),),
            errors=(404, 502, 503),
        ),
        Operation(
            "post /calls/{call_id}/conversation",
            "reportConversation",
            "Report a call's conversation (voice-agent runtime)",
            body=models.ReportConversation,
            replies=(Reply(202, "Recorded.", schemas.ConversationRecorded),),
            errors=_write(404),
            description="An identical report sent twice is stored once; a different later report "
            "replaces the earlier one. `ended_by: caller` makes a completed call's outcome "
            "`caller_hangup`.",
        ),
    ),
    *_tagged(
        Tag.RECORDINGS,
        Operation(
            "get /calls/{call_id}/recording",
            "getRecording",
            "Download a call's recording",
            parameters=(RANGE,),
            replies=(
                Reply(200, "The whole WAV, streamed.", content=WAV, headers=AUDIO_HEADERS),
                Reply(
                    206,
                    "The requested range.",
                    content=WAV,
                    headers={
                        **AUDIO_HEADERS,
                        "Content-Range": _header("`bytes <first>-<last>/<size>`"),
                    },
                ),
            ),
            errors=(404, 416, 502),
        ),
        Operation(
            "head /calls/{call_id}/recording",
            "headRecording",
            "A recording's size and type",
            parameters=(RANGE,),
            replies=(
                Reply(200, "As GET, without the body.", headers=AUDIO_HEADERS),
                Reply(206, "As GET, without the body.", headers=AUDIO_HEADERS),
            ),
            errors=(404, 416, 502),
        ),
        Operation(
            "delete /calls/{call_id}/recording",
            "deleteRecording",
            "Delete a call's recording",
            replies=(Reply(204, "Deleted for good; the call's `recording_url` becomes null."),),
            errors=(404, 429, 502),
        ),
    ),
    *_tagged(
        Tag.KEYS,
        Operation(
            "post /api-keys",
            "createApiKey",
            "Create an API key",
            body=models.CreateApiKey,
            security="jwt",
            replies=(Reply(201, "The key, shown this once.", schemas.ApiKeyCreated),),
            errors=_write(),
        ),
        Operation(
            "get /api-keys",
            "listApiKeys",
            "List the organization's API keys",
            security="jwt",
            replies=(
                Reply(200, "Keys not revoked (never the keys themselves).", schemas.ApiKeyList),
            ),
        ),
        Operation(
            "delete /api-keys/{key_id}",
            "revokeApiKey",
            "Revoke an API key",
            security="jwt",
            replies=(Reply(204, "Revoked: the key is refused from now on."),),
            errors=(404, 429),
        ),
    ),
    *_tagged(
        Tag.WEBHOOKS,
        Operation(
            "post /webhook-endpoints",
            "createWebhookEndpoint",
            "Create a webhook endpoint",
            body=models.CreateWebhookEndpoint,
            replies=(
                Reply(
                    201,
                    "The endpoint and its signing secret, shown this once.",
                    schemas.WebhookEndpointWithSecret,
                ),
            ),
            errors=_write(502),
            description="The URL must be https and resolve only to public addresses (a private, "
            "loopback, link-local or metadata address is a `422` naming `url`), unless the "
            "deployment sets `WEBHOOKS_ALLOW_PRIVATE=true`. Needs the `webhooks:manage` scope.",
        ),
        Operation(
            "get /webhook-endpoints",
            "listWebhookEndpoints",
            "List the organization's webhook endpoints",
            replies=(Reply(200, "Every endpoint, oldest first.", schemas.WebhookEndpointList),),
            errors=(502,),
        ),
        Operation(
            "get /webhook-endpoints/{endpoint_id}",
            "getWebhookEndpoint",
            "Get a webhook endpoint",
            replies=(Reply(200, "The endpoint.", schemas.WebhookEndpoint),),
            errors=(404, 502),
        ),
        Operation(
            "patch /webhook-endpoints/{endpoint_id}",
            "updateWebhookEndpoint",
            "Change a webhook endpoint",
            body=models.UpdateWebhookEndpoint,
            replies=(Reply(200, "The endpoint as changed.", schemas.WebhookEndpoint),),
            errors=_write(404, 502),
            description="Change `url`, `events`, `description`, or `enabled`: `false` holds its "
            "deliveries (they wait), `true` resumes them and clears why it was disabled.",
        ),
        Operation(
            "delete /webhook-endpoints/{endpoint_id}",
            "deleteWebhookEndpoint",
            "Delete a webhook endpoint",
            replies=(Reply(204, "Deleted, with its deliveries and their log."),),
            errors=(404, 429, 502),
        ),
        Operation(
            "post /webhook-endpoints/{endpoint_id}/rotate-secret",
            "rotateWebhookSecret",
            "Rotate an endpoint's signing secret",
            replies=(
                Reply(
                    200,
                    "The endpoint and its new secret, shown this once.",
                    schemas.WebhookEndpointWithSecret,
                ),
            ),
            errors=(404, 429, 502),
            description="Messages are signed with the new secret from now on, and with the old "
            "one too (two signatures in `webhook-signature`) until `previous_secret_expires_at` "
            "(24 h by default), so a receiver can switch without refusing a message.",
        ),
        Operation(
            "post /webhook-endpoints/{endpoint_id}/test",
            "testWebhookEndpoint",
            "Send a test message",
            replies=(Reply(200, "How the endpoint answered.", schemas.WebhookTestResult),),
            errors=(404, 429, 502),
            description="Sends one signed `webhook.test` message now (not retried, not logged).",
        ),
        Operation(
            "get /webhook-endpoints/{endpoint_id}/deliveries",
            "listWebhookDeliveries",
            "The endpoint's delivery log",
            parameters=DELIVERY_QUERY,
            replies=(
                Reply(
                    200,
                    "Deliveries, newest first, each with its attempts.",
                    schemas.WebhookDeliveryPage,
                ),
            ),
            errors=(404, 422, 502),
        ),
        Operation(
            "post /webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/redeliver",
            "redeliverWebhook",
            "Send a delivery again",
            replies=(
                Reply(
                    202,
                    "Queued again (same message id); its earlier attempts stay in the log.",
                    schemas.WebhookDelivery,
                ),
            ),
            errors=(404, 429, 502),
        ),
        Operation(
            "post /webhook-endpoints/{endpoint_id}/replay",
            "replayWebhooks",
            "Send the messages since a moment again",
            body=models.ReplayWebhooks,
            replies=(
                Reply(
                    202,
                    "The replay started; deliveries appear in the log as they are queued.",
                    schemas.WebhookReplayStarted,
                ),
            ),
            errors=_write(404, 502),
            description="Re-reads the event store from the start and queues every message of the "
            "endpoint's types whose event happened since `since`: one the endpoint never got is "
            "queued, one it got is sent again (same message id). `batch.completed` is not "
            "replayed. The replay is recorded before the answer and runs in the background; one "
            "cut short by a restart goes on where it was, queuing each message once.",
        ),
        Operation(
            "get /webhook-endpoints/{endpoint_id}/replays/{replay_id}",
            "getWebhookReplay",
            "How far a replay is",
            replies=(Reply(200, "The replay.", schemas.WebhookReplay),),
            errors=(404, 502),
        ),
    ),
    *_tagged(
        Tag.CARRIER,
        Operation(
            "post /webhooks/twilio/status",
            "twilioCallStatus",
            "Twilio call status callback",
            security="twilio",
            form=TWILIO_FORM,
            parameters=(TWILIO_SIGNATURE, *WEBHOOK_QUERY),
            replies=(Reply(204, "Recorded (a repeated callback is recorded once)."),),
            errors=(403, 404, 422),
        ),
        Operation(
            "post /webhooks/twilio/recording",
            "twilioRecordingStatus",
            "Twilio recording status callback",
            security="twilio",
            form=TWILIO_FORM,
            parameters=(TWILIO_SIGNATURE, *WEBHOOK_QUERY),
            replies=(Reply(204, "Recorded, or acknowledged (`in-progress`)."),),
            errors=(403, 404, 422),
        ),
        Operation(
            "post /webhooks/twilio/voice",
            "twilioIncomingCall",
            "Twilio incoming-call webhook",
            security="twilio",
            form=TWILIO_FORM,
            parameters=(TWILIO_SIGNATURE,),
            replies=(
                Reply(
                    200,
                    "TwiML: `<Connect><Stream>` to the agent runtime, or `<Reject/>` for a number "
                    "no agent owns.",
                    content={"text/xml": {"schema": {"type": "string"}}},
                ),
            ),
            errors=(403, 422),
        ),
    ),
)

TAGS: Final = (
    {"name": Tag.CALLS, "description": "Place calls and read their history."},
    {"name": Tag.BATCHES, "description": "Campaigns: many calls in one request."},
    {
        "name": Tag.CAMPAIGNS,
        "description": "Extensions: the do-not-call list and the organization's calling policy.",
    },
    {"name": Tag.RECORDINGS, "description": "Dual-channel call audio (WAV)."},
    {"name": Tag.SETUP, "description": "Agents own numbers; the SIP default is the fallback."},
    {"name": Tag.KEYS, "description": "Long-lived credentials for servers; managed with a JWT."},
    {
        "name": Tag.WEBHOOKS,
        "description": "Signed, durable webhooks: where to push call and batch events (the "
        "`webhooks` section lists the messages). Scope `webhooks:manage`.",
    },
    {
        "name": Tag.CARRIER,
        "description": "Called by Twilio, not by clients: form bodies, authenticated by "
        "`X-Twilio-Signature` (configure them in Twilio).",
    },
)

DESCRIPTION: Final = """\
Place outbound AI voice calls, run batch campaigns and read call history.

**Authentication.** Every client endpoint takes either a JWT (`Authorization: Bearer <token>`,
whose `org_id` claim scopes every read and write to one organization) or an API key
(`X-API-Key`, with scopes `calls:read` and/or `calls:write`). Another organization's calls,
batches and agents are `404`, exactly as if they did not exist.

**Errors** are JSON (`Error`), never HTML. Every response carries `X-Correlation-ID`; send your
own to trace a request through every event and log line.

See docs/api.md for the full guide (outcomes, recordings, batches, idempotency).
"""


def parameter_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value: drop the `null` branch (and its default), the
    title, and merge alternatives that are all string enums into one enum."""
    out = {k: v for k, v in schema.items() if k != "title" and not (k == "default" and v is None)}
    variants = [v for v in out.pop("anyOf", []) if v.get("type") != "null"]
    if len(variants) == 1:
        out.update(variants[0])
    elif variants and all(v.get("type") == "string" and "enum" in v for v in variants):
        out.update(type="string", enum=list(dict.fromkeys(e for v in variants for e in v["enum"])))
    elif variants:
        out["anyOf"] = variants
    return out


def list_calls_parameters() -> list[dict[str, Any]]:
    """GET /calls's query parameters, from schemas.ListCallsQuery."""
    schema = schemas.ListCallsQuery.model_json_schema(by_alias=True, ref_template=REF)
    parameters = []
    for name, prop in schema["properties"].items():
        cleaned = parameter_schema(prop)
        parameter = _query(name, cleaned.pop("description", ""), cleaned)
        if not parameter["description"]:
            del parameter["description"]
        parameters.append(parameter)
    return parameters


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": dict(PATH_PARAMETERS[name])}
        for name in re.findall(r"{(\w+)}", path)
    ]


def _security(kind: Security) -> list[dict[str, list[str]]]:
    if kind == "client":
        return [{"bearerAuth": []}, {"apiKeyAuth": []}]
    if kind == "jwt":
        return [{"bearerAuth": []}]
    return []


def _operation(op: Operation) -> dict[str, Any]:
    parameters = [*_path_parameters(op.path), *(dict(p) for p in op.parameters)]
    if op.operation_id == "listCalls":
        parameters += list_calls_parameters()
    responses: dict[str, Any] = {}
    for reply in op.replies:
        response: dict[str, Any] = {"description": reply.description}
        if reply.model is not None:
            response["content"] = {JSON: {"schema": {"$ref": REF.format(model=_name(reply.model))}}}
        elif reply.content is not None:
            response["content"] = dict(reply.content)
        if reply.headers:
            response["headers"] = dict(reply.headers)
        responses[str(reply.status)] = response
    errors = set(op.errors)
    if op.security != "twilio":
        errors |= {401, 403}
    for status in sorted(errors):
        responses[str(status)] = {"$ref": f"#/components/responses/{_error_name(status)}"}
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
    }
    if op.description:
        out["description"] = op.description
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": {"$ref": REF.format(model=_name(op.body))}}},
        }
    elif op.form is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": dict(op.form)}},
        }
    out["responses"] = responses
    if op.security != "client":  # the document's default is any client credential
        out["security"] = _security(op.security)
    return out


def _name(model: type[BaseModel]) -> str:
    return model.__name__


def _error_name(status: int) -> str:
    return ERRORS[status][0]


def _error_responses() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, (name, description) in sorted(ERRORS.items()):
        response: dict[str, Any] = {
            "description": description,
            "content": {JSON: {"schema": {"$ref": REF.format(model="Error")}}},
        }
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": _header("the schemes accepted: Bearer (JWT) and X-API-Key")
            }
        if status == 416:
            response["headers"] = {"Content-Range": _header("`bytes */<size>`")}
        if status in (429, 503):
            response["headers"] = {
                "Retry-After": _header("seconds to wait", {"type": "integer", "minimum": 1})
            }
        out[name] = response
    return out


# The Standard Webhooks headers every message carries.
WEBHOOK_HEADERS: Final = (
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "description": "The message id (`msg_…`), the same on every attempt, redelivery and "
        "replay: deduplicate on it.",
        "schema": {"type": "string"},
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "description": "When this attempt was signed, in Unix seconds (refuse old ones).",
        "schema": {"type": "string"},
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "description": "`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, keyed with the "
        "endpoint's secret; during a secret rotation two, space-separated (new and old).",
        "schema": {"type": "string"},
    },
)


def _message_model(event_type: str) -> type[BaseModel]:
    if event_type in BATCH_WEBHOOK_EVENT_TYPES:
        return schemas.WebhookBatchMessage
    return schemas.WebhookCallMessage


def _webhooks() -> dict[str, Any]:
    """The OpenAPI 3.1 `webhooks` section: one operation per message type we send."""
    out: dict[str, Any] = {}
    for event_type in WEBHOOK_EVENT_TYPES:
        model = _message_model(event_type)
        out[event_type] = {
            "post": {
                "operationId": "webhook_" + event_type.replace(".", "_"),
                "summary": event_type,
                "description": WEBHOOK_EVENT_DESCRIPTIONS[event_type],
                "tags": [Tag.WEBHOOKS],
                "parameters": [dict(h) for h in WEBHOOK_HEADERS],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": {"$ref": REF.format(model=_name(model))}}},
                },
                "responses": {
                    "2XX": {"description": "Delivered: it is not sent again."},
                    "default": {
                        "description": "408, 429 (with `Retry-After`) and 5xx, like a timeout "
                        "or a refused connection, are retried with back-off for 24 h, in "
                        "order per call; any other status gives the message up."
                    },
                },
                "security": [],
            }
        }
    return out


def webhook_payload_schemas() -> dict[str, dict[str, Any]]:
    """A standalone JSON Schema per message type (docs/events/webhooks/<type>.schema.json)."""
    out: dict[str, dict[str, Any]] = {}
    for event_type in WEBHOOK_EVENT_TYPES:
        schema = _message_model(event_type).model_json_schema(mode="serialization")
        schema["properties"]["type"] = {"const": event_type, "type": "string"}
        schema["title"] = event_type
        schema["description"] = WEBHOOK_EVENT_DESCRIPTIONS[event_type]
        out[event_type] = schema
    return out


def _component_schemas(operations: Sequence[Operation]) -> dict[str, Any]:
    wanted: dict[type[BaseModel], JsonSchemaMode] = {
        schemas.Error: "serialization",
        schemas.WebhookCallMessage: "serialization",
        schemas.WebhookBatchMessage: "serialization",
    }
    for op in operations:
        if op.body is not None:
            wanted[op.body] = "validation"
        for reply in op.replies:
            if reply.model is not None:
                wanted[reply.model] = "serialization"
    _, top = models_json_schema(list(wanted.items()), ref_template=REF)
    return dict(sorted(top.get("$defs", {}).items()))


def build_openapi(operations: Sequence[Operation] = OPERATIONS) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `operations` (a pure function: same input, same output)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    responses = _error_responses()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Calls API",
            "version": importlib.metadata.version("calls-gateway"),
            "description": DESCRIPTION,
        },
        "tags": [dict(t) for t in TAGS],
        "security": _security("client"),
        "paths": paths,
        "webhooks": _webhooks(),
        "components": {
            "schemas": _component_schemas(operations),
            "responses": responses,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "HS256 by default (or RS256/ES256 behind an identity "
                    "provider); claims `sub`, `org_id`, `exp`.",
                },
                "apiKeyAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "An API key from POST /api-keys (`ck_…`).",
                },
            },
        },
    }


def render() -> str:
    """The document as committed in docs/openapi.json (and served at /openapi.json)."""
    return json.dumps(build_openapi(), indent=2, ensure_ascii=False) + "\n"


def write_webhook_schemas(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for event_type, schema in webhook_payload_schemas().items():
        (directory / f"{event_type}.schema.json").write_text(
            json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )


def main() -> None:
    """`python -m gateway.openapi [FILE]`: write the document to FILE, or print it;
    `python -m gateway.openapi --webhook-schemas DIR`: write each webhook message's schema."""
    if len(sys.argv) > 2 and sys.argv[1] == "--webhook-schemas":
        write_webhook_schemas(Path(sys.argv[2]))
        return
    text = render()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
