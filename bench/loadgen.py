"""A small closed-loop HTTP load generator: C connections, each sending its next request as soon
as the previous one is answered, for a fixed time; prints one JSON object of figures.

Run as its own process (the benchmarks do), so generating load does not share an event loop
with what is measured:

    python bench/loadgen.py --url http://127.0.0.1:19200/calls --method POST \\
        --body '{"to_number": "+1{n}", "from_number": "+14155550100"}' \\
        --header "Authorization: Bearer …" --connections 32 --duration 30

`{n}` in the body becomes a 10-digit request counter (each request a distinct number); with
--urls-file the URLs in the file (one a line) are requested in turn instead of --url.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace, urls: list[str]) -> dict[str, Any]:
    headers = dict(h.split(": ", 1) for h in args.header)
    validator = None
    if args.twilio_auth_token:
        from twilio.request_validator import RequestValidator

        validator = RequestValidator(args.twilio_auth_token)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if args.body is not None:
        headers.setdefault("Content-Type", "application/json")
    counter = itertools.count(1)
    next_url = itertools.cycle(urls)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    started = time.perf_counter()
    measure_from = started + args.warmup
    measure_to = measure_from + args.duration

    async def worker(http: aiohttp.ClientSession) -> None:
        while True:
            sent = time.perf_counter()
            if sent >= measure_to:
                return
            body = None
            url = next(next_url)
            extra: dict[str, str] = {}
            if args.body is not None:
                text = args.body.replace("{n}", f"{next(counter):010d}")
                body = text.encode()
                if validator is not None:  # a Twilio callback: form-encoded and signed
                    params = dict(urllib.parse.parse_qsl(text))
                    extra["X-Twilio-Signature"] = validator.compute_signature(url, params)
            try:
                async with http.request(args.method, url, data=body, headers=extra) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = 0
                errors[type(exc).__name__] += 1
            done = time.perf_counter()
            if sent >= measure_from and done <= measure_to:
                latencies.append((done - sent) * 1000)
                statuses[status] += 1

    connector = aiohttp.TCPConnector(limit=args.connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as http:
        await asyncio.gather(*(worker(http) for _ in range(args.connections)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    return {
        "connections": args.connections,
        "duration_s": args.duration,
        "requests": len(latencies),
        "ok": ok,
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "errors": dict(errors),
        "requests_per_s": round(ok / args.duration, 1),
        "p50_ms": round(percentile(latencies, 50), 2) if latencies else None,
        "p90_ms": round(percentile(latencies, 90), 2) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 2) if latencies else None,
        "max_ms": round(max(latencies), 2) if latencies else None,
        "loadgen_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--url")
    parser.add_argument("--urls-file")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", help="request body; {n} becomes a 10-digit counter")
    parser.add_argument("--header", action="append", default=[], help='"Name: value"')
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument(
        "--twilio-auth-token",
        help="send the body form-encoded, signed as Twilio signs callbacks (X-Twilio-Signature)",
    )
    args = parser.parse_args()
    if not args.url and not args.urls_file:
        parser.error("--url or --urls-file is required")
    urls = Path(args.urls_file).read_text().split() if args.urls_file else [args.url]
    print(json.dumps(asyncio.run(run(args, urls))))


if __name__ == "__main__":
    main()
