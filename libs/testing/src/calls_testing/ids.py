"""Ids and numbers no other test uses (tests sharing a database isolate by them)."""

from __future__ import annotations

import uuid


def new_org_id(prefix: str = "org") -> str:
    """A fresh organization id, e.g. `org_3f2a9c1b7d4e`."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def unique_number(prefix: str = "+1415") -> str:
    """A valid E.164 number no other test uses."""
    return prefix + str(uuid.uuid4().int)[:7]


def new_call_sid() -> str:
    """A carrier call SID of Twilio's shape (CA + 32 hex digits)."""
    return "CA" + uuid.uuid4().hex


def new_recording_sid() -> str:
    """A carrier recording SID of Twilio's shape (RE + 32 hex digits)."""
    return "RE" + uuid.uuid4().hex
