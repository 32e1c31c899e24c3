"""The supervisor: keep many programs running, and control them through a socket.

::

    from daemonctx.supervisor import Program, Supervisor, Client

    sup = Supervisor(control="/run/shop/control.sock",
                     programs=[Program("web", ["gunicorn", "shop:app"], restart="always")])
    sup.serve()

Modules, each with one job: ``config`` (the TOML file and the ``Program``
model), ``state`` (one program's state machine, pure), ``protocol`` (the
control socket's JSON lines, pure), ``results`` (what commands answer),
``spawn`` (starting one program), ``loop`` (the event loop), ``server`` (the
control socket's server side), ``core`` (``Supervisor``), ``client``
(``Client``).

The names below are loaded on first use, so that ``daemonctx ctl`` (which
needs only the client) does not pay for the server's imports.
"""

from __future__ import annotations

from ..errors import CommandError  # loaded with daemonctx: what Client raises, named here

TYPE_CHECKING = False  # typing costs ctl milliseconds at run time
if TYPE_CHECKING:
    from typing import Any

    from .client import Client, SupervisorNotRunning
    from .config import ConfigError, Program, SupervisorConfig
    from .core import Supervisor, SupervisorStartError
    from .protocol import ProtocolError, RemoteError, RequestError
    from .results import CommandInfo, ExitInfo, OutputLine, ProgramInfo, RunInfo, Tail

__all__ = [
    "Client",
    "CommandError",
    "CommandInfo",
    "ConfigError",
    "ExitInfo",
    "OutputLine",
    "Program",
    "ProgramInfo",
    "ProtocolError",
    "RemoteError",
    "RequestError",
    "RunInfo",
    "Supervisor",
    "SupervisorConfig",
    "SupervisorNotRunning",
    "SupervisorStartError",
    "Tail",
]

_WHERE = {
    "Client": "client",
    "SupervisorNotRunning": "client",
    "ConfigError": "config",
    "Program": "config",
    "SupervisorConfig": "config",
    "Supervisor": "core",
    "SupervisorStartError": "core",
    "ProtocolError": "protocol",
    "RemoteError": "protocol",
    "RequestError": "protocol",
    "CommandInfo": "results",
    "ExitInfo": "results",
    "OutputLine": "results",
    "ProgramInfo": "results",
    "RunInfo": "results",
    "Tail": "results",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
