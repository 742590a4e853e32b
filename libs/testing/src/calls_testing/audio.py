"""What a test asserts about a recording it downloaded."""

from __future__ import annotations

import io
import wave


def assert_wav(body: bytes, *, channels: int = 2, framerate: int = 8000) -> None:
    """`body` is a WAV of `channels` channels at `framerate` Hz holding some audio (the
    simulator records dual-channel 8 kHz, as Twilio does)."""
    with wave.open(io.BytesIO(body)) as audio:
        assert (audio.getnchannels(), audio.getframerate()) == (channels, framerate)
        assert audio.getnframes() > 0
