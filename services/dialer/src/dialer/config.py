"""The dialer's settings, read from the environment once, in main()."""

from __future__ import annotations

import os
from dataclasses import dataclass

from calls_platform.settings import BrokerSettings, ConfigError, broker_env

from . import lost_recordings
from .twilio_carrier import TwilioSettings


@dataclass(frozen=True)
class Settings(BrokerSettings):
    host: str
    port: int
    calls_per_second: float
    max_in_flight: int
    max_attempts: int
    ambiguous_safe_delay_seconds: float
    twilio: TwilioSettings
    stale_after_seconds: float = 120.0
    in_progress_check_seconds: float = 300.0
    # a call the carrier keeps queued this long is canceled there (Twilio keeps one 24 h)
    carrier_queue_limit_seconds: float = 600.0
    # a recorded call that ended `completed` with no recording callback this long after has
    # its recordings listed at the carrier (Twilio posts it seconds to minutes after the call)
    recording_grace_seconds: float = lost_recordings.RECORDING_GRACE_SECONDS
    # how often every replica samples the due dials per organization (dialer.backlog)
    backlog_sample_seconds: float = 15.0
    # a CallRequested this old with no dial row is taken in from the event store (its message
    # never reached the dialer's queue)
    intake_grace_seconds: float = 60.0

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        gateway_port = env.get("GATEWAY_PORT", "8080")
        account_sid, auth_token = env.get("TWILIO_ACCOUNT_SID"), env.get("TWILIO_AUTH_TOKEN")
        if not account_sid or not auth_token:
            raise ConfigError("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set")
        cps = float(env.get("DIALER_CPS", "1"))
        if cps <= 0:
            raise ConfigError("DIALER_CPS must be positive")
        return cls(
            **broker_env(),
            host=env.get("DIALER_HOST", "127.0.0.1"),
            port=int(env.get("DIALER_PORT", "8082")),
            calls_per_second=cps,
            max_in_flight=int(env.get("DIALER_MAX_IN_FLIGHT", "50")),
            max_attempts=int(env.get("DIALER_MAX_ATTEMPTS", "8")),
            ambiguous_safe_delay_seconds=float(env.get("DIALER_AMBIGUOUS_SAFE_DELAY", "30")),
            twilio=TwilioSettings(
                account_sid=account_sid,
                auth_token=auth_token,
                api_url=env.get("TWILIO_API_URL") or None,
                public_base_url=env.get(
                    "PUBLIC_BASE_URL", f"http://127.0.0.1:{gateway_port}"
                ).rstrip("/"),
                agent_stream_url=env.get("AGENT_STREAM_URL", "wss://agent-runtime.invalid/stream"),
                machine_detection=env.get("DIALER_MACHINE_DETECTION", "Enable") or None,
                timeout_seconds=float(env.get("TWILIO_TIMEOUT_SECONDS", "10")),
            ),
            stale_after_seconds=float(env.get("DIALER_STALE_AFTER_SECONDS", "120")),
            in_progress_check_seconds=float(env.get("DIALER_IN_PROGRESS_CHECK_SECONDS", "300")),
            carrier_queue_limit_seconds=float(env.get("DIALER_CARRIER_QUEUE_LIMIT_SECONDS", "600")),
            recording_grace_seconds=float(
                env.get("DIALER_RECORDING_GRACE_SECONDS", cls.recording_grace_seconds)
            ),
            backlog_sample_seconds=float(env.get("DIALER_BACKLOG_SAMPLE_SECONDS", "15")),
            intake_grace_seconds=float(env.get("DIALER_INTAKE_GRACE_SECONDS", "60")),
        )
