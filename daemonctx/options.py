"""Type and value checks for ``DaemonContext`` options.

Each checker takes the value a user gave and returns the value to store,
or raises ``DaemonOptionError`` naming the option and the value. They run at
assignment time (constructor or attribute), so a bad value fails on the line
that set it. Checks that depend on the system (does the directory exist, may
we switch to that uid) run in ``open()``, before any fork: see ``preflight``.
"""

from __future__ import annotations

import os

from .errors import DaemonOptionError
from .signals import check_signal_map

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable


def _path(name: str, value: Any, *, allow_none: bool) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise DaemonOptionError(name, value, "must be a path (str or os.PathLike)")
    path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise DaemonOptionError(name, value, "must be a non-empty str path")
    return path


def _int(name: str, value: Any, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DaemonOptionError(name, value, "must be an int")
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high:#o}" if high is not None else f"at least {low}"
        raise DaemonOptionError(name, value, f"must be {bound}")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise DaemonOptionError(name, value, "must be True or False")
    return value


def _optional_bool(name: str, value: Any) -> bool | None:
    if value is None:
        return None
    return _bool(name, value)


def _id(name: str, value: Any) -> int | None:
    if value is None:
        return None  # resolved at open(): the real id of the process
    return _int(name, value, low=0)


def _files_preserve(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise DaemonOptionError("files_preserve", value, "must be a list or tuple")
    return value  # stored as given, never modified: resolved to fds at open()


def _stream(name: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is not None and not callable(getattr(value, "fileno", None)):
            raise DaemonOptionError(name, value, "must be None or a file object with fileno()")
        return value

    return check


def _pidfile(value: Any) -> Any:
    if value is not None and not (hasattr(value, "__enter__") and hasattr(value, "__exit__")):
        raise DaemonOptionError("pidfile", value, "must be a context manager (a PIDLockFile)")
    return value


def _ready_timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise DaemonOptionError("ready_timeout", value, "must be None or a number of seconds > 0")
    return float(value)


CHECKERS: dict[str, Callable[[Any], Any]] = {
    "chroot_directory": lambda v: _path("chroot_directory", v, allow_none=True),
    "working_directory": lambda v: _path("working_directory", v, allow_none=False),
    "umask": lambda v: _int("umask", v, low=0, high=0o777),
    "uid": lambda v: _id("uid", v),
    "gid": lambda v: _id("gid", v),
    "initgroups": lambda v: _bool("initgroups", v),
    "prevent_core": lambda v: _bool("prevent_core", v),
    "detach_process": lambda v: _optional_bool("detach_process", v),
    "files_preserve": _files_preserve,
    "pidfile": _pidfile,
    "stdin": _stream("stdin"),
    "stdout": _stream("stdout"),
    "stderr": _stream("stderr"),
    "signal_map": check_signal_map,
    "ready_on_open": lambda v: _bool("ready_on_open", v),
    "ready_timeout": _ready_timeout,
}
