"""Reading a service's /metrics in tests: the samples, those of one series, and a value."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

Samples = list[Sample]


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    """Every sample `url`/metrics shows (it must answer 200)."""
    async with http.get(f"{url}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def series(samples: Samples, name: str, **labels: str) -> Samples:
    return [
        s
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` with those labels; there must be at least one."""
    found = series(samples, name, **labels)
    assert found, f"no {name}{labels or ''} in /metrics"
    return sum(s.value for s in found)


async def metric(http: aiohttp.ClientSession, url: str, name: str, **labels: str) -> float:
    """One metric's value as `url`/metrics shows it now."""
    return value(await scrape(http, url), name, **labels)
