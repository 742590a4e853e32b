"""The event base class, the envelope every event travels in, and the type registry."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

_REGISTRY: dict[str, type[Event]] = {}
# (event_type, from_version) -> function turning that version's data into the next version's.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class UnknownEventType(LookupError):
    """An envelope names an event type this library does not define."""


class Event(BaseModel):
    """Base of every domain event. Subclasses set TYPE and VERSION and register themselves.

    Bump VERSION when a change is not backwards compatible, and register an upcaster from the
    old version so events already stored keep loading.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        event_type = cls.__dict__.get("TYPE")
        if event_type is None:
            return
        if event_type in _REGISTRY:
            raise TypeError(f"event type {event_type!r} defined twice")
        _REGISTRY[event_type] = cls


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function that upgrades stored data of `event_type` from `from_version`."""

    def register(fn: Upcaster) -> Upcaster:

        _UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


def event_class(event_type: str) -> type[Event]:
    try:
        return _REGISTRY[event_type]
    except KeyError:
        raise UnknownEventType(event_type) from None


def event_types() -> dict[str, type[Event]]:
    return dict(_REGISTRY)


def _now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """What travels on the wire and sits in the event store: metadata plus the event's data.

    `position` is the global order in the event store; it is None until the store assigns it.
    `stream_version` is the event's 1-based index within its stream.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    event_type: str
    event_version: int
    stream_id: str
    organization_id: str
    occurred_at: datetime = Field(default_factory=_now)
    correlation_id: str | None = None
    causation_id: str | None = None
    position: int | None = None
    stream_version: int | None = None
    data: dict[str, Any]
    # (the data, type and version it was validated from, the event): see event()
    _event: tuple[dict[str, Any], str, int, Event] | None = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        # the fields only: whether event() was asked already (the private cache) is no
        # difference between two envelopes
        if not isinstance(other, Envelope):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = BaseModel.__hash__

    @classmethod
    def wrap(
        cls,
        event: Event,
        *,
        stream_id: str,
        organization_id: str,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        event_id: uuid.UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> Self:
        return cls(
            event_id=event_id or uuid.uuid4(),
            event_type=event.TYPE,
            event_version=event.VERSION,
            stream_id=stream_id,
            organization_id=organization_id,
            occurred_at=occurred_at or _now(),
            correlation_id=correlation_id,
            causation_id=causation_id,
            data=event.model_dump(mode="json"),
        )

    def event(self) -> Event:
        """The typed event, upcast to the current version if it was stored by an older one.

        Validated once per envelope (a consumer's intake validates it to dead-letter what is
        not an event, and its handler asks again); the event is immutable, so it is shared."""
        # the cache read and written in pydantic's own dict of private attributes: through
        # the attribute (`self._event`), pydantic's __getattr__/__setattr__ cost three times
        # what validating a CallRequested does (profiled in the call log's projector)
        private = self.__pydantic_private__
        cached: tuple[dict[str, Any], str, int, Event] | None = (
            private.get("_event") if private is not None else None
        )
        if (
            cached is not None
            and cached[0] is self.data
            and cached[1] == self.event_type
            and cached[2] == self.event_version
        ):
            return cached[3]
        cls = event_class(self.event_type)
        data, version = self.data, self.event_version
        while version < cls.VERSION:
            data = _UPCASTERS[(self.event_type, version)](data)
            version += 1
        event = cls.model_validate(data)
        if private is not None:
            private["_event"] = (self.data, self.event_type, self.event_version, event)
        return event
