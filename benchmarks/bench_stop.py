#!/usr/bin/env python3
"""Stop benchmark: how soon after the daemon's exit does the stop command return?

``daemonctx stop`` waits for the exit on a pidfd; ``start-stop-daemon --stop
--retry TERM/5`` polls. For each round and each tool we start a daemon with
``daemonctx start`` (the same way for both), then run the stop command and,
from this process, watch two pidfds: the daemon's (its exit instant) and the
stop command's (the instant it returned). Per stop we record:

- wall: Popen of the stop command -> it exited (includes interpreter start-up);
- exit: Popen -> the daemon exited;
- margin: the daemon exited -> the stop command exited (the goal: <= 5 ms).

Daemon kinds: ``sleep`` exits at once on SIGTERM; ``slow`` (a small Python
program started with ``--notify``) exits 50 ms after SIGTERM, so a poller's
interval shows. Rounds interleave the tools in a shuffled order.

This process makes itself a child subreaper and reaps each daemon the moment
it exits, as systemd does as PID 1: start-stop-daemon counts a zombie as alive,
so an init that reaps late would be charged to it. ``--no-reap`` leaves
reaping to the system's init instead.

    .venv/bin/python benchmarks/bench_stop.py [--rounds 20] [--kinds sleep,slow]
        [--no-reap] [--json out.json] [--check]

Exit status 0 (a report), or 1 with ``--check`` when daemonctx misses the goal.
Linux only, pidfds; run as root. Not part of the pytest suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SSD = shutil.which("start-stop-daemon") or "/usr/sbin/start-stop-daemon"
GOAL_MARGIN = 0.005  # seconds between the daemon's exit and `daemonctx stop` returning
PR_SET_CHILD_SUBREAPER = 36
STARTED = re.compile(r"started \S+ \(pid (\d+)\)")

SLOW_DAEMON = """
import os, signal, socket, sys, time
def stop(signum, frame):
    time.sleep(0.05)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
address = os.environ["NOTIFY_SOCKET"]
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
    sock.sendto(b"READY=1", "\\0" + address[1:] if address.startswith("@") else address)
while True:
    signal.pause()
"""


def daemonctx_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "daemonctx", *args]


def stop_commands(pidfile: str) -> dict[str, list[str]]:
    return {
        "daemonctx stop": daemonctx_command("stop", "--pidfile", pidfile),
        "start-stop-daemon": [SSD, "--stop", "--retry", "TERM/5", "--pidfile", pidfile],
    }


def start_daemon(kind: str, pidfile: str) -> int:
    """Start a daemon of ``kind`` with ``daemonctx start``; its pid."""
    if kind == "sleep":
        args = ["--", "sleep", "1000"]
    else:
        args = ["--notify", "--", sys.executable, "-c", SLOW_DAEMON]
    result = subprocess.run(
        daemonctx_command("start", "--pidfile", pidfile, *args),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    match = STARTED.search(result.stdout)
    if result.returncode != 0 or not match:
        raise RuntimeError(f"start failed: {result.stderr.strip()}")
    return int(match.group(1))


def become_subreaper() -> bool:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


@contextlib.contextmanager
def pidfd(pid: int) -> Iterator[int]:
    fd = os.pidfd_open(pid)
    try:
        yield fd
    finally:
        os.close(fd)


def reap(pid: int) -> None:
    """Reap ``pid`` if it is our child (it is, when we are its subreaper)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def timed_stop(command: list[str], daemon: int, reaping: bool) -> tuple[float, float, int]:
    """Run ``command``; (wall, daemon exit), both from the Popen, and its exit status."""
    with pidfd(daemon) as daemon_fd:
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with pidfd(proc.pid) as stop_fd:
            waiting = {daemon_fd: "exit", stop_fd: "wall"}
            seen: dict[str, float] = {}
            while waiting:
                ready, _, _ = select.select(list(waiting), [], [], 30)
                if not ready:
                    raise TimeoutError(f"{command[0]} did not finish within 30 s")
                now = time.monotonic()
                for fd in ready:
                    seen[waiting.pop(fd)] = now - started
                    if fd == daemon_fd and reaping:
                        reap(daemon)
        status = proc.wait()
    return seen["wall"], seen["exit"], status


def kill_leftover(pid: int | None) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, OSError), pidfd(pid) as fd:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        select.select([fd], [], [], 5)
    reap(pid)


Results = dict[str, list[dict[str, float]]]  # "kind/tool" -> one row per stop


def measure(kinds: list[str], rounds: int, reaping: bool, seed: int) -> Results:
    """Run the rounds; every stop's numbers, by "kind/tool"."""
    rng = random.Random(seed)
    results: Results = {}
    with tempfile.TemporaryDirectory(prefix="bench-stop-") as tmp:
        pidfile = os.path.join(tmp, "bench.pid")
        tools = list(stop_commands(pidfile).items())
        for _ in range(rounds):
            for kind in kinds:
                rng.shuffle(tools)
                for tool, command in tools:
                    daemon: int | None = start_daemon(kind, pidfile)
                    try:
                        assert daemon is not None
                        wall, exited, status = timed_stop(command, daemon, reaping)
                        daemon = None
                    finally:
                        kill_leftover(daemon)
                    if status != 0:
                        raise RuntimeError(f"{tool} exited {status}")
                    row = {"wall": wall, "exit": exited, "margin": wall - exited}
                    results.setdefault(f"{kind}/{tool}", []).append(row)
    return results


def summary(rows: list[dict[str, float]]) -> dict[str, float]:
    margins = sorted(row["margin"] for row in rows)
    return {
        "wall": statistics.median(row["wall"] for row in rows),
        "exit": statistics.median(row["exit"] for row in rows),
        "margin": statistics.median(margins),
        "margin_p90": margins[min(len(margins) - 1, int(0.9 * len(margins)))],
        "margin_max": margins[-1],
    }


def print_table(results: Results) -> None:
    columns = ("wall", "exit", "margin", "p90", "max")
    header = f"{'daemon/tool':32} {'n':>3} " + " ".join(f"{name:>9}" for name in columns)
    print(header)
    print("-" * len(header))
    for key, rows in results.items():
        s = summary(rows)
        cells = [
            f"{s[name] * 1000:7.2f}ms"
            for name in ("wall", "exit", "margin", "margin_p90", "margin_max")
        ]
        print(f"{key:32} {len(rows):>3} " + " ".join(f"{cell:>9}" for cell in cells))
    print("medians; wall and exit from the stop command's Popen; margin = its exit - the daemon's")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--kinds", default="sleep,slow", help="comma-separated: sleep, slow")
    parser.add_argument("--no-reap", action="store_true", help="leave reaping to init")
    parser.add_argument("--json", metavar="FILE", help="also write every stop's numbers")
    parser.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not os.access(SSD, os.X_OK):
        parser.error(f"{SSD} not found (Debian's dpkg package)")
    reaping = not args.no_reap and become_subreaper()
    kinds = [kind for kind in args.kinds.split(",") if kind]
    print(
        f"{args.rounds} rounds, kinds {kinds}, "
        f"{'we reap the daemons (subreaper)' if reaping else 'init reaps the daemons'}"
    )
    results = measure(kinds, args.rounds, reaping, args.seed)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    missed = [
        key
        for key, rows in results.items()
        if key.endswith("daemonctx stop") and summary(rows)["margin"] > GOAL_MARGIN
    ]
    for key in missed:
        print(f"goal missed: {key} median margin above {GOAL_MARGIN * 1000:g} ms")
    if not missed:
        print(
            f"goal met: daemonctx stop returns within {GOAL_MARGIN * 1000:g} ms of the exit "
            "(median)"
        )
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
