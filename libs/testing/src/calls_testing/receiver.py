"""A stand-in for the gateway's webhook endpoints: an HTTP server on a free port that records
every request the carrier (simulator) sends it, and answers with a status of the test's
choosing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from multidict import MultiDict

from calls_testing.serving import base_url, served


@dataclass
class Received:
    """One webhook request as the receiver saw it."""

    path: str
    method: str
    url: str
    params: MultiDict[str]
    signature: str

    def __getitem__(self, key: str) -> str:
        return self.params[key]

    def get(self, key: str) -> str | None:
        return self.params.get(key)


@dataclass
class Receiver:
    """Collects webhooks; ``url`` is its base URL (no trailing slash)."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    status: int = 204

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def for_call(self, call_sid: str, path: str = "/status") -> list[Received]:
        return [r for r in self.requests if r.path == path and r.get("CallSid") == call_sid]

    async def wait_for(
        self, predicate: Callable[[list[Received]], object], within: float = 5.0
    ) -> list[Received]:
        deadline = time.monotonic() + within
        while not predicate(self.requests):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; received: {self.requests}")
            await asyncio.sleep(0.01)
        return self.requests

    async def wait_status(self, call_sid: str, status: str, within: float = 5.0) -> Received:
        await self.wait_for(
            lambda _: any(r["CallStatus"] == status for r in self.for_call(call_sid)), within
        )
        return next(r for r in self.for_call(call_sid) if r["CallStatus"] == status)

    async def wait_call(self, call_sid: str, path: str, within: float = 10.0) -> Received:
        """The first request to `path` about `call_sid`, once it came."""
        await self.wait_for(lambda _: bool(self.for_call(call_sid, path)), within)
        return self.for_call(call_sid, path)[0]


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    """A running `Receiver` (closed on exit)."""
    state = Receiver()

    async def record(request: web.Request) -> web.Response:
        if request.method == "POST":
            form = await request.post()
            params: MultiDict[str] = MultiDict(
                (k, v) for k, v in form.items() if isinstance(v, str)
            )
        else:
            params = MultiDict(request.query)
        state.requests.append(
            Received(
                path=request.path,
                method=request.method,
                url=f"{state.url}{request.raw_path}",
                params=params,
                signature=request.headers.get("X-Twilio-Signature", ""),
            )
        )
        return web.Response(status=state.status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    async with served(app) as server:
        state.url = base_url(server)
        yield state
