"""Twilio-compatible carrier simulator: a local stand-in for the Twilio REST API (2010-04-01).

The package exposes :func:`create_app` (the aiohttp application), :class:`SimConfig` and
:class:`SimulatorClient` (the typed client of its ``/_sim`` control API, for tests).
"""

from carrier_sim.app import create_app
from carrier_sim.client import SimulatorClient
from carrier_sim.config import SimConfig

__all__ = ["SimConfig", "SimulatorClient", "create_app"]
