"""Fairness: the pure turn order (`dialer.fairness`) with hypothesis (no lane starves,
organizations alternate, then lanes within an organization), and the SQL claim held to the
same order on the same generated inputs against PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from calls_platform.db import Pool
from dialer import claims, fairness
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# served times are in the past of every test run: what the claims serve now comes after them
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PendingDial:
    organization_id: str
    lane: str
    batch_id: str | None
    requested_position: int
    batch_index: int | None = None
    call_id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(frozen=True)
class Work:
    dials: list[PendingDial]
    served: dict[str, datetime]

    def turns(self) -> list[PendingDial]:
        """Every dial, in the order the pure rule claims them (each claim is a turn)."""
        pending, served, order = list(self.dials), dict(self.served), []
        tick = max([*served.values(), EPOCH]) + timedelta(seconds=1)
        while (head := fairness.next_head(fairness.heads_of(pending), served)) is not None:
            order.append(head)
            pending.remove(head)
            served = fairness.serve(served, head, tick)
            tick += timedelta(seconds=1)
        return order


ORGS = ("org_a", "org_b", "org_c", "org_d")


@st.composite
def work(draw: st.DrawFn, *, max_dials: int = 14) -> Work:
    """Dials of up to four organizations, each a single call or of one of its batches;
    requested positions unique (they are event store positions); some organizations and
    lanes served before, possibly at the same moment (never served: no row)."""
    placed = draw(
        st.lists(
            st.tuples(st.sampled_from(ORGS), st.sampled_from([None, "b1", "b2", "b3"])),
            min_size=1,
            max_size=max_dials,
        )
    )
    positions = draw(
        st.lists(
            st.integers(min_value=1, max_value=10_000),
            min_size=len(placed),
            max_size=len(placed),
            unique=True,
        )
    )
    # a batch whose calls travel in its BatchRequested: they share its position, in
    # batch_index order (the others' calls each have a position of their own)
    carried = draw(st.sets(st.sampled_from(["b1", "b2", "b3"])))
    carried_at: dict[str, int] = {}
    dials: list[PendingDial] = []
    for (org, batch), position in zip(placed, positions, strict=True):
        batch_id = f"{org}-{batch}" if batch else None
        lane = fairness.lane_of(org, batch_id)
        if batch_id and batch in carried:
            at = carried_at.setdefault(batch_id, position)
            index = len([d for d in dials if d.batch_id == batch_id])
            dials.append(PendingDial(org, lane, batch_id, at, index))
        else:
            dials.append(PendingDial(org, lane, batch_id, position))
    keys = sorted(
        {fairness.org_key(d.organization_id) for d in dials}
        | {fairness.lane_key(d.lane) for d in dials}
    )
    served = {}
    for key in keys:
        # few distinct moments, so that ties are common
        minutes = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=5)))
        if minutes is not None:
            served[key] = EPOCH + timedelta(minutes=minutes)
    return Work(dials, served)


def active_lanes(pending: Sequence[PendingDial]) -> dict[str, set[str]]:
    """The lanes with pending work, by organization."""
    lanes: dict[str, set[str]] = {}
    for dial in pending:
        lanes.setdefault(dial.organization_id, set()).add(dial.lane)
    return lanes


def pending_before(w: Work, turns: list[PendingDial], step: int) -> list[PendingDial]:
    return [d for d in w.dials if d not in turns[:step]]


@given(work())
def test_every_dial_is_claimed_once_each_lane_in_requested_order(w: Work) -> None:
    turns = w.turns()
    assert sorted(turns, key=fairness.request_order) == sorted(w.dials, key=fairness.request_order)
    for lane in {d.lane for d in w.dials}:
        order = [fairness.request_order(d) for d in turns if d.lane == lane]
        assert order == sorted(order)


@given(work())
def test_no_lane_starves(w: Work) -> None:
    """A lane with pending work is served within (organizations with work) x (lanes of its
    organization with work) claims: every organization has a turn in each round of the
    organizations, and its turns go round its lanes."""
    turns = w.turns()
    for step in range(len(turns)):
        lanes = active_lanes(pending_before(w, turns, step))
        for org, org_lanes in lanes.items():
            bound = len(lanes) * len(org_lanes)
            for lane in org_lanes:
                served_at = next(i for i in range(step, len(turns)) if turns[i].lane == lane)
                assert served_at - step < bound, (org, lane, step, bound)


@given(work())
def test_organizations_alternate(w: Work) -> None:
    """Between two turns of an organization, every other organization that had work all
    along had one: never twice in a row while another waits."""
    turns = w.turns()
    for i, turn in enumerate(turns):
        later = [
            j for j in range(i + 1, len(turns)) if turns[j].organization_id == turn.organization_id
        ]
        if not later:
            continue
        j = later[0]
        waiting = set(active_lanes(pending_before(w, turns, j))) - {turn.organization_id}
        between = {t.organization_id for t in turns[i + 1 : j]}
        assert waiting <= between


@given(work())
def test_lanes_of_an_organization_alternate(w: Work) -> None:
    """Between two turns of a lane, every other lane of its organization that had work all
    along had one (a single call never waits behind a whole batch)."""
    turns = w.turns()
    for i, turn in enumerate(turns):
        later = [j for j in range(i + 1, len(turns)) if turns[j].lane == turn.lane]
        if not later:
            continue
        j = later[0]
        waiting = active_lanes(pending_before(w, turns, j)).get(turn.organization_id, set())
        between = {t.lane for t in turns[i + 1 : j]}
        assert waiting - {turn.lane} <= between


def test_never_served_comes_first_then_least_recently_served() -> None:
    a = PendingDial("org_a", "single:org_a", None, 1)
    b = PendingDial("org_b", "single:org_b", None, 2)
    c = PendingDial("org_c", "single:org_c", None, 3)
    served = {fairness.org_key("org_a"): EPOCH, fairness.org_key("org_b"): EPOCH - timedelta(1)}
    assert fairness.in_turn_order([a, b, c], served) == [c, b, a]
    assert fairness.next_head([], served) is None


def test_between_heads_as_recently_served_the_earlier_request_goes_first() -> None:
    later = PendingDial("org_a", "batch:x", "x", 9)
    earlier = PendingDial("org_a", "batch:y", "y", 4)
    assert fairness.next_head([later, earlier], {}) == earlier
    first_of_x = PendingDial("org_a", "batch:x", "x", 7)
    assert fairness.heads_of([later, first_of_x, earlier]) == [first_of_x, earlier]


# --- the SQL claim, on the same inputs --------------------------------------------------------


async def given_work(pool: Pool, w: Work) -> None:
    """`w` as the dials table and dialer.fairness hold it (nothing else in them)."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("TRUNCATE dialer.dials, dialer.fairness")
        for i, d in enumerate(w.dials):
            await conn.execute(
                "INSERT INTO dialer.dials (call_id, organization_id, lane, batch_id, to_number,"
                " from_number, record, state, requested_position, batch_index,"
                " requested_event_id)"
                " VALUES (%s, %s, %s, %s, %s, '+15017122661', false, 'pending', %s, %s, %s)",
                (
                    d.call_id,
                    d.organization_id,
                    d.lane,
                    d.batch_id,
                    f"+1555010{i:04d}",
                    d.requested_position,
                    d.batch_index,
                    uuid.uuid4(),
                ),
            )
        for key, at in w.served.items():
            await conn.execute(
                "INSERT INTO dialer.fairness (key, last_served) VALUES (%s, %s)", (key, at)
            )


@pytest.mark.integration
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(w=work())
async def test_the_sql_claim_takes_turns_as_the_pure_rule_does(pool: Pool, w: Work) -> None:
    """claims.claim_next, one claim after another until nothing is pending, claims the dials
    in the order fairness gives (its ORDER BY is the pure turn key)."""
    await given_work(pool, w)
    claimed = []
    async with pool.connection() as conn:
        while (dial := await claims.claim_next(conn)) is not None:
            claimed.append(dial.call_id)
    assert claimed == [d.call_id for d in w.turns()]
