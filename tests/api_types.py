"""The public API as an application uses it, for ``mypy --strict`` (CI runs it on this
file, and ``test_supervisor_config.py`` when mypy is installed): every form the
documentation shows must type-check. Not a test module: nothing here runs."""

from __future__ import annotations

import signal
from pathlib import Path

from daemonctx import Service
from daemonctx.supervisor import Client, Program, ProgramInfo, Supervisor, SupervisorConfig
from daemonctx.supervisor.config import LogFile

programs = [
    Program("web", ["/usr/bin/web", "--port", "8000"], stop_signal="INT", umask="027"),
    Program("worker", ("/usr/bin/worker",), stop=["TERM", 10, "QUIT", 2, "KILL"]),
    Program(
        "db", ["/usr/bin/db"], limits={"nofile": 65536, "core": "infinity", "nproc": [512, 1024]}
    ),
    Program("api", ["/usr/bin/api"], stdout={"path": "/var/log/api.log", "max_bytes": 10_000_000}),
    Program("cron", ["/usr/bin/cron"], user=1000, group="daemon", ready="exited", restart="never"),
    Program("queue", ["/usr/bin/queue"], stop_signal=signal.SIGQUIT, ready=2, nice=5),
    Program("logs", ["/usr/bin/logs"], stdout=Path("/var/log/logs.log"), stderr="stdout"),
    Program("rot", ["/usr/bin/rot"], stdout=LogFile("/var/log/rot.log", max_bytes=1 << 20)),
    Program(
        "env", ["/usr/bin/env"], environment_file=Path("/etc/default/env"), pidfile=Path("/run/e")
    ),
]
config = SupervisorConfig(
    control=Path("/run/shop.sock"),
    programs=programs,
    log=Path("/var/log/shop.log"),
    observer_group=4,
)
supervisor = Supervisor(config=config)
name: str = programs[0].name
signal_number: int = programs[0].stop_signal


def status(path: str) -> list[ProgramInfo]:
    with Client(path, timeout=5) as client:
        return client.status("web")


supervisor2 = Supervisor(
    control=Path("/run/shop2.sock"), programs=programs, pidfile=Path("/run/s.pid"), control_group=0
)


@supervisor2.command
def flush(region: str) -> int:
    """A command registered bare: it keeps its type."""
    return len(region)


@supervisor2.command(read_only=True, name="count")
def count_items() -> int:
    return 1


flushed: int = flush("eu")
counted: int = count_items()


class App(Service):
    """Signals as docs/service.md shows them: a name or a number, as class attributes."""

    pidfile = "/run/app.pid"
    stop_signal = "TERM"
    reload_signal = "SIGHUP"

    def run(self) -> None: ...


class Other(Service):
    stop_signal = signal.SIGINT
    reload_signal = signal.SIGUSR1


app = App(stop_signal="INT", reload_signal=signal.SIGUSR2)
