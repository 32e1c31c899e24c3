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

__version__ = "0.1.0"

__all__ = [
    "DaemonContext",
    "DaemonError",
    "DaemonOSEnvironmentError",
    "DaemonOptionError",
    "DaemonProcessDetachError",
    "DaemonReadyTimeout",
    "DaemonStartupError",
    "Terminated",
    "__version__",
    "notify",
]
