"""Twilio-compatible carrier simulator: a local stand-in for the Twilio REST API (2010-04-01).

The package exposes :func:`create_app` (the aiohttp application) and :class:`SimConfig`.
"""

from carrier_sim.app import create_app
from carrier_sim.config import SimConfig

__all__ = ["SimConfig", "create_app"]
