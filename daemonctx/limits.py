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
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "LIMIT_NAMES",
    "MOST",
    "PRIORITY",
    "UNLIMITED",
    "UNLIMITED_WORDS",
    "LimitError",
    "capable",
    "check",
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
#: The largest finite limit setrlimit(2) takes from Python (a C long long).
MOST = 2**63 - 1


class LimitError(ValueError):
    """A limit or priority that cannot be set here; ``name`` is the limit's, or
    ``PRIORITY`` for the niceness."""

    def __init__(self, name: str, reason: str, privilege: bool = False) -> None:
        super().__init__(reason)
        self.name = name
        self.reason = reason
        self.privilege = privilege  # it takes a capability we lack (LSB 4)


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
    if int(text) > MOST:
        raise ValueError(f"{name}: at most {MOST} (or infinity), got {text}")
    return int(text)


def parse_nice(text: str) -> int:
    """A niceness from -20 (first) to 19 (last), as nice(1) and systemd's Nice= give it."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not (digits.isascii() and digits.isdigit()) or not -20 <= int(text) <= 19:
        raise ValueError(f"expected an integer from -20 to 19, got {text!r}")
    return int(text)


def check(
    limits: Mapping[str, tuple[int, int]],
    nice: int | None = None,
    *,
    whose: str = "our",
    who: str = "we",
) -> None:
    """Raise ``LimitError`` for the first of ``limits`` or ``nice`` that this process
    could not set (``set_limits``), without setting any: a limit this system does not
    have, ``nofile`` above the kernel's ``fs.nr_open``, a hard limit above ours
    without CAP_SYS_RESOURCE, a priority above what we may take without
    CAP_SYS_NICE. ``whose``/``who`` name us in the reasons ("the supervisor's")."""
    import resource

    for name, (_soft, hard) in limits.items():
        number = resource_number(name)
        if number is None:
            raise LimitError(name, "no such limit on this system")
        if name == "nofile":
            most = _nr_open()
            if most is not None and (hard == UNLIMITED or hard > most):
                got = "infinity" if hard == UNLIMITED else hard
                raise LimitError(name, f"at most {most} here (fs.nr_open), got {got}")
        ours = resource.getrlimit(number)[1]
        above = ours != resource.RLIM_INFINITY and (hard == UNLIMITED or hard > ours)
        if above and not capable(CAP_SYS_RESOURCE):
            reason = f"above {whose} hard limit ({ours}), without CAP_SYS_RESOURCE"
            raise LimitError(name, reason, privilege=True)
    if nice is not None and not capable(CAP_SYS_NICE):
        ceiling = resource.getrlimit(resource.RLIMIT_NICE)[0]  # setpriority(2): 20 - it
        floor = -20 if ceiling == resource.RLIM_INFINITY else 20 - ceiling
        floor = min(floor, os.getpriority(os.PRIO_PROCESS, 0))
        if nice < floor:
            reason = f"below {floor}, the most {who} may give, without CAP_SYS_NICE"
            raise LimitError(PRIORITY, reason, privilege=True)


def set_limits(limits: Mapping[str, tuple[int, int]], nice: int | None = None) -> None:
    """Set ``limits`` ({name: (soft, hard)}) and the niceness on this process; its
    children inherit them, across exec and a change of user (so root can give a
    program that runs as nobody more than nobody may take). ``check`` first: here
    a refusal is a ``LimitError`` with the kernel's reason."""
    import resource

    infinity = resource.RLIM_INFINITY
    for name, (soft, hard) in limits.items():
        number = resource_number(name)
        if number is None:
            raise LimitError(name, "no such limit on this system")
        wanted = (infinity if soft < 0 else soft, infinity if hard < 0 else hard)
        try:
            resource.setrlimit(number, wanted)
        except (ValueError, OSError) as exc:  # EPERM comes as ValueError
            raise LimitError(name, f"cannot set it: {exc}") from None
    if nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError as exc:
            raise LimitError(PRIORITY, f"cannot set it: {exc.strerror}") from None


#: capabilities(7)'s numbers of the two privileges ``check`` looks for.
CAP_SYS_NICE, CAP_SYS_RESOURCE = 23, 24
#: ``LimitError.name`` for the niceness (``nice`` is also a limit's name: RLIMIT_NICE).
PRIORITY = "priority"


def capable(bit: int) -> bool:
    """Whether this process has the capability numbered ``bit`` (capabilities(7)),
    read from /proc/self/status; where it cannot be read, whether it is root."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def _nr_open() -> int | None:
    try:
        with open("/proc/sys/fs/nr_open", "rb") as nr_open:
            return int(nr_open.read())
    except (OSError, ValueError):
        return None
