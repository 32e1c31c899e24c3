"""The main process of a container: PID 1. It does not fork, it stops cleanly on
SIGTERM (``docker stop``), and it reaps the orphans the kernel gives it.

    docker run --rm -v "$PWD:/src" -w /src python:3.12 \\
        sh -c 'pip install -q . && exec python examples/container_init.py'
    # or, without a container runtime (as root):
    unshare --pid --fork --mount-proc python3 examples/container_init.py

PID 1 is special: the kernel ignores every signal PID 1 has no handler for,
so without one ``docker stop`` would wait its 10 s and then SIGKILL. The
default signal map has a SIGTERM handler, and ``detach_process=None`` sees
that this is PID 1 and does not fork (the container would end with it).
"""

from __future__ import annotations

import os
import signal
import sys

from daemonctx import DaemonContext

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType


def reap_children(signum: int, frame: FrameType | None) -> None:
    """Collect every child that has exited. Orphans anywhere in the container are
    re-parented to PID 1, and stay zombies until PID 1 waits for them."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # no children at all
            return
        if pid == 0:  # children left, none exited
            return


def main() -> None:
    context = DaemonContext(
        stdout=sys.stdout,  # the container's log; None would mean /dev/null
        stderr=sys.stderr,
        signal_map={signal.SIGCHLD: reap_children},  # laid over the default map: SIGTERM stays
        umask=0o022,
    )
    with context:
        print(f"running as pid {os.getpid()}", flush=True)
        try:
            while True:  # your work
                signal.pause()
        finally:
            print("stopping", flush=True)  # SIGTERM: exit status 0


if __name__ == "__main__":
    main()
