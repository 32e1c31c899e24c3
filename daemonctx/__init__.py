"""daemonctx: turn a Python program into a well-behaved Unix daemon (PEP 3143)."""

from __future__ import annotations

from .context import DaemonContext
from .errors import (
    DaemonError,
    DaemonOptionError,
    DaemonOSEnvironmentError,
    DaemonProcessDetachError,
    DaemonReadyTimeout,
    DaemonStartupError,
    Terminated,
)
from .systemd import notify

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .control import ServiceState, ServiceStatus, StopResult, status, stop
    from .service import Service

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

# Imported on first use: a daemon that only needs DaemonContext must not pay for them.
_LAZY = {
    "Service": "service",
    "ServiceState": "control",
    "ServiceStatus": "control",
    "StopResult": "control",
    "status": "control",
    "stop": "control",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
