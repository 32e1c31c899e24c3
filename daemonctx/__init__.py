"""daemonctx: turn a Python program into a well-behaved Unix daemon (PEP 3143)."""

from __future__ import annotations

from .errors import (
    DaemonError,
    DaemonOptionError,
    DaemonOSEnvironmentError,
    DaemonProcessDetachError,
    DaemonReadyTimeout,
    DaemonStartupError,
    Terminated,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .context import DaemonContext
    from .control import ServiceState, ServiceStatus, StopResult, status, stop
    from .service import Service
    from .systemd import notify

__version__ = "0.1.0"

__all__ = [
    "DaemonContext",
    "DaemonError",
    "DaemonOSEnvironmentError",
    "DaemonOptionError",
    "DaemonProcessDetachError",
    "DaemonReadyTimeout",
    "DaemonStartupError",
    "Service",
    "ServiceState",
    "ServiceStatus",
    "StopResult",
    "Terminated",
    "__version__",
    "notify",
    "status",
    "stop",
]

# Imported on first use: a daemon that only needs DaemonContext must not pay for
# the others (every module costs start-up time, and the launcher waits for the
# daemon), and ``daemonctx ctl`` needs none of them, not even DaemonContext.
_LAZY = {
    "DaemonContext": "context",
    "Service": "service",
    "ServiceState": "control",
    "ServiceStatus": "control",
    "StopResult": "control",
    "status": "control",
    "stop": "control",
    "notify": "systemd",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # __import__, not importlib (itself a module to load, maybe inside a chroot)
    __import__(f"{__name__}.{module}")
    value = getattr(globals()[module], name)
    globals()[name] = value
    return value
