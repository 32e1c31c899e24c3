"""An application supervisor built with the Python API, for
tests/test_supervisor_control.py: ``ctl_app.py JSON``.

JSON is an object with ``control`` (the socket, required) and optionally
``log``, ``control_group``, ``observer_group`` and ``idle_timeout``: the
``Supervisor`` arguments of the same names. It supervises one program, ``web``
(``/bin/sleep 1000``), and registers these commands:

- ``flush_cache(region: str) -> int``: "drops" a region's cache (records it) and
  returns how many entries it dropped; an unknown region raises ValueError;
- ``version() -> str`` (read-only);
- ``flushed() -> list[str]`` (read-only, named with ``name=``): the regions
  flushed so far, so a test can see that a refused call did nothing;
- ``ignore(name: str) -> None``: the supervisor ignores signal ``name``
  (``"SIGUSR2"``) from now on, as application code may;
- ``parse(argv: list[str]) -> str``: parses ``argv`` with argparse, which raises
  SystemExit (2) on a bad option;
- ``raises(name: str) -> None``: raises the built-in exception ``name``
  (``"KeyboardInterrupt"``, ``"GeneratorExit"``);
- ``ctrl_c() -> None``: as code that restores Python's Ctrl-C handler, then
  gets a real SIGINT: KeyboardInterrupt;
- ``tree() -> dict`` and ``deep() -> list`` (read-only): a value that contains
  itself, and one nested 100000 deep;
- ``job(code: int, status: str | None = None) -> int``: a job (``sh -c "exit
  CODE"``) run to its end, its exit status; with ``status``, one started in the
  background through a shell that writes the job's status to that file, the
  shell's pid (docs/supervisor.md's ways to learn how a job ended);
- ``slow(seconds: float, started: str = "") -> str``: creates the file
  ``started`` (if named), sleeps, and returns "done";
- ``ask_self() -> str``: asks its own supervisor the state of ``web`` through
  ``Client``, with no timeout (which would wait for itself);
- ``ask_later(path: str) -> None``: does that in a thread of its own, which
  writes the state (or the error) to ``path``.

It serves in the foreground and exits with ``serve()``'s status.
"""

from __future__ import annotations

import argparse
import builtins
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from daemonctx.supervisor import Client, Program, Supervisor

REGIONS = {"eu": 3, "us": 5}


def main() -> int:
    options = json.loads(sys.argv[1])
    sup = Supervisor(
        control=options["control"],
        programs=[Program("web", ["/bin/sleep", "1000"])],
        log=options.get("log"),
        control_group=options.get("control_group"),
        observer_group=options.get("observer_group"),
        idle_timeout=options.get("idle_timeout"),
    )
    flushed: list[str] = []

    @sup.command
    def flush_cache(region: str) -> int:
        """Drop a region's cache; the number of entries dropped."""
        if region not in REGIONS:
            raise ValueError(f"no region {region!r}")
        flushed.append(region)
        return REGIONS[region]

    @sup.command(read_only=True)
    def version() -> str:
        """The application's version."""
        return "shop 1.2"

    @sup.command(name="flushed", read_only=True)
    def flushed_regions() -> list[str]:
        """The regions flushed so far."""
        return flushed

    @sup.command
    def ignore(name: str) -> None:
        """Ignore a signal in the supervisor from now on."""
        signal.signal(signal.Signals[name], signal.SIG_IGN)

    @sup.command
    def parse(argv: list[str]) -> str:
        """Parse options the way an application does."""
        parser = argparse.ArgumentParser(prog="parse")
        parser.add_argument("--n", type=int)
        return repr(parser.parse_args(argv))

    @sup.command
    def raises(name: str) -> None:
        """Raise a built-in exception."""
        raise getattr(builtins, name)()

    @sup.command
    def ctrl_c() -> None:
        """Take Ctrl-C as Python does by default, and get one."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)  # KeyboardInterrupt comes first

    @sup.command(read_only=True)
    def tree() -> dict[str, Any]:
        """A node that names itself as its parent."""
        node: dict[str, Any] = {"name": "root"}
        node["parent"] = node
        return node

    @sup.command(read_only=True)
    def deep() -> list[Any]:
        """A list nested 100000 deep."""
        value: list[Any] = []
        for _ in range(100_000):
            value = [value]
        return value

    @sup.command
    def job(code: int, status: str | None = None) -> int:
        """Run a job that exits CODE: its status, or in the background, its pid."""
        command = ["/bin/sh", "-c", f"exit {int(code)}"]
        if status is None:
            return subprocess.run(command).returncode
        wrapper = ["/bin/sh", "-c", '"$@"; echo $? > "$0"', status, *command]
        return subprocess.Popen(wrapper).pid

    @sup.command
    def slow(seconds: float, started: str = "") -> str:
        """Sleep; say done."""
        if started:
            open(started, "w").close()
        time.sleep(seconds)
        return "done"

    def web_state() -> str:
        with Client(options["control"]) as client:  # timeout=None
            return client.status("web")[0].state

    @sup.command
    def ask_self() -> str:
        """The state of web, asked of this supervisor through Client."""
        return web_state()

    @sup.command
    def ask_later(path: str) -> None:
        """Ask that in a thread; write the answer to PATH."""

        def ask() -> None:
            try:
                answer = web_state()
            except Exception as exc:
                answer = f"{type(exc).__name__}: {exc}"
            with open(path + ".new", "w") as file:
                file.write(answer)
            os.rename(path + ".new", path)

        threading.Thread(target=ask, daemon=True).start()

    return sup.serve()


if __name__ == "__main__":
    sys.exit(main())
