"""The carrier statuses in the dialer's SQL are the vocabulary's (calls_events): predicates
built from it read as the partial indexes' (so those stay usable), and the rest of the SQL
takes them as parameters."""

from __future__ import annotations

import re

import pytest
from calls_platform.db import Pool
from dialer import campaign_store, carrier_news, statuses
from dialer.carrier_cancel import NOT_ANSWERED
from dialer.statuses import KNOWN, TERMINAL, advances


async def index_statuses(pool: Pool, index: str) -> set[str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT pg_get_indexdef(%s::regclass) AS d", (f"dialer.{index}",))
        row = await cur.fetchone()
    assert row is not None
    # the list in the index's `carrier_status … ANY/ALL (ARRAY[…])`
    (listed,) = re.findall(r"carrier_status\)? [<>=]+ (?:ANY|ALL) \(ARRAY\[([^]]*)\]", row["d"])
    return set(re.findall(r"'([a-z-]+)'::text", listed))


@pytest.mark.integration
@pytest.mark.parametrize(
    ("index", "expected"),
    [
        ("dials_in_flight", TERMINAL),
        ("dials_unfinished", TERMINAL),
        ("dials_cancel_candidates", NOT_ANSWERED),
    ],
)
async def test_partial_indexes_name_the_statuses_the_queries_are_built_from(
    pool: Pool, index: str, expected: frozenset[str]
) -> None:
    assert await index_statuses(pool, index) == expected


def test_the_in_flight_predicate_names_every_terminal_status() -> None:
    assert set(re.findall(r"'([a-z-]+)'", campaign_store.IN_FLIGHT)) - {"dialing", "initiated"} == (
        TERMINAL
    )


def test_sql_list_refuses_what_is_not_a_carrier_status() -> None:
    assert statuses.sql_list(["ringing", "queued"]) == "('queued', 'ringing')"
    with pytest.raises(ValueError, match="not carrier statuses"):
        statuses.sql_list(["queued'); DROP TABLE x; --"])


@pytest.mark.parametrize("reported", sorted(KNOWN))
def test_news_after_is_advances(reported: str) -> None:
    after = set(carrier_news.news_after(reported))
    assert after == {known for known in KNOWN if advances(known, reported)}
    assert not after & TERMINAL
