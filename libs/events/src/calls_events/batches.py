"""Events of a batch campaign."""

from __future__ import annotations

import uuid

from pydantic import Field

from ._base import Event
from .calls import E164


class BatchRequested(Event):
    """A batch was accepted; one CallRequested per unique number follows in the same commit."""

    TYPE = "BatchRequested"

    batch_id: str
    total: int = Field(ge=1)
    from_number: str = Field(pattern=E164)
    agent_id: uuid.UUID | None = None
    duplicates_dropped: int = Field(default=0, ge=0)
    requested_by: str


class BatchCancelRequested(Event):
    """A client asked to stop the calls of a batch that have not been dialed yet."""

    TYPE = "BatchCancelRequested"

    batch_id: str
    requested_by: str
