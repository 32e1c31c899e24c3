"""The signal map: defaults, validation and installation.

A value in the map may be a callable ``handler(signum, frame)``, ``None``
(ignore the signal), ``signal.SIG_IGN``/``signal.SIG_DFL``, or a string
naming a method of the ``DaemonContext`` (``"terminate"``).
"""

from __future__ import annotations

import signal

from .errors import DaemonOptionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Callable, Union

    Handler = Union[Callable[[int, Any], Any], int, signal.Handlers, None]
    SignalMap = dict[int, Any]

# Signals a process can never catch or ignore.
_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}


_VALID: set[int] = set()


def _valid_signals() -> set[int]:
    """``signal.valid_signals()`` as ints, computed once: each call builds ~60 enums."""
    if not _VALID:
        _VALID.update(int(number) for number in signal.valid_signals())
    return _VALID


def default_signal_map() -> SignalMap:
    """Ignore terminal job-control signals; SIGTERM stops the daemon cleanly."""
    return {
        signal.SIGTSTP: None,
        signal.SIGTTIN: None,
        signal.SIGTTOU: None,
        signal.SIGTERM: "terminate",
    }


def check_signal_number(key: Any) -> int:
    """Return ``key`` as a signal number, or raise naming it."""
    if isinstance(key, bool) or not isinstance(key, int):
        raise DaemonOptionError("signal_map", key, "keys must be signal numbers (signal.SIGHUP)")
    if key not in _valid_signals():
        raise DaemonOptionError("signal_map", key, "unknown signal number")
    if key in _UNCATCHABLE:
        name = signal.Signals(key).name
        raise DaemonOptionError("signal_map", key, f"{name} cannot be caught or ignored")
    return int(key)


def check_signal_map(value: Any) -> SignalMap:
    """Validate a whole map's keys and value types (names are checked at open())."""
    if not callable(getattr(value, "items", None)):
        raise DaemonOptionError("signal_map", value, "must be a dict of signal -> handler")
    checked: SignalMap = {}
    for key, handler in value.items():
        number = check_signal_number(key)
        if not (handler is None or isinstance(handler, (str, int)) or callable(handler)):
            raise DaemonOptionError(
                "signal_map",
                {key: handler},
                "a handler must be a callable, None, SIG_IGN, SIG_DFL or a method name",
            )
        checked[number] = handler
    return checked


def resolve_signal_map(signal_map: Mapping[int, Any], context: object) -> dict[int, Handler]:
    """Turn map values into what ``signal.signal`` takes; method names are looked
    up on ``context``. Raises ``DaemonOptionError`` for a name it lacks."""
    resolved: dict[int, Handler] = {}
    for number, handler in check_signal_map(signal_map).items():
        if handler is None:
            handler = signal.SIG_IGN
        elif isinstance(handler, str):
            method = getattr(context, handler, None)
            if not callable(method):
                raise DaemonOptionError(
                    "signal_map", {number: handler}, f"the context has no method {handler!r}"
                )
            handler = method
        elif isinstance(handler, int) and handler not in (signal.SIG_IGN, signal.SIG_DFL):
            raise DaemonOptionError(
                "signal_map", {number: handler}, "an int handler must be SIG_IGN or SIG_DFL"
            )
        resolved[number] = handler
    return resolved


def install(handlers: Mapping[int, Handler]) -> None:
    """Set each signal's disposition."""
    for number, handler in handlers.items():
        signal.signal(number, handler)
