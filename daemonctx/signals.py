"""Signal names as users type them: one small function, shared by the command
line, the supervisor's configuration and the control protocol. It uses signal's
C half: the enums of ``signal`` cost ~0.1 ms a call in ``valid_signals()``, and a
configuration with 1,000 programs parses 1,000 stop signals."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]

__all__ = ["parse_retry", "parse_signal", "signal_name"]

_VALID: frozenset[int] = frozenset()


def _valid() -> frozenset[int]:
    global _VALID
    if not _VALID:
        _VALID = frozenset(number for number in _signal.valid_signals() if number > 0)
    return _VALID


def parse_signal(value: str | int) -> int:
    """A signal from a number or a name with or without "SIG" ("TERM", "sigterm", "15"),
    a real-time one as kill(1) and systemd write it ("RTMIN+2", "SIGRTMAX-1").

    Raises ValueError for an unknown signal or 0.
    """
    if isinstance(value, int) or (value.strip().isdigit() and value.isascii()):
        if (
            not isinstance(value, int) and len(value.strip()) > 9
        ):  # no signal; maybe past int()'s digits
            shown = value.strip()
            raise ValueError(f"unknown signal number {shown[:12]}... ({len(shown)} digits)")
        number = int(value)
        if number in _valid():
            return number
        raise ValueError(f"unknown signal number {value}")
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith(("SIGRTMIN+", "SIGRTMAX-")) and hasattr(_signal, "SIGRTMIN"):
        offset = name[9:]
        if offset.isdigit() and offset.isascii():
            low, high = _signal.SIGRTMIN, _signal.SIGRTMAX
            number = low + int(offset) if name[6] == "I" else high - int(offset)
            if low <= number <= high and number in _valid():
                return int(number)
        raise ValueError(f"unknown signal {value!r}")
    # _signal also holds SIG_DFL, SIG_IGN, SIG_BLOCK...: only a valid signal's name counts
    found = getattr(_signal, name, None) if name.isidentifier() and "_" not in name else None
    if not isinstance(found, int) or found not in _valid():
        raise ValueError(f"unknown signal {value!r}")
    return found


def parse_retry(text: str, signum: int, kill_wait: float) -> tuple[tuple[int, float], ...]:
    """start-stop-daemon's ``--retry``: ((signal, seconds to wait for the exit), ...).

    A number alone is ``signum``/N/KILL/N. A schedule alternates signals and waits,
    from a signal: ``TERM/30/KILL/5``; a signal is a name (``TERM``, ``-TERM``,
    ``SIGTERM``) or a number after a dash (``-15``: a bare number is a wait). The
    last signal's wait, when the schedule ends with one, is ``kill_wait``.
    ``forever`` is refused: a stop that never gives up is ``TERM/inf``. Raises
    ValueError naming the item that is wrong.
    """
    text = text.strip()
    if _is_wait(text):
        wait = _wait(text, text)
        return ((signum, wait), (_signal.SIGKILL, wait))
    items = text.split("/")
    if len(items) < 2 or "" in items:
        raise ValueError(
            f"{text!r}: expected seconds, or a schedule of signals and seconds such as"
            " TERM/30/KILL/5"
        )
    steps: list[tuple[int, float]] = []
    for index, item in enumerate(items):
        if index % 2 == 1:
            if not _is_wait(item):
                raise ValueError(f"{text!r}: expected seconds after a signal, got {item!r}")
            steps[-1] = (steps[-1][0], _wait(text, item))
            continue
        if item == "forever":
            raise ValueError(f"{text!r}: 'forever' is not supported; wait forever with inf")
        if _is_wait(item):
            raise ValueError(f"{text!r}: expected a signal, got {item!r} (a number is -{item})")
        name = item[1:] if item.startswith("-") else item
        try:
            steps.append((parse_signal(name), kill_wait))
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from None
    return tuple(steps)


def _is_wait(item: str) -> bool:
    return (item.isascii() and item.replace(".", "", 1).isdigit()) or item in ("inf", "infinity")


def _wait(text: str, item: str) -> float:
    seconds = float(item)
    if not seconds > 0:
        raise ValueError(f"{text!r}: a wait must be more than 0 seconds, got {item!r}")
    return seconds


def signal_name(signum: int) -> str:
    """``SIGHUP`` for 1; ``SIGRTMIN+2`` or ``SIGRTMAX-1`` for a real-time one (as
    ``kill -l`` names them, and ``parse_signal`` reads them); ``signal 99`` for a
    number with no name."""
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        low, high = getattr(_signal, "SIGRTMIN", 0), getattr(_signal, "SIGRTMAX", 0)
        if low < signum < high:  # the lower half from RTMIN, the upper from RTMAX, as kill -l
            below = signum - low <= (high - low) // 2
            return f"SIGRTMIN+{signum - low}" if below else f"SIGRTMAX-{high - signum}"
        return f"signal {signum}"
