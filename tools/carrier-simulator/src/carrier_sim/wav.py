"""Synthetic recordings: an 8 kHz 16-bit PCM WAV sine tone built with the stdlib ``wave`` module."""

from __future__ import annotations

import io
import math
import sys
import wave
from array import array

SAMPLE_RATE = 8000
_AMPLITUDE = 8000
_TONES_HZ = (440.0, 660.0)  # left/mono channel, right channel


def sine_wav(duration_seconds: float, channels: int = 1) -> bytes:
    """A WAV file of ``duration_seconds`` with a sine tone per channel (1 or 2 channels)."""
    if channels not in (1, 2):
        raise ValueError("channels must be 1 or 2")
    frames = max(0, round(duration_seconds * SAMPLE_RATE))
    steps = [2 * math.pi * hz / SAMPLE_RATE for hz in _TONES_HZ[:channels]]
    samples = array(
        "h",
        (int(_AMPLITUDE * math.sin(step * frame)) for frame in range(frames) for step in steps),
    )
    if sys.byteorder == "big":
        samples.byteswap()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()
