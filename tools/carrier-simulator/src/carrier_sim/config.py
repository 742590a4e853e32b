"""Simulator configuration: the frozen :class:`SimConfig` and its construction from env vars.

Nothing is read at import time; :meth:`SimConfig.from_env` is called from ``main()`` only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_ACCOUNT_SID = "ACf00df00df00df00df00df00df00df00d"
DEFAULT_AUTH_TOKEN = "simulator-auth-token"


@dataclass(frozen=True)
class SimConfig:
    """Everything the simulator needs to run.

    ``public_url`` is the simulator's base URL as clients see it (used for ``RecordingUrl``).
    When ``None`` the origin of each create-call request is used instead, which is what tests
    running on an ephemeral port want.
    """

    host: str = "127.0.0.1"
    port: int = 8090
    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: str = DEFAULT_AUTH_TOKEN
    ring_seconds: float = 0.5
    talk_seconds: float = 2.0
    public_url: str | None = None
    long_talk_seconds: float = 60.0
    initiate_delay_seconds: float = 0.02
    ringing_delay_seconds: float = 0.03
    callback_timeout_seconds: float = 10.0
    long_ring_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SimConfig:
        """Build a config from ``SIM_*`` environment variables (``os.environ`` by default)."""
        source: Mapping[str, str] = os.environ if env is None else env
        host = source.get("SIM_HOST", "127.0.0.1")
        port = int(source.get("SIM_PORT", "8090"))
        public_url = source.get("SIM_PUBLIC_URL") or f"http://{host}:{port}"
        return cls(
            host=host,
            port=port,
            account_sid=source.get("SIM_ACCOUNT_SID", DEFAULT_ACCOUNT_SID),
            auth_token=source.get("SIM_AUTH_TOKEN", DEFAULT_AUTH_TOKEN),
            ring_seconds=float(source.get("SIM_RING_SECONDS", "0.5")),
            talk_seconds=float(source.get("SIM_TALK_SECONDS", "2.0")),
            long_ring_seconds=float(source.get("SIM_LONG_RING_SECONDS", "60")),
            public_url=public_url.rstrip("/"),
        )
