#!/usr/bin/env python3
"""Where does daemonctx's start-up time go? A companion to bench_startup.py.

Two reports, both from fresh interpreters with the benchmark's flags:

1. Import costs: each sample is a new interpreter that imports the "already
   loaded" modules, then times ``import <target>`` with ``perf_counter_ns``.
   Cases are interleaved and the median is reported, with the cost of
   ``import signal`` (which every benchmark program pays) as a yardstick.
2. A timeline of daemonctx launches: ``programs/trace_daemonctx.py`` runs the
   benchmark's daemonctx program with daemonctx's steps wrapped in timers (from
   the outside: daemonctx is not edited) and reports every step's start and
   end on the launcher's clock (CLOCK_MONOTONIC), from just before ``Popen``.

    .venv/bin/python benchmarks/trace_startup.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_startup import PYTHON_FLAGS, Bench, detect_pidfile_impl, percentile

HERE = Path(__file__).resolve().parent
TRACE_PROGRAM = HERE / "programs" / "trace_daemonctx.py"

# (label, imported first and not timed, timed import)
IMPORT_CASES: list[tuple[str, str, str]] = [
    ("signal (+enum): paid by every variant", "", "signal"),
    ("daemonctx", "signal", "daemonctx"),
    ("daemonctx.pidfile", "signal, daemonctx", "daemonctx.pidfile"),
    ("  typing (pidfile, module level)", "signal, daemonctx", "typing"),
    ("  contextlib (pidfile, module level)", "signal, daemonctx", "contextlib"),
    ("  fcntl (pidfile)", "signal, daemonctx", "fcntl"),
    (
        "  daemonctx.pidfile if typing were loaded",
        "signal, daemonctx, typing, contextlib",
        "daemonctx.pidfile",
    ),
    ("__future__ (each 'from __future__ import')", "signal", "__future__"),
    ("resource (prevent_core_dump, in open())", "signal, daemonctx", "resource"),
    ("python-daemon: daemon, daemon.pidfile", "signal", "daemon, daemon.pidfile"),
    ("  lockfile (socket, threading)", "signal", "lockfile"),
]

SNIPPET = """\
import time
{pre}
t = time.perf_counter_ns()
import {target}
print(time.perf_counter_ns() - t)
"""


def import_costs(rounds: int, rng: random.Random) -> None:
    samples: dict[str, list[float]] = {label: [] for label, _, _ in IMPORT_CASES}
    for _ in range(rounds):
        order = list(IMPORT_CASES)
        rng.shuffle(order)
        for label, pre, target in order:
            code = SNIPPET.format(pre=f"import {pre}" if pre else "", target=target)
            out = subprocess.run(
                [sys.executable, *PYTHON_FLAGS, "-c", code],
                capture_output=True,
                text=True,
                check=True,
                cwd="/",
            )
            samples[label].append(int(out.stdout) / 1e6)
    print(f"Import costs, ms (fresh interpreter per sample, {rounds} samples, median / p90)")
    for label, _, _ in IMPORT_CASES:
        values = samples[label]
        print(f"  {label:<46} {statistics.median(values):6.2f} / {percentile(values, 90):5.2f}")


def read_events(path: str) -> list[tuple[str, int, int, int]]:
    events = []
    with open(path) as f:
        for line in f:
            label, pid, start, end = line.rstrip("\n").split("\t")
            events.append((label, int(pid), int(start), int(end)))
    return events


def timeline(rounds: int, impl: str) -> None:
    tmpdir = tempfile.mkdtemp(prefix="daemonctx-trace-")
    bench = Bench(tmpdir, impl, timeout=10.0)
    # label -> (role, [end offset ms], [duration ms])
    rows: dict[str, tuple[str, list[float], list[float]]] = {}
    exits: list[float] = []
    readies: list[float] = []
    try:
        for number in range(-1, rounds):  # round -1: warm-up
            events_file = os.path.join(tmpdir, "events.tsv")
            launch = bench.launch(
                "daemonctx", number, program=TRACE_PROGRAM, extra_args=(events_file,)
            )
            if launch.error is not None:
                print(f"round {number}: {launch.error}", file=sys.stderr)
                continue
            events = read_events(events_file)
            os.unlink(events_file)
            if number < 0:
                continue
            start = bench.last_start_ns
            launcher = events[0][1]
            assert launch.exit_ms is not None and launch.ready_ms is not None
            exits.append(launch.exit_ms)
            readies.append(launch.ready_ms)
            for label, pid, begin, end in events:
                role = (
                    "-"
                    if pid == 0  # a step that could not be wrapped
                    else "launcher"
                    if pid == launcher
                    else "daemon"
                    if pid == launch.daemon_pid
                    else "1st child"
                )
                key = f"{label} [{role}]"
                row = rows.setdefault(key, (role, [], []))
                row[1].append((end - start) / 1e6)
                row[2].append((end - begin) / 1e6)
    finally:
        bench.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
    ordered = sorted(rows.items(), key=lambda item: statistics.median(item[1][1]))
    print(
        f"Timeline of a daemonctx launch, ms from just before Popen ({rounds} launches, "
        f"medians; pidfile: {'daemonctx.pidfile' if impl == 'library' else 'fallback'})"
    )
    print(f"  {'step [process]':<50} {'ends at':>8} {'takes':>7}")
    for key, (_role, ends, durations) in ordered:
        if key.startswith("fork") and "[launcher]" in key:
            continue  # the launcher's side of the first fork: the child's is the one that counts
        print(f"  {key:<50} {statistics.median(ends):8.2f} {statistics.median(durations):7.3f}")
    print(f"  {'launcher has exited (benchmark sees it)':<50} {statistics.median(exits):8.2f}")
    print(f"  {'ready marker arrives (benchmark sees it)':<50} {statistics.median(readies):8.2f}")


def bare_interpreter(rounds: int) -> None:
    """Popen -> exit of ``python -c pass`` and of ``import signal``, for the floor."""
    import time

    results: dict[str, list[float]] = {"pass": [], "import signal": []}
    for _ in range(rounds):
        for code in results:
            start = time.perf_counter_ns()
            subprocess.run([sys.executable, *PYTHON_FLAGS, "-c", code], check=True, cwd="/")
            results[code].append((time.perf_counter_ns() - start) / 1e6)
    print("Whole interpreter runs, ms (Popen -> exit, median)")
    for code, values in results.items():
        print(f"  python {' '.join(PYTHON_FLAGS)} -c {code!r:<40} {statistics.median(values):6.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=3143)
    parser.add_argument("--pidfile-impl", choices=("auto", "library", "fallback"), default="auto")
    args = parser.parse_args()
    impl = detect_pidfile_impl() if args.pidfile_impl == "auto" else args.pidfile_impl
    bare_interpreter(args.rounds)
    print()
    import_costs(args.rounds, random.Random(args.seed))
    print()
    timeline(args.rounds, impl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
