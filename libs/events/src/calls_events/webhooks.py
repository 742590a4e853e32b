"""The vocabulary of customer webhooks: the event types a webhook endpoint can subscribe to.

These are not stored events: the webhooks service derives them from the stored events
(`CallRequested` → `call.queued`, …) and sends them, signed, to customers' endpoints.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

WebhookEventType = Literal[
    "call.queued",
    "call.initiated",
    "call.answered",
    "call.ended",
    "call.failed",
    "recording.ready",
    "transcript.ready",
    "batch.completed",
    "batch.canceled",
]
WEBHOOK_EVENT_TYPES: Final[tuple[str, ...]] = get_args(WebhookEventType)
# the payload's `data` is the batch (GET /calls/batch/{id}) for these, the call for the others
BATCH_WEBHOOK_EVENT_TYPES: Final = frozenset({"batch.completed", "batch.canceled"})
# What each type means, for the docs (OpenAPI `webhooks`, docs/api.md).
WEBHOOK_EVENT_DESCRIPTIONS: Final[dict[str, str]] = {
    "call.queued": (
        "An outbound call was accepted (POST /calls) and waits to be dialed; a batch's call,"
        " when the dialer takes it up, just before it is dialed, put off or ended."
    ),
    "call.initiated": "The carrier accepted the call (it has its CallSid), or an inbound call "
    "arrived.",
    "call.answered": "The call was answered (the carrier reported it in progress).",
    "call.ended": "The call reached its final status after it was placed, or was canceled "
    "before it was dialed: `status`, `outcome`, `duration` and `error_reason` are final.",
    "call.failed": "The call could not be placed (the carrier refused it, e.g. an invalid "
    "number), or was not placed (the do-not-call list skipped it, or its end_at passed "
    "first): `error_reason` says why. A call ends with exactly one of call.ended and "
    "call.failed.",
    "recording.ready": "The call's recording is stored and can be downloaded "
    "(GET /calls/{call_id}/recording).",
    "transcript.ready": "The voice-agent runtime reported the conversation: `transcript` and "
    "`provider_usage` are set.",
    "batch.completed": "Every call of a batch reached its final status.",
    "batch.canceled": "A client canceled the batch; its calls not yet dialed will not be.",
}
