"""sd_notify without libsystemd: tell a service manager about our state.

systemd (and other managers that speak the protocol) set ``NOTIFY_SOCKET``
to an AF_UNIX datagram socket, a path or ``@abstract`` name. Each message is
newline-separated ``KEY=VALUE`` lines: ``READY=1``, ``STATUS=...``,
``RELOADING=1``, ``STOPPING=1``, ``WATCHDOG=1``, ``MAINPID=...``. Without
``NOTIFY_SOCKET`` every call returns False at once, without importing socket.
"""

from __future__ import annotations

import os

from .errors import DaemonOSEnvironmentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass


def notify_socket_address() -> str | None:
    """The address in ``NOTIFY_SOCKET`` (``@name`` becomes an abstract address), or None."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return None
    if address.startswith("@"):
        return "\0" + address[1:]
    return address


def notify(*lines: str, **fields: object) -> bool:
    """Send ``lines`` (``"READY=1"``) and ``fields`` (``STATUS="Loading"``) in one datagram.

    Returns True when a message was sent, False when ``NOTIFY_SOCKET`` is not
    set. Raises ``DaemonOSEnvironmentError`` when it is set but unusable,
    because a manager waiting for READY=1 would otherwise time out silently.
    """
    address = notify_socket_address()
    if address is None:
        return False
    parts = [*lines, *(f"{key}={value}" for key, value in fields.items())]
    for part in parts:
        if "=" not in part or "\n" in part:
            raise ValueError(f"not a KEY=VALUE notification line: {part!r}")
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(parts).encode(), address)
    except OSError as exc:
        where = os.environ.get("NOTIFY_SOCKET")
        raise DaemonOSEnvironmentError(
            exc.errno, f"cannot notify the service manager at {where!r}: {exc.strerror}"
        ) from exc
    return True
