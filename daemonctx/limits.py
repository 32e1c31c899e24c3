"""Resource limits and the scheduling priority, by the names systemd and ``ulimit``
use (``nofile``, ``core``): the names, ``start --limit NAME=VALUE``'s parsing, and
setting them on this process, to be inherited across fork, exec and a change of
user. The supervisor's ``limits`` and ``nice`` keys take the same names and values.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "LIMIT_NAMES",
    "UNLIMITED",
    "UNLIMITED_WORDS",
    "LimitError",
    "parse_limit",
    "parse_nice",
    "resource_number",
    "set_limits",
]

#: setrlimit(2)'s RLIMIT_* in lower case, as systemd's Limit*= and ulimit name them.
LIMIT_NAMES = (
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
)
#: No limit (resource.RLIM_INFINITY, which is -1 as Python reads it).
UNLIMITED = -1
UNLIMITED_WORDS = ("infinity", "unlimited")


class LimitError(ValueError):
    """A limit or priority that cannot be set here; ``name`` is the limit's, or "nice"."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.name = name
        self.reason = reason


def resource_number(name: str) -> int | None:
    """``RLIMIT_<NAME>``, or None when this system has no such limit."""
    import resource

    number = getattr(resource, f"RLIMIT_{name.upper()}", None)
    return number if isinstance(number, int) else None


def parse_limit(text: str) -> tuple[str, tuple[int, int]]:
    """``NAME=VALUE`` (``start --limit``): VALUE is a number, ``infinity``, or
    ``SOFT:HARD`` as prlimit(1) writes it; a single value is both. Raises
    ``ValueError`` with the reason."""
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise ValueError(f"expected NAME=VALUE such as nofile=65536, got {text!r}")
    if name not in LIMIT_NAMES:
        import difflib  # on a mistake only

        close = difflib.get_close_matches(name, LIMIT_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown limit {name!r}{hint}; one of {', '.join(LIMIT_NAMES)}")
    parts = value.split(":")
    if len(parts) > 2:
        raise ValueError(f"{name}: expected a number, infinity, or SOFT:HARD, got {value!r}")
    soft = _value(name, parts[0])
    hard = _value(name, parts[1]) if len(parts) == 2 else soft
    if hard != UNLIMITED and (soft == UNLIMITED or soft > hard):
        raise ValueError(f"{name}: the soft limit is above the hard one, got {value!r}")
    return name, (soft, hard)


def _value(name: str, text: str) -> int:
    if text in UNLIMITED_WORDS:
        return UNLIMITED
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{name}: expected a number, infinity, or SOFT:HARD, got {text!r}")
    return int(text)


def parse_nice(text: str) -> int:
    """A niceness from -20 (first) to 19 (last), as nice(1) and systemd's Nice= give it."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not (digits.isascii() and digits.isdigit()) or not -20 <= int(text) <= 19:
        raise ValueError(f"expected an integer from -20 to 19, got {text!r}")
    return int(text)


def set_limits(limits: Mapping[str, tuple[int, int]], nice: int | None = None) -> None:
    """Set ``limits`` ({name: (soft, hard)}) and the niceness on this process; its
    children inherit them, across exec and a change of user (so root can give a
    program that runs as nobody more than nobody may take). Raises ``LimitError``
    saying why one cannot be set: a hard limit above ours without CAP_SYS_RESOURCE,
    ``nofile`` above the kernel's ``fs.nr_open``, a priority above ours without
    CAP_SYS_NICE."""
    import resource

    for name, (soft, hard) in limits.items():
        number = resource_number(name)
        if number is None:
            raise LimitError(name, "no such limit on this system")
        infinity = resource.RLIM_INFINITY
        wanted = (infinity if soft < 0 else soft, infinity if hard < 0 else hard)
        ours = resource.getrlimit(number)[1]
        try:
            resource.setrlimit(number, wanted)
        except (ValueError, OSError):  # EPERM comes as ValueError
            raise LimitError(name, _why_not(name, hard, ours)) from None
    if nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError as exc:
            now = os.getpriority(os.PRIO_PROCESS, 0)
            reason = f"cannot set it: {exc.strerror}"
            if isinstance(exc, PermissionError):
                reason = f"below {now}, ours, which needs CAP_SYS_NICE"
            raise LimitError("nice", reason) from None


def _why_not(name: str, hard: int, ours: int) -> str:
    import resource

    if name == "nofile":
        try:
            with open("/proc/sys/fs/nr_open", "rb") as nr_open:
                most = int(nr_open.read())
        except (OSError, ValueError):
            most = None
        if most is not None and (hard == UNLIMITED or hard > most):
            return f"at most {most} here (fs.nr_open)"
    if ours != resource.RLIM_INFINITY and (hard == UNLIMITED or hard > ours):
        return f"above our hard limit ({ours}), which needs CAP_SYS_RESOURCE"
    return "refused by the kernel"
