#!/usr/bin/env python3
"""Start-up benchmark: the plain double fork, python-daemon and daemonctx, side by side.

Each launch runs a small program from ``benchmarks/programs/`` in a fresh
interpreter; the program daemonizes, writes its pidfile, sends a ready marker
down a FIFO and sleeps until SIGTERM. Per launch we measure:

- ready latency: just before ``Popen`` -> the daemon's ready marker arrives;
- launcher exit: just before ``Popen`` -> the launching process has exited;
- whether, at the instant the launcher exited, the pidfile named the live
  daemon (a "pidfile race" when it did not);
- stop latency: SIGTERM -> the daemon is gone (watched through a pidfd);
- the daemon's resident memory (VmRSS) while it is up.

Rounds are interleaved (each round runs every variant once, in a shuffled
order), so machine noise hits all variants alike. Ratios are ratios of
medians, against the plain double fork (the floor).

    .venv/bin/python benchmarks/bench_startup.py [--rounds 50] [--json out.json] [--check]

Exit status is 0 (this is a report), unless ``--check`` is given and a goal is
missed (1), or the run was interrupted (130; what was measured is still shown).
Not part of the pytest suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType

HERE = Path(__file__).resolve().parent
PROGRAMS = {
    "plain": HERE / "programs" / "plain.py",
    "python-daemon": HERE / "programs" / "python_daemon.py",
    "daemonctx": HERE / "programs" / "daemonctx_daemon.py",
}
VARIANTS = tuple(PROGRAMS)
# The same interpreter flags for every variant: no PYTHON* environment, no user site.
PYTHON_FLAGS = ("-E", "-s")

# Goals for daemonctx (docs/benchmarks.md, "Goals").
GOAL_READY_RATIO = 1.10
# Our launcher waits for ready by design, so its floor is the plain daemon's
# *ready*, not the plain launcher's exit (which leaves before its daemon exists).
GOAL_EXIT_RATIO = 1.10
GOAL_STOP_RATIO = 1.15


@dataclass
class Launch:
    """Raw numbers for one launch of one variant."""

    variant: str
    round: int  # -1, -2, ... for warm-up rounds (not counted)
    ok: bool = False
    error: str | None = None
    launcher_status: int | None = None
    ready_ms: float | None = None
    exit_ms: float | None = None
    # At the instant the launcher exited: the pid the pidfile named, if that
    # process was alive; and whether that was the daemon.
    pidfile_pid_at_exit: int | None = None
    pidfile_ok_at_exit: bool | None = None
    daemon_pid: int | None = None
    pidfile_impl: str | None = None
    rss_kib: int | None = None
    stop_ms: float | None = None
    pidfile_left_after_stop: bool | None = None


# -- processes -----------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # The state follows the command name, which is in parentheses and may hold spaces.
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"")


def pidfile_live_pid(path: str) -> int | None:
    """The pid in the pidfile at ``path`` if it names a live process, else None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        text = os.read(fd, 64)
    finally:
        os.close(fd)
    try:
        pid = int(text.strip())
    except ValueError:  # empty (a write in progress) or garbage
        return None
    return pid if pid > 0 and process_alive(pid) else None


def vm_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def wait_pidfd(pidfd: int, timeout: float) -> bool:
    """Wait until the process behind ``pidfd`` has exited; False on timeout."""
    ready, _, _ = select.select([pidfd], [], [], timeout)
    return bool(ready)


class Reaper:
    """Every process a launch may leave behind, ended by pid (pidfd) in ``finally``."""

    def __init__(self, tmpdir: str) -> None:
        self.tmpdir = tmpdir
        self.pidfds: dict[int, int] = {}  # daemon pid -> pidfd

    def track(self, pid: int) -> int | None:
        """Hold a pidfd for ``pid`` (it cannot be reused under us); return it."""
        if pid in self.pidfds:
            return self.pidfds[pid]
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # already gone
            return None
        self.pidfds[pid] = pidfd
        return pidfd

    def release(self, pid: int) -> None:
        pidfd = self.pidfds.pop(pid, None)
        if pidfd is not None:
            os.close(pidfd)

    def kill(self, pid: int) -> bool:
        """SIGKILL tracked ``pid`` if it is still alive, wait for it, stop tracking it."""
        pidfd = self.pidfds.get(pid)
        killed = False
        if pidfd is not None and not wait_pidfd(pidfd, 0):
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                killed = True
            except OSError:
                pass
            wait_pidfd(pidfd, 2.0)
        self.release(pid)
        return killed

    def kill_all(self) -> list[int]:
        """SIGKILL every tracked daemon still alive, and any process whose command
        line names our temporary directory (a daemon that never reported)."""
        killed = [pid for pid in list(self.pidfds) if self.kill(pid)]
        return killed + self.kill_matching(self.tmpdir)

    @staticmethod
    def kill_matching(text: str) -> list[int]:
        """SIGKILL, by pid, each process whose command line contains ``text`` (a path
        in our temporary directory, so only processes this benchmark started)."""
        killed = []
        marker = text.encode()
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if marker in cmdline:
                try:
                    os.kill(int(name), signal.SIGKILL)
                    killed.append(int(name))
                except OSError:
                    pass
        return killed


# -- one launch ----------------------------------------------------------------


class Bench:
    def __init__(self, tmpdir: str, pidfile_impl: str, timeout: float) -> None:
        self.tmpdir = tmpdir
        self.pidfile_impl = pidfile_impl
        self.timeout = timeout
        self.reaper = Reaper(tmpdir)
        self.fifo = os.path.join(tmpdir, "ready.fifo")
        os.mkfifo(self.fifo, 0o600)
        # Read-write: never blocks, and never sees EOF between daemons.
        self.fifo_fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        self.fifo_buffer = b""
        self.stderr_path = os.path.join(tmpdir, "stderr.txt")
        self.last_start_ns = 0  # perf_counter_ns() just before the last Popen

    def close(self) -> list[int]:
        try:
            return self.reaper.kill_all()
        finally:
            os.close(self.fifo_fd)

    def _read_markers(self) -> list[tuple[str, int, str]]:
        try:
            self.fifo_buffer += os.read(self.fifo_fd, 4096)
        except BlockingIOError:
            pass
        markers = []
        while b"\n" in self.fifo_buffer:
            line, self.fifo_buffer = self.fifo_buffer.split(b"\n", 1)
            parts = line.decode("ascii", "replace").split()
            if len(parts) == 3 and parts[1].isdigit():
                markers.append((parts[0], int(parts[1]), parts[2]))
        return markers

    def _stderr_tail(self) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                text = f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""
        return text.splitlines()[-1] if text else ""

    def launch(
        self,
        variant: str,
        round_number: int,
        program: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> Launch:
        """Launch ``variant``'s program (or ``program`` with its arguments plus
        ``extra_args``), wait until it is up, then stop it; return the numbers."""
        result = Launch(variant, round_number)
        launch_id = f"{variant}#{round_number}"
        # A pidfile per launch: a file left by one launch cannot pass for another's.
        tag = f"r{round_number}" if round_number >= 0 else f"w{-round_number}"
        pidfile = os.path.join(self.tmpdir, f"{variant}.{tag}.pid")
        program = PROGRAMS[variant] if program is None else program
        argv = [sys.executable, *PYTHON_FLAGS, str(program), pidfile, self.fifo, launch_id]
        if variant == "daemonctx":
            argv.append(self.pidfile_impl)
        argv.extend(extra_args)
        self.fifo_buffer = b""
        launcher_pidfd = None
        with open(self.stderr_path, "wb") as stderr:
            start = self.last_start_ns = time.perf_counter_ns()
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        try:
            launcher_pidfd = os.pidfd_open(proc.pid)  # not reaped yet: still ours
            self._wait_up(result, proc, launcher_pidfd, start, pidfile, launch_id)
        finally:
            if launcher_pidfd is not None:
                os.close(launcher_pidfd)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if result.error is None and result.daemon_pid is not None:
            self._stop(result, pidfile)
        if result.error is not None:
            # Whatever this launch left running goes now, not at the end of the run.
            if result.daemon_pid is not None:
                self.reaper.kill(result.daemon_pid)
            self.reaper.kill_matching(pidfile)
        result.ok = result.error is None
        return result

    def _wait_up(
        self,
        result: Launch,
        proc: subprocess.Popen[bytes],
        launcher_pidfd: int,
        start: int,
        pidfile: str,
        launch_id: str,
    ) -> None:
        """Wait for both the launcher's exit and the daemon's ready marker."""
        poller = select.poll()
        poller.register(launcher_pidfd, select.POLLIN)
        poller.register(self.fifo_fd, select.POLLIN)
        deadline = start + int(self.timeout * 1e9)
        exit_at = ready_at = None
        while exit_at is None or ready_at is None:
            remaining_ms = (deadline - time.perf_counter_ns()) / 1e6
            if remaining_ms <= 0:
                waiting = "launcher exit" if exit_at is None else "ready marker"
                result.error = f"timeout after {self.timeout} s waiting for the {waiting}"
                return
            events = poller.poll(max(1, int(remaining_ms)))
            now = time.perf_counter_ns()
            for fd, _mask in events:
                if fd == launcher_pidfd and exit_at is None:
                    exit_at = now
                    # The instant the launcher is gone: what a shell's `&&` would see.
                    result.pidfile_pid_at_exit = pidfile_live_pid(pidfile)
                    result.launcher_status = proc.wait()
                    poller.unregister(launcher_pidfd)
                    result.exit_ms = (exit_at - start) / 1e6
                    if result.launcher_status != 0:
                        tail = self._stderr_tail()
                        result.error = f"launcher exited {result.launcher_status}: {tail}"
                        return
                elif fd == self.fifo_fd:
                    for marker_id, pid, impl in self._read_markers():
                        if marker_id != launch_id:
                            continue
                        ready_at = now
                        result.ready_ms = (ready_at - start) / 1e6
                        result.daemon_pid = pid
                        result.pidfile_impl = impl
                        self.reaper.track(pid)
        result.pidfile_ok_at_exit = (
            result.pidfile_pid_at_exit is not None
            and result.pidfile_pid_at_exit == result.daemon_pid
        )

    def _stop(self, result: Launch, pidfile: str) -> None:
        pid = result.daemon_pid
        assert pid is not None
        pidfd = self.reaper.track(pid)
        if pidfd is None:
            result.error = "the daemon was gone before it was stopped"
            return
        result.rss_kib = vm_rss_kib(pid)
        start = time.perf_counter_ns()
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        if wait_pidfd(pidfd, self.timeout):
            result.stop_ms = (time.perf_counter_ns() - start) / 1e6
            result.pidfile_left_after_stop = os.path.exists(pidfile)
        else:
            result.error = f"the daemon did not exit within {self.timeout} s of SIGTERM"
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            wait_pidfd(pidfd, 2.0)
        self.reaper.release(pid)
        if os.path.exists(pidfile):
            os.unlink(pidfile)


# -- statistics ----------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio_ci(
    rounds: list[int],
    numerator: dict[int, float],
    denominator: dict[int, float],
    rng: random.Random,
    resamples: int = 2000,
) -> tuple[float, float] | None:
    """90% bootstrap interval of median(numerator) / median(denominator), resampling
    whole rounds (the variants of a round ran back to back, under the same noise)."""
    paired = [r for r in rounds if r in numerator and r in denominator]
    if len(paired) < 5:
        return None
    ratios = []
    for _ in range(resamples):
        sample = [paired[rng.randrange(len(paired))] for _ in paired]
        top = statistics.median(numerator[r] for r in sample)
        bottom = statistics.median(denominator[r] for r in sample)
        ratios.append(top / bottom)
    return percentile(ratios, 5), percentile(ratios, 95)


@dataclass
class Summary:
    variant: str
    launches: int
    failures: int
    ready_median: float | None
    ready_p90: float | None
    exit_median: float | None
    exit_p90: float | None
    pidfile_missing: int
    pidfile_checked: int
    stop_median: float | None
    rss_median_mib: float | None
    pidfile_left_after_stop: int


def summarize(variant: str, launches: list[Launch]) -> Summary:
    mine = [launch for launch in launches if launch.variant == variant and launch.round >= 0]
    ready = [x.ready_ms for x in mine if x.ready_ms is not None]
    exits = [x.exit_ms for x in mine if x.exit_ms is not None]
    checked = [x for x in mine if x.pidfile_ok_at_exit is not None]
    stops = [x.stop_ms for x in mine if x.stop_ms is not None]
    rss = [x.rss_kib / 1024 for x in mine if x.rss_kib is not None]
    return Summary(
        variant=variant,
        launches=len(mine),
        failures=sum(1 for x in mine if not x.ok),
        ready_median=median_or_none(ready),
        ready_p90=percentile(ready, 90) if ready else None,
        exit_median=median_or_none(exits),
        exit_p90=percentile(exits, 90) if exits else None,
        pidfile_missing=sum(1 for x in checked if not x.pidfile_ok_at_exit),
        pidfile_checked=len(checked),
        stop_median=median_or_none(stops),
        rss_median_mib=median_or_none(rss),
        pidfile_left_after_stop=sum(1 for x in mine if x.pidfile_left_after_stop),
    )


# -- report --------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def ratio(top: float | None, bottom: float | None) -> float | None:
    if top is None or bottom is None or bottom == 0:
        return None
    return top / bottom


def by_round(launches: list[Launch], variant: str, key: str) -> dict[int, float]:
    values: dict[int, float] = {}
    for launch in launches:
        value = getattr(launch, key)
        if launch.variant == variant and launch.round >= 0 and value is not None:
            values[launch.round] = value
    return values


def report(
    launches: list[Launch], summaries: dict[str, Summary], rounds: int, seed: int
) -> tuple[list[str], list[dict[str, object]]]:
    """Print the tables; return the printed lines' goal verdicts for --check/--json."""
    header = (
        f"{'variant':<14} {'ready ms':>8} {'p90':>7} {'exit ms':>8} {'p90':>7}"
        f" {'pidfile missing':>16} {'stop ms':>8} {'RSS MiB':>8} {'failed':>7}"
    )
    lines = [header, "-" * len(header)]
    for s in summaries.values():
        missing = "-"
        if s.pidfile_checked:
            rate = 100 * s.pidfile_missing / s.pidfile_checked
            missing = f"{s.pidfile_missing}/{s.pidfile_checked} ({rate:.0f}%)"
        lines.append(
            f"{s.variant:<14} {fmt(s.ready_median):>8} {fmt(s.ready_p90):>7}"
            f" {fmt(s.exit_median):>8} {fmt(s.exit_p90):>7} {missing:>16}"
            f" {fmt(s.stop_median):>8} {fmt(s.rss_median_mib, '.2f'):>8}"
            f" {s.failures:>3}/{s.launches}"
        )
    for line in lines:
        print(line)
    left = ", ".join(f"{s.variant} {s.pidfile_left_after_stop}" for s in summaries.values())
    print(f"pidfiles left behind after SIGTERM: {left}")

    pairs = [
        ("python-daemon", "plain"),
        ("daemonctx", "plain"),
        ("daemonctx", "python-daemon"),
    ]
    print()
    print("Ratios of medians (lower is better; 1.00 = as fast as the baseline)")
    header = f"{'':<28} {'ready':>6} {'exit':>6} {'stop':>6} {'RSS':>6}"
    print(header)
    print("-" * len(header))
    for top, bottom in pairs:
        if top not in summaries or bottom not in summaries:
            continue
        a, b = summaries[top], summaries[bottom]
        print(
            f"{top + ' / ' + bottom:<28}"
            f" {fmt(ratio(a.ready_median, b.ready_median), '.2f'):>6}"
            f" {fmt(ratio(a.exit_median, b.exit_median), '.2f'):>6}"
            f" {fmt(ratio(a.stop_median, b.stop_median), '.2f'):>6}"
            f" {fmt(ratio(a.rss_median_mib, b.rss_median_mib), '.2f'):>6}"
        )

    goals: list[dict[str, object]] = []
    missed: list[str] = []
    print()
    print("Goals for daemonctx")
    if "daemonctx" not in summaries or "plain" not in summaries:
        print("  (need both the plain and daemonctx variants)")
        return missed, goals
    rng = random.Random(seed)
    all_rounds = list(range(rounds))
    dc, plain = summaries["daemonctx"], summaries["plain"]
    for label, key, plain_key, limit in (
        ("ready latency vs plain ready", "ready_ms", "ready_ms", GOAL_READY_RATIO),
        ("launcher exit vs plain ready", "exit_ms", "ready_ms", GOAL_EXIT_RATIO),
        ("stop latency vs plain stop", "stop_ms", "stop_ms", GOAL_STOP_RATIO),
    ):
        value = ratio(
            getattr(dc, key.replace("_ms", "_median")),
            getattr(plain, plain_key.replace("_ms", "_median")),
        )
        ci = ratio_ci(
            all_rounds,
            by_round(launches, "daemonctx", key),
            by_round(launches, "plain", plain_key),
            rng,
        )
        met = value is not None and value <= limit
        ci_text = f"  (90% CI {ci[0]:.2f}-{ci[1]:.2f})" if ci else ""
        print(
            f"  {label:<34} <= {limit:.2f}x: {fmt(value, '.2f')}x{ci_text}"
            f"  {'MET' if met else 'MISSED'}"
        )
        goals.append({"goal": f"{label} ratio <= {limit}", "value": value, "ci90": ci, "met": met})
        if not met:
            missed.append(label)
    met = dc.pidfile_checked > 0 and dc.pidfile_missing == 0
    print(
        f"  {'pidfile missing at launcher exit':<34} == 0:    "
        f" {dc.pidfile_missing}/{dc.pidfile_checked}  {'MET' if met else 'MISSED'}"
    )
    goals.append(
        {"goal": "pidfile missing at launcher exit == 0", "value": dc.pidfile_missing, "met": met}
    )
    if not met:
        missed.append("pidfile races")
    if dc.failures:
        print(f"  daemonctx failed {dc.failures} of {dc.launches} launches")
        missed.append("failed launches")
    return missed, goals


# -- main ----------------------------------------------------------------------


def detect_pidfile_impl() -> str:
    """``library`` if ``daemonctx.pidfile.TimeoutPIDLockFile`` imports, else ``fallback``.
    Decided once, so every round of a run uses the same pidfile."""
    probe = subprocess.run(
        [
            sys.executable,
            *PYTHON_FLAGS,
            "-c",
            "from daemonctx.pidfile import TimeoutPIDLockFile",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return "library" if probe.returncode == 0 else "fallback"


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50, help="launches per variant (50)")
    parser.add_argument("--warmup", type=int, default=2, help="uncounted rounds first (2)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated subset of {','.join(VARIANTS)}",
    )
    parser.add_argument(
        "--pidfile-impl",
        choices=("auto", "library", "fallback"),
        default="auto",
        help="daemonctx's pidfile: daemonctx.pidfile (library), the benchmark's own "
        "(fallback), or library when importable (auto, the default)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="per step, seconds (10)")
    parser.add_argument("--seed", type=int, default=3143, help="shuffle/bootstrap seed")
    parser.add_argument("--json", metavar="FILE", help="write the raw numbers to FILE")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown or not args.variants:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants: list[str] = args.variants
    impl = detect_pidfile_impl() if args.pidfile_impl == "auto" else args.pidfile_impl
    print(
        f"python {platform.python_version()} ({sys.executable} {' '.join(PYTHON_FLAGS)}), "
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs"
    )
    if "daemonctx" in variants:
        which = (
            "daemonctx.pidfile.TimeoutPIDLockFile"
            if impl == "library"
            else "the benchmark's fallback pidfile (daemonctx.pidfile not importable);"
            " it does no locking, so daemonctx looks a little faster than it will be"
        )
        print(f"daemonctx pidfile: {which}")
    print(
        f"{args.rounds} rounds (+{args.warmup} warm-up), variants interleaved in a "
        f"shuffled order each round: {', '.join(variants)}"
    )

    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally below still kills every daemon.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    rng = random.Random(args.seed)
    launches: list[Launch] = []
    tmpdir = tempfile.mkdtemp(prefix="daemonctx-bench-")
    bench: Bench | None = None
    interrupted = False
    progress: Callable[[str], None] = (
        (lambda text: print(text, end="", file=sys.stderr, flush=True))
        if sys.stderr.isatty()
        else (lambda text: None)
    )
    try:
        bench = Bench(tmpdir, impl, args.timeout)
        schedule = [-(w + 1) for w in range(args.warmup)] + list(range(args.rounds))
        for number in schedule:
            order = list(variants)
            rng.shuffle(order)
            for variant in order:
                launch = bench.launch(variant, number)
                launches.append(launch)
                if launch.error is not None:
                    print(f"\n{variant} round {number}: {launch.error}", file=sys.stderr)
            progress(f"\rround {number + 1}/{args.rounds}" if number >= 0 else "\rwarming up")
        progress("\r" + " " * 30 + "\r")
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted; reporting what was measured", file=sys.stderr)
    finally:
        if bench is not None:
            leftovers = bench.close()
            if leftovers:
                print(f"killed leftover processes: {leftovers}", file=sys.stderr)
        shutil.rmtree(tmpdir, ignore_errors=True)

    used = {x.pidfile_impl for x in launches if x.variant == "daemonctx" and x.pidfile_impl}
    if len(used) > 1:
        print(f"warning: daemonctx used several pidfiles in this run: {sorted(used)}")
    print()
    summaries = {
        variant: summarize(variant, launches) for variant in VARIANTS if variant in variants
    }
    missed, goals = report(launches, summaries, args.rounds, args.seed)
    print()
    if not goals:
        print("goals: not evaluated")
        missed.append("not evaluated")  # --check cannot pass without the goals
    else:
        print("goals: all met" if not missed else f"goals: MISSED ({', '.join(missed)})")

    if args.json:
        document = {
            "python": platform.python_version(),
            "executable": sys.executable,
            "flags": list(PYTHON_FLAGS),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "rounds": args.rounds,
            "warmup": args.warmup,
            "seed": args.seed,
            "daemonctx_pidfile": impl,
            "summary": {name: asdict(s) for name, s in summaries.items()},
            "goals": goals,
            "launches": [asdict(x) for x in launches],
        }
        with open(args.json, "w") as f:
            json.dump(document, f, indent=1)
            f.write("\n")
        print(f"raw numbers written to {args.json}")
    if interrupted:
        return 130  # an incomplete report
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
