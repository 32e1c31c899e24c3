"""Types of the values users pass to daemonctx, for annotations and ``mypy --strict``.

daemonctx imports this module only under ``TYPE_CHECKING`` (``typing`` costs
milliseconds on every daemon's start-up); import it freely in your own code.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from types import FrameType
from typing import Any, Callable, Protocol, Union

__all__ = ["FilePreserved", "PathArg", "Pidfile", "SignalHandler", "SupportsFileno"]

PathArg = Union[str, "os.PathLike[str]"]


class SupportsFileno(Protocol):
    """Anything with a file descriptor: a file, a socket, ``sys.stdout``."""

    def fileno(self) -> int: ...


# A pidfile is any context manager (PEP 3143): ours (``daemonctx.pidfile``),
# lockfile's or python-daemon's; entered in the daemon, exited at close().
Pidfile = AbstractContextManager[Any]

# What files_preserve takes: an fd, anything with fileno(), or a logging.Handler
# (its stream's or socket's fd).
FilePreserved = Union[int, SupportsFileno, Any]

# A signal_map value: a handler(signum, frame), None (ignore), signal.SIG_IGN or
# SIG_DFL, or the name of a method of the context ("terminate").
SignalHandler = Union[Callable[[int, Union[FrameType, None]], Any], str, int, None]
