"""Clocks a test sets by hand, for the code that takes one (`clock: Callable[[], datetime]`)."""

from __future__ import annotations

from datetime import datetime


class ManualClock:
    """Says `now` until the test moves it (`clock.now = …`)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now
