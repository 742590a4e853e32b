"""The order in which pending dials take turns (pure).

Every dial is in a lane: each batch is a lane, and so are an organization's single calls. The
head of a lane is its earliest requested pending dial that is due and whose number has no call
of its organization in flight (`claims` applies that rule in SQL; the generated inputs of the
agreement test have no calls in flight). Turns go round robin:
first among organizations, then among that organization's lanes, each least recently served
first (never served: first of all); between heads as recently served, the earlier request.
A head that was claimed, or put off or ended by its campaign rules, has had its turn: its
organization and its lane are served at that moment (`dialer.fairness`, keys `org_key` and
`lane_key`).

`claims` applies this order in SQL (one query per claim, ORDER BY the same key); a test holds
the two to agreement on generated inputs against PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Protocol, TypeVar


def lane_of(organization_id: str, batch_id: str | None) -> str:
    return f"batch:{batch_id}" if batch_id else f"single:{organization_id}"


def org_key(organization_id: str) -> str:
    """The organization's row in dialer.fairness."""
    return f"org:{organization_id}"


def lane_key(lane: str) -> str:
    """The lane's row in dialer.fairness."""
    return f"lane:{lane}"


class Head(Protocol):
    @property
    def organization_id(self) -> str: ...

    @property
    def lane(self) -> str: ...

    @property
    def requested_position(self) -> int: ...

    @property
    def batch_index(self) -> int | None: ...


H = TypeVar("H", bound=Head)

Served = Mapping[str, datetime]
"""When each organization and lane was last served, by `org_key` / `lane_key`."""

_NEVER = datetime.min  # compared only with another never-served (the flag before it differs)


def request_order(dial: Head) -> tuple[int, bool, int]:
    """A dial's place in request order: its request's position, then its place in its batch
    (a batch's calls travel in one event and share its position); none sorts after any, as
    NULL does in the claim's ascending ORDER BY."""
    return (dial.requested_position, dial.batch_index is None, dial.batch_index or 0)


def turn_key(
    head: Head, served: Served
) -> tuple[bool, datetime, bool, datetime, tuple[int, bool, int]]:
    """Sorts heads in turn order: least recently served organization (never served first:
    the flag), then lane, then the earlier request."""
    org = served.get(org_key(head.organization_id))
    lane = served.get(lane_key(head.lane))
    return (
        org is not None,
        org or _NEVER,
        lane is not None,
        lane or _NEVER,
        request_order(head),
    )


def heads_of(pending: Iterable[H]) -> list[H]:
    """The head of each lane: its earliest requested dial (of those pending and due)."""
    first: dict[str, H] = {}
    for dial in pending:
        head = first.get(dial.lane)
        if head is None or request_order(dial) < request_order(head):
            first[dial.lane] = dial
    return list(first.values())


def in_turn_order(heads: Iterable[H], served: Served) -> list[H]:
    return sorted(heads, key=lambda head: turn_key(head, served))


def next_head(heads: Iterable[H], served: Served) -> H | None:
    """Whose turn it is among the heads that may be dialed now (None: there are none)."""
    return min(heads, key=lambda head: turn_key(head, served), default=None)


def serve(served: Served, head: Head, at: datetime) -> dict[str, datetime]:
    """`served` after `head` had its turn at `at`."""
    return {**served, org_key(head.organization_id): at, lane_key(head.lane): at}
