"""The simulator's public control client: what tests and benchmarks use to look inside a
running simulator and to make it misbehave (the ``/_sim`` API of :mod:`carrier_sim.api`).

    async with aiohttp.ClientSession() as http:
        sim = SimulatorClient(http, "http://127.0.0.1:8090")
        await sim.set_faults(drop_callbacks=True)
        calls = await sim.calls(to_number="+14155550123")
"""

from __future__ import annotations

import base64
from typing import Any, TypedDict

import aiohttp

from carrier_sim.config import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN


class CannedResponseJSON(TypedDict, total=False):
    """One queued answer to a future create request (``create_responses``)."""

    status: int
    code: int
    message: str
    timeout_seconds: float
    call_created: bool


class FaultsJSON(TypedDict, total=False):
    """The simulator's faults; a POST changes only the keys it gives."""

    create_responses: list[CannedResponseJSON]
    drop_callbacks: bool
    drop_recording_callbacks: bool
    duplicate_callbacks: bool
    reorder_callbacks: bool
    create_delay_seconds: float


# One call the simulator was asked to create, as ``GET /_sim/calls`` shows it ("from" is a
# keyword, hence the functional form).
SimCall = TypedDict(
    "SimCall",
    {
        "sid": str,
        "to": str,
        "from": str,
        "status": str,
        "created_at": float,
        # when the call reached a terminal status (None while it is live)
        "end_time": float | None,
        "status_callback": str | None,
        "answered_by": str | None,
        "recording_sid": str | None,
        "params": dict[str, Any],
    },
)


class SimState(TypedDict):
    calls: list[SimCall]
    create_requests: int


def basic_auth(login: str, password: str) -> dict[str, str]:
    """An Authorization header (aiohttp 3.14 deprecates ``BasicAuth`` objects)."""
    token = base64.b64encode(f"{login}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class SimulatorClient:
    """Typed access to a running simulator's ``/_sim`` control API (every call must answer
    200, or it raises ``AssertionError`` with the simulator's answer)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
    ) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.account_sid = account_sid
        self.auth_token = auth_token

    @property
    def account_uri(self) -> str:
        """The account's Twilio REST base (``…/2010-04-01/Accounts/AC…``)."""
        return f"{self.url}/2010-04-01/Accounts/{self.account_sid}"

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header of the account."""
        return basic_auth(self.account_sid, self.auth_token)

    async def control(self, method: str, path: str, body: object = None) -> Any:
        """Call the control API at `path` and return its JSON."""
        async with self.session.request(method, f"{self.url}{path}", json=body) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def state(self) -> SimState:
        state: SimState = await self.control("GET", "/_sim/calls")
        return state

    async def calls(self, to_number: str | None = None) -> list[SimCall]:
        """Every call created (those to `to_number` only, if given), in creation order."""
        calls = (await self.state())["calls"]
        return [c for c in calls if to_number is None or c["to"] == to_number]

    async def call(self, sid: str) -> SimCall:
        """The one call of SID `sid` (it must exist)."""
        [call] = [c for c in (await self.state())["calls"] if c["sid"] == sid]
        return call

    async def create_requests(self) -> int:
        """How many create requests the simulator was sent (rejected ones included)."""
        return int((await self.state())["create_requests"])

    async def faults(self) -> FaultsJSON:
        faults: FaultsJSON = await self.control("GET", "/_sim/faults")
        return faults

    async def set_faults(self, **faults: Any) -> FaultsJSON:
        """Change the faults named (keys of :class:`FaultsJSON`); returns them all."""
        changed: FaultsJSON = await self.control("POST", "/_sim/faults", faults)
        return changed

    async def fault_next_creates(self, *responses: CannedResponseJSON) -> FaultsJSON:
        """The next create requests get `responses`, one each, in order."""
        return await self.set_faults(create_responses=list(responses))

    async def reset(self) -> None:
        """Forget every call and fault (play-outs in flight are cancelled)."""
        await self.control("POST", "/_sim/reset")
