"""Ids of call streams the gateway derives (the gateway owns no call state of its own)."""

from __future__ import annotations

import uuid
from typing import Final

_INBOUND: Final = uuid.UUID("5b0c6a2e-7a51-4f0e-9a43-2f4f0c2b6f11")


def inbound_call_id(call_sid: str) -> uuid.UUID:
    """An inbound call's id, derived from the carrier's SID so every webhook for it agrees."""
    return uuid.uuid5(_INBOUND, call_sid)
