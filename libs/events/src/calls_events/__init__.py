"""The one definition of every event in the Calls backend, shared by all services."""

from ._base import Envelope, Event, UnknownEventType, event_class, event_types, upcaster
from .batches import BatchCancelRequested, BatchRequested
from .calls import (
    E164,
    CallCanceled,
    CallFailed,
    CallInitiated,
    CallRequested,
    CallStatusReported,
    CarrierStatus,
    call_stream,
)
from .conversations import ConversationReported, InboundCallReceived, ProviderUse, TranscriptTurn
from .recordings import (
    RECORDING_SID,
    RecordingDeleted,
    RecordingFailed,
    RecordingReported,
    RecordingStatus,
    RecordingStored,
)
from .webhooks import (
    BATCH_WEBHOOK_EVENT_TYPES,
    WEBHOOK_EVENT_DESCRIPTIONS,
    WEBHOOK_EVENT_TYPES,
    WebhookEventType,
)

__all__ = [
    "BATCH_WEBHOOK_EVENT_TYPES",
    "E164",
    "RECORDING_SID",
    "WEBHOOK_EVENT_DESCRIPTIONS",
    "WEBHOOK_EVENT_TYPES",
    "BatchCancelRequested",
    "BatchRequested",
    "CallCanceled",
    "CallFailed",
    "CallInitiated",
    "CallRequested",
    "CallStatusReported",
    "CarrierStatus",
    "ConversationReported",
    "Envelope",
    "Event",
    "InboundCallReceived",
    "ProviderUse",
    "RecordingDeleted",
    "RecordingFailed",
    "RecordingReported",
    "RecordingStatus",
    "RecordingStored",
    "TranscriptTurn",
    "UnknownEventType",
    "WebhookEventType",
    "call_stream",
    "event_class",
    "event_types",
    "upcaster",
]
