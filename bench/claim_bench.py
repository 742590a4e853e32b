"""What one claim (the dialer's choice of the next call to place) costs with a backlog of
queued calls in the dials table.

    make bench-claim
    uv run python bench/claim_bench.py --pending 100000 --finished 200000

A database of its own, the dialer's schema, `--pending` dials taken in as the dialer takes
them in (`dial_queue.enqueue_many`), a third single calls and the rest spread over `--batches`
batches, beside `--finished` dials of an earlier batch that were placed and ended (a table
with history: its size is what PostgreSQL prices the claim by). Three backlogs:

- *distinct numbers*: every queued call is to another number;
- *one busy number, batches behind it*: the single calls are all to one number, which has a
  call in flight (a client placing calls in a loop to its own test phone);
- *one busy number, single calls only*: the same with no batches (every queued call is to
  the busy number).

Each claim runs in a transaction that is rolled back, so every one sees the same backlog; the
figures are the median and p95 of `--claims` claims.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from calls_events import CallRequested, Envelope, call_stream
from calls_platform.db import open_pool, session_options
from dialer import claims, dial_queue
from dialer.__main__ import migrate
from harness import PG_BASE, bench_parser, drop_database, machine, prepare_database, write_results

ORG = "org_claim"
BUSY = "+14155550100"


def request(n: int, *, batch: str | None, number: str) -> tuple[Envelope, CallRequested]:
    event = CallRequested(
        call_id=uuid.uuid4(),
        to_number=number,
        from_number="+14155550199",
        batch_id=batch,
        batch_index=n if batch else None,
        requested_by="bench",
    )
    envelope = Envelope.wrap(event, stream_id=call_stream(event.call_id), organization_id=ORG)
    return envelope.model_copy(update={"position": n + 1, "stream_version": 1}), event


async def backlog(url: str, pending: int, batches: int, *, busy: bool, finished: int) -> None:
    """`pending` queued dials: a third single calls, the rest in `batches` batches; and
    `finished` dials of an earlier batch, placed and ended (the table's history)."""
    pool = await open_pool(url, name="bench-claim", max_size=2)
    done_batch = f"batch-{uuid.uuid4().hex}"
    history = [
        request(pending + n, batch=done_batch, number=f"+1212{n:07d}") for n in range(finished)
    ]
    singles = pending // 3 if batches else pending
    rows = [
        request(n, batch=None, number=BUSY if busy else f"+1415{n:07d}") for n in range(singles)
    ]
    per_batch = (pending - singles) // batches if batches else 0
    for b in range(batches):
        batch = f"batch-{uuid.uuid4().hex}"
        rows += [
            request(singles + b * per_batch + i, batch=batch, number=f"+1646{b:02d}{i:05d}")
            for i in range(per_batch)
        ]
    async with pool.connection() as conn:
        for start in range(0, len(history), 5000):
            await dial_queue.enqueue_many(conn, history[start : start + 5000])
        await conn.execute(
            "UPDATE dialer.dials SET state = 'initiated', carrier_status = 'completed',"
            " finished_at = now() WHERE batch_id = %s",
            (done_batch,),
        )
        for start in range(0, len(rows), 5000):
            await dial_queue.enqueue_many(conn, rows[start : start + 5000])
        if busy:  # the busy number's first call is placed and ringing
            await conn.execute(
                "UPDATE dialer.dials SET state = 'dialing' WHERE call_id = %s",
                (rows[0][1].call_id,),
            )
        await conn.execute("ANALYZE dialer.dials")
    await pool.close()


async def time_claims(url: str, claims_n: int) -> dict[str, Any]:
    """Claims in a session set as the dialer's are (`claims.SESSION`)."""
    took: list[float] = []
    holds = claimed = 0
    async with await psycopg.AsyncConnection.connect(
        url, row_factory=psycopg.rows.dict_row, options=session_options(claims.SESSION)
    ) as conn:
        for _ in range(claims_n):
            t0 = time.perf_counter()
            async with conn.transaction(force_rollback=True):
                dial = await claims.claim_next(conn, datetime.now(UTC))
                took.append((time.perf_counter() - t0) * 1000)
                cur = await conn.execute(
                    "SELECT count(*) AS n FROM dialer.dials WHERE not_before > now()"
                )
                holds = max(holds, (await cur.fetchone() or {"n": 0})["n"])
            claimed += dial is not None
    ordered = sorted(took)
    return {
        "claims": claims_n,
        "p50_ms": round(statistics.median(took), 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        "claims_that_found_a_call": claimed,
        "dials_put_off_in_one_claim": holds,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": machine(),
        "pending": args.pending,
        "finished": args.finished,
        "session": claims.SESSION,
    }
    cases = [
        ("distinct numbers", False, args.batches),
        ("one busy number, batches behind it", True, args.batches),
        ("one busy number, single calls only", True, 0),
    ]
    for label, busy, batches in cases:
        url = PG_BASE + "calls_bench_claim"
        prepare_database(url, keep=False)
        try:
            await migrate(url)
            await backlog(url, args.pending, batches, busy=busy, finished=args.finished)
            results[label] = await time_claims(url, args.claims)
            print(f"{label}: {results[label]}", flush=True)
        finally:
            drop_database(url)
    return results


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--finished", type=int, default=200_000, help="dials already ended")
    parser.add_argument("--claims", type=int, default=50)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print(f"results: {write_results('claim', results, args.out)}")


if __name__ == "__main__":
    main()
