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
  (``"SIGUSR2"``) from now on, as application code may.

It serves in the foreground and exits with ``serve()``'s status.
"""

from __future__ import annotations

import json
import signal
import sys

from daemonctx.supervisor import Program, Supervisor

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

    return sup.serve()


if __name__ == "__main__":
    sys.exit(main())
