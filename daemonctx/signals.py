"""Signal names as users type them: one small function, shared by the command
line, the supervisor's configuration and the control protocol. It uses signal's
C half: the enums of ``signal`` cost ~0.1 ms a call in ``valid_signals()``, and a
configuration with 1,000 programs parses 1,000 stop signals."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]

__all__ = ["parse_signal"]

_VALID: frozenset[int] = frozenset()


def _valid() -> frozenset[int]:
    global _VALID
    if not _VALID:
        _VALID = frozenset(number for number in _signal.valid_signals() if number > 0)
    return _VALID


def parse_signal(value: str | int) -> int:
    """A signal from a number or a name with or without "SIG" ("TERM", "sigterm", "15").

    Raises ValueError for an unknown signal or 0.
    """
    if isinstance(value, int) or value.strip().isdigit():
        number = int(value)
        if number in _valid():
            return number
        raise ValueError(f"unknown signal number {value}")
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    # _signal also holds SIG_DFL, SIG_IGN, SIG_BLOCK...: only a valid signal's name counts
    found = getattr(_signal, name, None) if name.isidentifier() and "_" not in name else None
    if not isinstance(found, int) or found not in _valid():
        raise ValueError(f"unknown signal {value!r}")
    return found
