"""Signal names as users type them: one small function, shared by the command
line, the supervisor's configuration and the control protocol (and light: the
supervisor's start-up and ``ctl`` import it)."""

from __future__ import annotations

import signal as _signal

__all__ = ["parse_signal"]


def parse_signal(value: str | int) -> int:
    """A signal from a number or a name with or without "SIG" ("TERM", "sigterm", "15").

    Raises ValueError for an unknown signal or 0.
    """
    if isinstance(value, int) or value.strip().isdigit():
        number = int(value)
        if number in _signal.valid_signals() and number > 0:
            return number
        raise ValueError(f"unknown signal number {value}")
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    member = getattr(_signal.Signals, name, None) if name.isidentifier() else None
    if member is None:
        raise ValueError(f"unknown signal {value!r}")
    return int(member)
