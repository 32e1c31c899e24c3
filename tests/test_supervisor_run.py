"""The supervisor on real processes: ``daemonctx supervise`` and ``daemonctx ctl``
driving programs that crash, ignore SIGTERM, double-fork, notify, make orphans.

Each test writes a TOML file (``supervisors.config``), runs the supervisor in the
foreground (``supervisors.foreground()``, a child of the test) or as a daemon
(``supervisors.supervise()``), and checks what a user would: ``ctl``/``Client``
status, /proc, and what the programs themselves record. Programs record times
from CLOCK_BOOTTIME, one clock for every process. Every process carries the
``supervisors`` fixture's token and is killed by pid when the test ends.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    PROGRAMS,
    ROOT,
    UNSHARE_PID,
    Supervisors,
    cmdline_of,
    guard_of,
    needs_pid_namespace,
    needs_root,
    pid_alive,
    proc_environ,
    proc_fds,
    proc_stat,
    proc_status,
    spawn_as_pid,
    wait_for,
    wait_gone,
    wait_reaped,
)

from daemonctx.supervisor.results import ProgramInfo
from daemonctx.supervisor.server import live_owner

pytestmark = pytest.mark.timeout(30)

PY = sys.executable
# -I -S: a fast start (no site, no user paths) for the programs whose starts are timed.
FAST_PY = (PY, "-I", "-S")
RECORD = PROGRAMS / "sup_record.py"
NOTIFY_GATE = PROGRAMS / "sup_notify_gate.py"
DOUBLE_FORK = PROGRAMS / "sup_double_fork.py"
ORPHANS = PROGRAMS / "sup_orphans.py"
SIGNAL_COUNTER = PROGRAMS / "sup_signal_counter.py"
IGNORE_TERM = PROGRAMS / "sup_ignore_term.py"
GROUP_STOP = PROGRAMS / "sup_group_stop.py"
OWN_SESSION = PROGRAMS / "sup_own_session.py"
WATCHDOG = PROGRAMS / "sup_watchdog.py"
SLEEP = shutil.which("sleep") or "/bin/sleep"

# Scheduling slack on top of a delay the supervisor chose: its reaction to the
# exit, a fork and exec, and the next program's start until it records its time.
# Measured on two cores: about 0.02 s idle, up to 0.045 s beside two busy loops,
# up to 0.1 s beside four (the spawn alone then took up to 0.05 s).
SLACK = 0.15


# -- helpers ------------------------------------------------------------------------


def record(path: Path, *mode: str) -> list[str]:
    """The command of sup_record.py writing to ``path``."""
    return [*FAST_PY, str(RECORD), str(path), *mode]


def events(path: Path, event: str | None = None) -> list[tuple[str, int, float]]:
    """sup_record.py's lines: (event, pid, CLOCK_BOOTTIME seconds)."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        name, pid, when = line.split()
        if event is None or name == event:
            found.append((name, int(pid), float(when)))
    return found


def times(path: Path, event: str) -> list[float]:
    return [when for _name, _pid, when in events(path, event)]


def log_text(supervisors: Supervisors) -> str:
    return supervisors.log.read_text() if supervisors.log.exists() else ""


def wait_log(supervisors: Supervisors, text: str, timeout: float = 10) -> str:
    """Wait until the supervisor's log contains ``text``; the log."""

    def found() -> str | None:
        log = log_text(supervisors)
        return log if text in log else None

    return str(wait_for(found, timeout, what=f"{text!r} in the supervisor's log"))


def logged_pid(supervisors: Supervisors, name: str) -> int:
    """The first pid the supervisor's log gives ``name`` ("web: running (pid 12, ...)")."""
    log = log_text(supervisors)
    match = re.search(rf"daemonctx: {re.escape(name)}: \w+ \(pid (\d+)", log)
    assert match, f"no pid of {name} in the log:\n{log}"
    return int(match.group(1))


def log_index(log: str, text: str) -> int:
    """Where ``text`` first appears in ``log`` (it must)."""
    index = log.find(text)
    assert index >= 0, f"{text!r} not in the log:\n{log}"
    return index


# How the supervisor writes a duration: "94 ms", "0.21 s", "1.5 s".
DURATION = r"[\d.]+ m?s"


def duration(text: str) -> float:
    number, unit = text.split()
    return float(number) / (1000 if unit == "ms" else 1)


def crashing(on_failure: list[str], **keys: Any) -> dict[str, Any]:
    """A program that exits 1 at once and is not restarted, with this on_failure."""
    return {
        "command": ["/bin/sh", "-c", "exit 1"],
        "restart": "never",
        "on_failure": on_failure,
        **keys,
    }


def children(pid: int) -> list[int]:
    """``pid``'s children, zombies included (they stay listed until reaped)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def environ(pid: int) -> dict[str, str]:
    raw = proc_environ(pid)
    return dict(item.decode().partition("=")[::2] for item in raw.split(b"\0") if item)


def read_pid(path: Path, timeout: float = 10) -> int:
    wait_for(path.exists, timeout, what=f"{path.name} to be written")
    return int(path.read_text())


def lines(path: Path) -> list[tuple[str, int]]:
    """sup_double_fork.py's lines: (role, pid)."""
    if not path.exists():
        return []
    return [
        (role, int(pid)) for role, pid in (line.split() for line in path.read_text().splitlines())
    ]


def backoff_decisions(log: str, name: str) -> dict[int, float]:
    """The delays the supervisor chose for ``name``, by attempt, from its log
    ("web: backoff 0.11 s (attempt 3, ...)"; written to 0.01 s)."""
    pattern = re.compile(rf"daemonctx: {re.escape(name)}: backoff ({DURATION}) \(attempt (\d+),")
    return {int(attempt): duration(delay) for delay, attempt in pattern.findall(log)}


def nominal_delay(attempt: int, first: float, cap: float) -> float:
    """The documented delay before start number ``attempt`` of a crash streak:
    0 for the second (the first restart), then ``first`` doubling up to ``cap``."""
    if attempt <= 2:
        return 0.0
    return min(first * 2 ** (attempt - 3), cap)


def within_jitter(gap: float, nominal: float, slack: float = SLACK) -> bool:
    """±15 % jitter, a few ms of rounding below, ``slack`` of scheduling above."""
    return nominal * 0.85 - 0.005 <= gap <= nominal * 1.15 + slack


# -- restarts: backoff and the start limit --------------------------------------------


def test_crash_loop_backs_off_doubling_to_the_cap_with_jitter_and_start_limit_0_never_fails(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """Two programs exit 1 as soon as they start. Each restart's gap, measured
    from the programs' own records, follows the documented sequence: the first
    restart at once, then 0.1, 0.2, 0.4, 0.4, 0.4 s, each within ±15 %; the delays
    the supervisor chose are not the same for both programs (jitter: no retry in
    lock-step). With start_limit = 0 it never gives up: 7 starts within a few
    seconds and never `failed` (the default limit would fail at the 5th)."""
    first, cap, starts = 0.1, 0.4, 7
    files = {name: tmp_path / f"{name}.rec" for name in ("a", "b")}
    supervisors.config(
        {
            name: {
                "command": record(path, "crash", "1"),
                "restart": "always",
                "ready": "started",
                "restart_delay": first,
                "restart_delay_max": cap,
                "start_limit": 0,
                "stable_seconds": 30,
            }
            for name, path in files.items()
        }
    )
    supervisors.foreground()
    for path in files.values():
        wait_for(lambda path=path: len(times(path, "start")) >= starts, 15, f"{starts} starts")

    decided: dict[str, list[float]] = {}
    log = log_text(supervisors)
    for name, path in files.items():
        started = times(path, "start")[:starts]
        gaps = [later - earlier for earlier, later in zip(started, started[1:])]
        nominal = [nominal_delay(attempt, first, cap) for attempt in range(2, starts + 1)]
        assert nominal == [0.0, 0.1, 0.2, 0.4, 0.4, 0.4]
        assert all(within_jitter(g, n) for g, n in zip(gaps, nominal)), (name, gaps)
        # What the supervisor decided (its log), and that it waited just that long.
        decisions = backoff_decisions(log, name)
        assert 2 not in decisions, "the first restart does not wait"
        chosen = [decisions[attempt] for attempt in range(3, starts + 1)]
        assert all(within_jitter(d, n, 0.005) for d, n in zip(chosen, nominal[1:])), chosen
        for gap, delay in zip(gaps[1:], chosen):
            assert delay - 0.006 <= gap <= delay + SLACK, (name, gaps, chosen)
        decided[name] = chosen

        info = supervisors.status(name)
        assert info.state in ("backoff", "starting", "running"), info.text
        assert info.restarts >= starts - 1
        assert f"{name}: failed" not in log_text(supervisors)
    # Jitter: the two programs do not retry in lock-step, and the delays at the
    # cap vary (all six equal by chance: about 1 in 10^5 at 0.01 s resolution).
    assert decided["a"] != decided["b"]
    assert len(set(decided["a"][2:] + decided["b"][2:])) > 1, decided


def test_start_limit_fails_the_program_until_ctl_start_gives_it_a_fresh_count(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    path = tmp_path / "flaky.rec"
    supervisors.config(
        {
            "flaky": {
                "command": record(path, "crash", "1"),
                "restart": "always",
                "restart_delay": 0.05,
                "start_limit": 3,
                "start_limit_interval": 60,
            }
        }
    )
    supervisors.foreground()
    info = supervisors.wait_state("flaky", "failed", timeout=10)
    assert "3 starts within" in info.text, info.text
    assert len(times(path, "start")) == 3
    status = supervisors.ctl("status", "flaky")
    assert status.returncode == 3, status
    assert "failed: 3 starts within 60 s (last: exited 1)" in status.stdout

    started = supervisors.ctl("start", "flaky")
    assert started.returncode == 0, started
    assert "flaky  running" in started.stdout
    supervisors.wait_state("flaky", "failed", timeout=10)
    assert len(times(path, "start")) == 6, "a fresh count: three more starts"


def test_crash_loop_after_start_backs_off_instead_of_restarting_at_full_speed(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """supervisord's worst habit: a program that dies some time after its start
    is restarted at full speed forever. Here each run lasts 0.3 s (it is ready,
    not yet stable), and the waits between exit and next start grow: none, then
    0.2 s, then 0.4 s (±15 %). The status shows the decision meanwhile."""
    path = tmp_path / "crashy.rec"
    supervisors.config(
        {
            "crashy": {
                "command": record(path, "crash", "1", "0.3"),
                "restart": "always",
                "ready": "started",
                "restart_delay": 0.2,
                "stable_seconds": 30,
            }
        }
    )
    supervisors.foreground()
    pattern = re.compile(rf"backoff {DURATION} \(attempt \d+, exited 1 {DURATION} after start\)")

    def backoff_shown() -> str | None:
        text = supervisors.status("crashy").text
        return text if "backoff" in text else None

    text = wait_for(backoff_shown, 10, "a backoff in the status")
    assert pattern.fullmatch(text), text
    wait_for(lambda: len(times(path, "start")) >= 4, 10, "4 starts")
    started, exited = times(path, "start"), times(path, "exit")
    assert all(end - start >= 0.3 for start, end in zip(started, exited)), "each run lasts 0.3 s"
    waits = [start - end for end, start in zip(exited, started[1:4])]
    assert waits[0] < SLACK, f"the first crash restarts at once: {waits}"
    assert within_jitter(waits[1], 0.2), waits
    assert within_jitter(waits[2], 0.4), waits


def test_a_backoff_longer_than_epoll_can_wait_leaves_the_supervisor_and_its_programs_up(
    supervisors: Supervisors,
) -> None:
    """restart_delay = restart_delay_max = 2147483 s (the largest allowed) with its
    ±15 % jitter: past the longest epoll_wait (INT_MAX ms, about 24.8 days) about
    every other time, which raised OverflowError and ended the supervisor, killing
    every program, as soon as the nearest timer was such a backoff. The test
    restarts the crashing instances (a new streak, new delays) until both back off
    past that limit at once; the supervisor stays up, `ctl status` shows each
    instance backing off for 21 to 28 days, and the steady program runs on, the
    same process."""
    longest, limit = 2147483, 2147483.647
    supervisors.config(
        {
            "steady": {"command": [SLEEP, "1000"]},
            "crashy": {
                "command": ["/bin/sh", "-c", "sleep 0.2; exit 1"],
                "instances": 2,
                "restart": "always",
                "ready": "started",
                "restart_delay": longest,
                "restart_delay_max": longest,
                "start_limit": 0,
            },
        }
    )
    proc = supervisors.foreground()
    steady = supervisors.status("steady").pid

    def backing_off() -> list[float] | None:
        """Each instance's wait before its next start, once both back off."""
        assert proc.poll() is None, f"the supervisor ended: {proc.communicate()}"
        with supervisors.client() as client:
            infos = client.status("crashy:0", "crashy:1")
        waits = [info.next_start for info in infos if info.state == "backoff"]
        return [w for w in waits if w is not None] if len(waits) == 2 else None

    for _round in range(40):  # both past the limit: 1 in 4 a round
        waits = wait_for(backing_off, 20, "both instances in backoff")
        assert all(0.84 * longest < w < 1.16 * longest for w in waits), waits
        if min(waits) > limit:
            break
        with supervisors.client() as client:
            client.restart("crashy")
    else:
        pytest.fail("in 40 rounds, the two backoffs never both passed epoll's limit")
    status = supervisors.ctl("status")
    backoff = r"^crashy:\d +backoff (\d+) d( \d+ h)? \(attempt 3, exited 1 "
    shown = [days for days, _hours in re.findall(backoff, status.stdout, re.M)]
    assert len(shown) == 2 and all(24 <= int(days) <= 28 for days in shown), status.stdout
    assert proc.poll() is None and pid_alive(steady), log_text(supervisors)
    assert supervisors.status("steady").pid == steady
    assert "internal error" not in log_text(supervisors)


def test_a_status_answer_is_what_program_info_writes(supervisors: Supervisors) -> None:
    """The supervisor writes each program's status straight from its state machine;
    it must stay the JSON ``ProgramInfo.to_json`` writes, field for field, in
    every state (running, backoff, exited, stopped with its last exit)."""
    supervisors.config(
        {
            "up": {"command": [SLEEP, "1000"]},
            "crash": {
                "command": ["/bin/sh", "-c", "sleep 0.2; exit 3"],
                "ready": 0.05,
                "restart_delay": 30,
                "start_limit": 0,
            },
            "done": {"command": ["/bin/true"], "restart": "never", "ready": "started"},
            "stopped": {"command": [SLEEP, "1000"]},
        }
    )
    supervisors.foreground()
    supervisors.wait_state("up", "running")
    supervisors.wait_state("done", "exited")
    supervisors.wait_state("crash", "backoff")
    assert supervisors.ctl("stop", "stopped").returncode == 0
    with supervisors.client() as client:
        programs = client.request("status")["programs"]
    states = {p["name"]: p["state"] for p in programs}
    assert states == {"up": "running", "crash": "backoff", "done": "exited", "stopped": "stopped"}
    for raw in programs:
        assert list(raw) == list(ProgramInfo.FIELDS), raw
        assert ProgramInfo.from_json(raw).to_json() == raw, raw
    by_name = {p["name"]: p for p in programs}
    assert by_name["stopped"]["last_exit"]["text"] == "killed by SIGTERM"
    assert by_name["crash"]["next_start"] > 0 and by_name["up"]["uptime"] >= 0
    healthy = {name: raw["healthy"] for name, raw in by_name.items()}
    assert healthy == {"up": True, "crash": False, "done": True, "stopped": True}


# What a program says of itself, sent as it is: quotes, backslashes, a tab, control
# characters, DEL, non-ASCII and a lone surrogate's bytes.
ODD_STATUS = """
import os, socket, time
said = 'STATUS=say "hi" \\\\ back\\\\slash\\ttab \\x01\\x1f\\x7f caf\\u00e9 \\u2603 \\ud800'
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
address = "\\0" + os.environ["NOTIFY_SOCKET"][1:]
sock.sendto(said.encode("utf-8", "surrogatepass") + b"\\nREADY=1", address)
time.sleep(1000)
"""


def test_a_status_answer_carries_what_a_program_said_escaped_as_json(
    supervisors: Supervisors,
) -> None:
    """The supervisor writes its status answers itself, not through json's
    encoder: what a program says of itself (its STATUS=) must come back as
    valid, ASCII JSON, the same text the supervisor keeps."""
    supervisors.config({"odd": {"command": [PY, "-c", ODD_STATUS], "ready": "notify"}})
    supervisors.foreground()
    info = supervisors.wait_state("odd", "running")
    assert 'say "hi" \\ back\\slash' in info.status_text, info.status_text
    assert "caf\u00e9 \u2603" in info.status_text, info.status_text
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(supervisors.control)
        sock.sendall(b'{"id": 1, "command": "status", "args": {"names": ["odd"]}}\n')
        line = b""
        while not line.endswith(b"\n"):
            data = sock.recv(65536)
            assert data, line
            line += data
    assert line.isascii() and line.count(b"\n") == 1, line
    [raw] = json.loads(line)["result"]["programs"]
    assert raw["status_text"] == info.status_text
    assert ProgramInfo.from_json(raw).to_json() == raw
    assert json.dumps(raw, ensure_ascii=True).encode() in line


# -- stopping leaves nothing behind ---------------------------------------------------------


@pytest.mark.parametrize("shell_ignores", [True, False], ids=["all-ignore-TERM", "child-ignores"])
def test_stop_kills_the_group_when_a_child_ignores_sigterm(
    supervisors: Supervisors, tmp_path: Path, shell_ignores: bool
) -> None:
    """A shell whose child ignores SIGTERM. When the shell ignores it too, the
    group gets SIGKILL after stop_timeout (0.5 s); when the shell dies of it, the
    rest of its group still has stop_timeout (the shell kept unreaped, so its group
    id stays its own), then SIGKILL. Either way `ctl stop` returns once both are
    gone and reaped (the child, orphaned, is the supervisor's to reap)."""
    pidfile = tmp_path / "child.pid"
    trap = "trap '' TERM; " if shell_ignores else ""
    script = f"{trap}{PY} {IGNORE_TERM} {pidfile} & wait"
    supervisors.config({"svc": {"command": ["/bin/sh", "-c", script], "stop_timeout": 0.5}})
    supervisors.foreground()
    shell = supervisors.wait_state("svc", "running").pid
    child = read_pid(pidfile)
    assert int(proc_stat(child)[1]) == shell
    assert int(proc_stat(child)[2]) == shell, "the child is in the program's process group"

    began = time.monotonic()
    stopped = supervisors.ctl("stop", "svc")
    took = time.monotonic() - began
    assert stopped.returncode == 0, stopped
    assert "svc  stopped" in stopped.stdout
    assert took < 3.0
    for pid in (shell, child):
        wait_gone(pid, 3)
        wait_reaped(pid)
    info = supervisors.status("svc")
    assert info.state == "stopped"
    assert info.last_exit is not None
    log = log_text(supervisors)
    assert took >= 0.5, "SIGKILL only after stop_timeout"
    sent = rf"SIGKILL sent (just now|{DURATION} ago), SIGTERM ignored for 0.5 s"
    assert re.search(sent, log), log
    shell_died_of = "SIGKILL" if shell_ignores else "SIGTERM"
    assert info.last_exit.text == f"killed by {shell_died_of}"


# Injected into the supervisor (PYTHONPATH): its list of what still runs in a
# stopped group also names a planted pid, as when a process it listed was reaped
# by its parent and the pid reused before the supervisor pinned it.
_PLANT_SURVIVOR = """
import os
planted = os.environ.pop("DAEMONCTX_TEST_PLANTED", None)
if planted:
    from daemonctx.supervisor import core

    listed = core.Supervisor._survivors

    def _survivors(self, instance, group):
        return [*listed(self, instance, group), int(planted)]

    core.Supervisor._survivors = _survivors
"""


def test_a_stop_ignores_a_listed_survivor_whose_pid_was_reused(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A process listed as still running in the stopped program's group, then
    reaped and its pid taken by an unrelated process before it is pinned: the
    pinned process is looked at again (not in the group), neither waited for
    nor signalled, and the stop ends with its leader."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(_PLANT_SURVIVOR)
    unrelated = subprocess.Popen([SLEEP, "1000"], start_new_session=True)
    try:
        supervisors.config({"web": {"command": [SLEEP, "1000"], "stop_timeout": 10}})
        env = supervisors.env
        supervisors.env = {
            **env,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(inject), env.get("PYTHONPATH")])),
            "DAEMONCTX_TEST_PLANTED": str(unrelated.pid),
        }
        try:
            supervisors.foreground()
        finally:
            supervisors.env = env
        leader = supervisors.wait_state("web", "running").pid
        began = time.monotonic()
        stopped = supervisors.ctl("stop", "web", timeout=15)  # stop_timeout 10, SIGKILL then
        took = time.monotonic() - began
        assert stopped.returncode == 0, stopped
        assert took < 5, f"the stop waited {took:.1f} s for the unrelated process"
        wait_reaped(leader)
        assert unrelated.poll() is None, "the unrelated process was signalled"
        assert proc_stat(unrelated.pid)[0] in "SR", "the unrelated process was stopped"
    finally:
        unrelated.kill()
        unrelated.wait()


def test_what_a_run_left_running_is_killed_and_named_in_the_log(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A program that forks into the background (its launcher exits 0, its daemon
    escaped the group): the daemon is killed with the run, and the log says so,
    naming it, with what such a program needs (its pidfile)."""
    path = tmp_path / "forks.txt"
    supervisors.config(
        {"web": {"command": [PY, str(DOUBLE_FORK), str(path), "exit"], "restart": "never"}}
    )
    supervisors.foreground()
    supervisors.wait_state("web", "exited")
    grandchild = wait_for(
        lambda: next((int(x.split()[1]) for x in _lines(path) if x.startswith("grandchild")), None),
        what="the daemon's line",
    )
    wait_gone(grandchild, 5)
    line = wait_for(
        lambda: next((x for x in log_text(supervisors).splitlines() if "left running" in x), None),
        what="the log line",
    )
    assert f"web: killed 1 process its run left running: pid {grandchild} (" in line, line
    assert "needs its pidfile (pidfile = PATH)" in line, line


# A line a program may try to add to the supervisor's log: a terminal title, a
# cleared screen, and after a newline a line of the change log of its making.
FORGED = "2026-11-28 00:00:00,000 daemonctx: uid 0 (pid 1): shutdown"
HOSTILE = "x\x1b]0;PWNED\x07\x1b[2J\n" + FORGED
SHOWN = "x\\x1b]0;PWNED\\x07\\x1b[2J\\n" + FORGED

# Leaves a process in a session of its own, exec'd with the argv[0] it chose,
# once it runs (its close-on-exec pipe's end of file says so); then exits 3.
_LEAVES_A_NAMED_ORPHAN = """
import os, sys
read, write = os.pipe()
if os.fork() == 0:
    os.setsid()
    os.execv(sys.argv[1], [sys.argv[2], "1000"])
os.close(write)
os.read(read, 1)
sys.exit(3)
"""


def test_what_a_program_chose_reaches_the_supervisors_log_escaped(
    supervisors: Supervisors,
) -> None:
    """The argv[0] of what a run left running and the lines its on_failure
    printed are the program's words: the log shows them escaped, on the line
    that quotes them; no escape sequence reaches the operator's terminal, and
    no newline forges a line of the log (``uid 0 (pid 1): shutdown``)."""
    alert = "printf 'alert: \\033]0;PWNED2\\007\\033[2J\\033[1Adone\\n'"
    supervisors.config(
        {
            "web": {
                "command": [PY, "-c", _LEAVES_A_NAMED_ORPHAN, SLEEP, HOSTILE],
                "restart": "never",
                "on_failure": ["/bin/sh", "-c", alert],
            }
        }
    )
    supervisors.foreground(booted=False)
    log = wait_log(supervisors, "web: on_failure (pid")
    log = wait_log(supervisors, "web: on_failure: alert")  # the pipe may come later
    lines = log.splitlines()
    assert "\x1b" not in log and "\r" not in log, log
    assert not any(line.startswith(FORGED) for line in lines), log
    (killed,) = [line for line in lines if "left running" in line]
    assert "web: killed 1 process its run left running: pid " in killed
    assert f" ({SHOWN})" in killed, killed
    (alerted,) = [line for line in lines if "web: on_failure: alert" in line]
    assert alerted.endswith("web: on_failure: alert: \\x1b]0;PWNED2\\x07\\x1b[2J\\x1b[1Adone")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_double_forked_grandchild_is_adopted_attributed_and_killed_at_stop(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    path = tmp_path / "forks.txt"
    supervisors.config({"forker": {"command": [PY, str(DOUBLE_FORK), str(path)]}})
    supervisor = supervisors.foreground().pid
    wait_for(lambda: len(lines(path)) == 3, what="the three processes")
    pids = dict(lines(path))
    assert supervisors.wait_state("forker", "running").pid == pids["leader"]
    assert int(proc_stat(pids["leader"])[1]) == supervisor
    grandchild = pids["grandchild"]
    wait_for(lambda: int(proc_stat(grandchild)[1]) == supervisor, what="the subreaper to adopt it")
    assert int(proc_stat(grandchild)[3]) != pids["leader"], "it left the program's session"
    assert environ(grandchild)["DAEMONCTX_PROGRAM"] == "forker"
    wait_reaped(pids["intermediate"])  # not left a zombie

    stopped = supervisors.ctl("stop", "forker")
    assert stopped.returncode == 0, stopped
    for pid in (pids["leader"], grandchild):
        wait_gone(pid, 5)
        wait_reaped(pid)


def test_double_forked_grandchild_dies_with_its_crashed_leader_and_the_program_restarts(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    path = tmp_path / "forks.txt"
    supervisors.config(
        {"forker": {"command": [PY, str(DOUBLE_FORK), str(path)], "restart": "always"}}
    )
    supervisor = supervisors.foreground().pid
    wait_for(lambda: len(lines(path)) == 3, what="the three processes")
    pids = dict(lines(path))
    grandchild = pids["grandchild"]
    wait_for(lambda: int(proc_stat(grandchild)[1]) == supervisor, what="the subreaper to adopt it")

    os.kill(pids["leader"], signal.SIGKILL)  # a crash; the grandchild runs on
    wait_gone(grandchild, 5)
    wait_reaped(grandchild)
    wait_for(lambda: len(lines(path)) == 6, what="the second run's processes")
    second = dict(lines(path)[3:])
    info = supervisors.wait_state("forker", "running")
    assert info.pid == second["leader"] != pids["leader"]
    assert info.restarts == 1
    assert info.last_exit is not None and info.last_exit.text == "killed by SIGKILL"
    assert pid_alive(second["grandchild"])


def test_supervisor_killed_with_sigkill_takes_its_program_with_it(
    supervisors: Supervisors,
) -> None:
    """SIGKILL leaves the supervisor no chance to stop anything: its guard kills
    the program (test_supervisor_main.py has its children and escaped daemons)."""
    supervisors.config({"web": {"command": [SLEEP, "1000"]}})
    proc = supervisors.foreground()
    pid = supervisors.wait_state("web", "running").pid
    assert int(proc_stat(pid)[1]) == proc.pid
    proc.kill()
    proc.wait(10)
    wait_gone(pid, 5)
    assert not pid_alive(pid)


def test_supervisor_killed_with_sigkill_takes_a_running_on_failure_with_it(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    hook = tmp_path / "hook.pid"
    supervisors.config({"web": crashing(["/bin/sh", "-c", f"echo $$ > {hook}; exec {SLEEP} 1000"])})
    proc = supervisors.foreground(booted=False)
    pid = int(wait_for(lambda: hook.exists() and hook.read_text().strip(), what="the hook"))
    assert environ(pid)["DAEMONCTX_FAILED"] == "web"  # the hook, running
    proc.kill()
    proc.wait(10)
    wait_gone(pid, 5)
    assert not pid_alive(pid), "the hook outlived its supervisor"


def test_what_an_on_failure_leaves_in_a_session_of_its_own_dies_at_shutdown(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """The alert's ``setsid sleep &`` is adopted by the supervisor (a subreaper):
    an orderly exit kills it, as it kills the programs; nothing outlives it."""
    left = tmp_path / "left.pid"
    supervisors.config(
        {
            "h": {
                "command": ["/bin/sh", "-c", "exit 2"],
                "restart": "never",
                "on_failure": ["/bin/sh", "-c", f"setsid {SLEEP} 1000 & echo $! > {left}"],
            },
            "keep": {"command": [SLEEP, "1001"]},
        }
    )
    proc = supervisors.foreground(booted=False)
    pid = int(wait_for(lambda: left.exists() and left.read_text().strip(), what="the alert"))
    wait_for(lambda: proc_stat(pid)[1] == str(proc.pid), what="the supervisor to adopt it")
    assert supervisors.ctl("shutdown").returncode == 0
    proc.wait(10)
    wait_gone(pid, 5)
    assert f"killed pid {pid}, left running at the end" in supervisors.log.read_text()


# -- order, instances, critical ---------------------------------------------------------------


def test_after_waits_for_the_dependency_to_be_ready_not_started(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    db, web = tmp_path / "db.rec", tmp_path / "web.rec"
    supervisors.config(
        {
            "db": {
                "command": [PY, str(RECORD), str(db), "notify", "0.5"],
                "ready": "notify",
                "environment": {"PYTHONPATH": str(ROOT)},
            },
            "web": {"command": record(web, "forever"), "after": ["db"]},
        }
    )
    result = supervisors.supervise()
    assert result.returncode == 0, result.stderr
    (db_start,), (db_ready,) = times(db, "start"), times(db, "ready")
    # web is ready once executed: it records its start a moment later.
    (web_start,) = wait_for(lambda: times(web, "start"), what="web's start")
    assert db_ready - db_start >= 0.5
    assert web_start > db_ready, "web started before db was ready"
    assert supervisors.status("web").running and supervisors.status("db").running


@pytest.mark.parametrize(("count", "autostart"), [(520, True), (1200, False)])
def test_a_long_after_chain_boots_in_order_without_recursion(
    supervisors: Supervisors, count: int, autostart: bool
) -> None:
    """Each program ``after`` the next: as many waves as programs. Each wave that
    was ready at once started the next from inside the call that saw it ready,
    two frames a wave: about 490 waves in, ``supervise`` failed with "maximum
    recursion depth exceeded" (started waves or, with autostart = false, held
    ones alike). Now the boot is a loop, and the chain starts, last first."""
    programs: dict[str, dict[str, Any]] = {
        f"p{i}": {
            "command": [SLEEP, "1000"],
            **({"after": [f"p{i + 1}"]} if i < count - 1 else {}),
            **({} if autostart else {"autostart": False}),
        }
        for i in range(count)
    }
    if not autostart:
        programs["up"] = {"command": [SLEEP, "1000"]}
    supervisors.config(programs)
    result = supervisors.supervise(timeout=60)
    assert result.returncode == 0, result.stderr
    with supervisors.client() as client:
        states = {info.name: info.state for info in client.status()}
    assert len(states) == len(programs)
    expected = "running" if autostart else "stopped"
    assert {states[f"p{i}"] for i in range(count)} == {expected}
    if autostart:
        log = log_text(supervisors)
        starts = [log_index(log, f"daemonctx: p{i}: starting") for i in (0, count // 2, count - 1)]
        assert starts == sorted(starts, reverse=True), "p0 starts last, after all the others"
    with supervisors.client() as client:
        client.shutdown(wait=True)


def test_after_a_one_shot_waits_for_its_successful_exit(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """Migrations before the application (compose's service_completed_successfully,
    systemd's Type=oneshot): web starts once migrate has exited 0, not before;
    supervise returns then; migrate stays exited, healthy, and ctl status says 0."""
    migrate, web = tmp_path / "migrate.rec", tmp_path / "web.rec"
    supervisors.config(
        {
            "migrate": {"command": record(migrate, "crash", "0", "0.3"), "ready": "exited"},
            "web": {"command": record(web, "forever"), "after": ["migrate"]},
        }
    )
    result = supervisors.supervise()
    assert result.returncode == 0, result.stderr
    (done,) = times(migrate, "exit")
    (web_start,) = wait_for(lambda: times(web, "start"), what="web's start")
    assert web_start > done, "web started before migrate was done"
    info = supervisors.status("migrate")
    assert info.state == "exited" and info.healthy and info.restarts == 0
    assert supervisors.ctl("status").returncode == 0
    why = supervisors.ctl("why", "migrate").stdout
    assert "then: done: a one-shot is ready at its exit" in why, why
    again = supervisors.ctl("start", "migrate")  # returns once it has run: exit 0
    assert again.returncode == 0 and again.stdout.startswith("migrate  exited 0 ("), again
    assert len(times(migrate, "exit")) == 2


@pytest.mark.parametrize(
    ("migrate", "reason", "line"),
    [
        ({"command": ["/bin/sh", "-c", "echo no database >&2; exit 4"]}, "exited 4", "no database"),
        # no time limit unless start_timeout is given (systemd's TimeoutStartSec= for
        # Type=oneshot): given, a migration hung on a lock is stopped then
        (
            {
                "command": ["/bin/sh", "-c", f"echo waiting for the lock >&2; exec {SLEEP} 1000"],
                "start_timeout": 0.5,
            },
            "not done within 0.5 s",
            "waiting for the lock",
        ),
    ],
    ids=["fails", "hangs"],
)
def test_a_one_shot_that_fails_at_boot_fails_supervise_and_nothing_after_it_starts(
    supervisors: Supervisors, tmp_path: Path, migrate: dict[str, Any], reason: str, line: str
) -> None:
    web = tmp_path / "web.rec"
    supervisors.config(
        {
            "migrate": {**migrate, "ready": "exited"},
            "web": {"command": record(web, "forever"), "after": ["migrate"]},
        }
    )
    result = supervisors.supervise()
    assert result.returncode == 1
    assert f"migrate failed to start: {reason}" in result.stderr, result.stderr
    assert f"migrate: {line}" in result.stderr
    assert not web.exists() and supervisors.processes() == []


def test_instances_run_as_separate_processes_named_by_index(supervisors: Supervisors) -> None:
    supervisors.config({"web": {"command": [SLEEP, "1000"], "instances": 3}})
    supervisors.foreground()

    def all_running() -> list[ProgramInfo] | None:
        with supervisors.client() as client:
            infos = client.status("web")
        return infos if all(info.running for info in infos) else None

    infos = wait_for(all_running, what="three running instances")
    assert [info.name for info in infos] == ["web:0", "web:1", "web:2"]
    assert {info.program for info in infos} == {"web"}
    pids = [info.pid for info in infos]
    assert len(set(pids)) == 3 and None not in pids

    def mark(pid: int) -> str | None:
        return environ(pid).get("DAEMONCTX_PROGRAM")

    for info in infos:
        pid = info.pid
        assert pid is not None
        # The supervisor sees the exec succeed before the kernel has set up the new
        # image's environment: /proc/<pid>/environ is empty for that moment.
        assert wait_for(functools.partial(mark, pid), what="its environ") == info.name

    stopped = supervisors.ctl("stop", "web")
    assert stopped.returncode == 0, stopped
    assert stopped.stdout.count("stopped") == 3, stopped.stdout
    for pid in pids:
        assert pid is not None
        wait_gone(pid, 5)
    with supervisors.client() as client:
        assert [info.state for info in client.status("web")] == ["stopped"] * 3


def test_critical_program_failing_stops_everything_with_its_exit_status(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    supervisors.config(
        {
            "other": {"command": [SLEEP, "1000"]},
            "crit": {
                "command": ["/bin/sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done; exit 7"],
                "restart": "never",
                "critical": True,
            },
        }
    )
    proc = supervisors.foreground()
    other = supervisors.wait_state("other", "running").pid
    supervisors.wait_state("crit", "running")
    wait_log(supervisors, "every program is ready")
    gate.touch()  # crit exits 7, after the boot completed
    assert proc.wait(10) == 7
    assert other is not None
    wait_gone(other, 5)
    assert "crit is critical and failed for good" in log_text(supervisors)
    wait_for(lambda: not supervisors.processes(), 5, "no process of the test left")


def test_autostart_false_is_left_stopped_until_ctl_start_and_success_codes_end_it(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A one-shot job defined beside a service (supervisord's autostart = false and
    exitcodes): the boot neither starts it nor waits for it; ctl start runs it; its
    exit 2, listed in success_codes, ends it under on-failure, with no restart."""
    backup = tmp_path / "backup.rec"
    supervisors.config(
        {
            "web": {"command": [SLEEP, "1000"]},
            "backup": {
                "command": record(backup, "crash", "2", "0.1"),
                "autostart": False,
                "success_codes": [0, 2],
            },
        }
    )
    result = supervisors.supervise()
    assert result.returncode == 0, result.stderr
    with supervisors.client() as client:
        answer = client.request("status")
    states = {info["name"]: (info["state"], info["pid"]) for info in answer["programs"]}
    assert answer["supervisor"]["state"] == "running"
    assert states["backup"] == ("stopped", None) and states["web"][0] == "running"
    assert "backup" not in log_text(supervisors).split("every program is ready")[0]

    started = supervisors.ctl("start", "backup")
    assert started.returncode == 0, started
    info = supervisors.wait_state("backup", "exited")
    assert info.text.startswith("exited 2 (") and info.restarts == 0
    assert len(events(backup, "start")) == 1
    why = supervisors.ctl("why", "backup")
    assert "not restarted (restart = 'on-failure': exited 2 is a success)" in why.stdout, why


@pytest.mark.parametrize(("code", "codes", "exit_status"), [(3, [0, 3], None), (0, [3], 1)])
def test_a_critical_program_has_failed_by_its_success_codes(
    supervisors: Supervisors, code: int, codes: list[int], exit_status: int | None
) -> None:
    """An exit 3 listed in success_codes is no failure: the supervisor runs on. An
    exit 0 not listed is one: it exits 1 (0 would say success)."""
    supervisors.config(
        {
            "other": {"command": [SLEEP, "1000"]},
            "job": {
                "command": ["/bin/sh", "-c", f"exit {code}"],
                "restart": "never",
                "critical": True,
                "success_codes": codes,
                "after": ["other"],
            },
        }
    )
    proc = supervisors.foreground(booted=False)
    if exit_status is not None:
        assert proc.wait(10) == exit_status
        assert "job is critical and failed for good" in log_text(supervisors)
        return
    assert supervisors.wait_state("job", "exited").text.startswith(f"exited {code} (")
    with supervisors.client() as client:
        assert client.request("status")["supervisor"]["state"] == "running"
    assert proc.poll() is None and supervisors.status("other").running


def test_on_failure_runs_at_each_failure_told_how_never_at_a_stop(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """An alert: on_failure runs after a crash (with what the supervisor did, the
    reason and the exit code), not after an operator's stop; its output and its
    exit status go to the supervisor's log; it is not taken for the program's."""
    alerts = tmp_path / "alerts"
    gate = tmp_path / "gate"
    hook = f"env | grep ^DAEMONCTX_ >> {alerts}; echo --- >> {alerts}; echo paged on-call; exit 5"
    supervisors.config(
        {
            "web": {
                "command": ["/bin/sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done; exit 3"],
                "restart": "never",
                "on_failure": ["/bin/sh", "-c", hook],
            }
        }
    )
    supervisors.env["DAEMONCTX_PROGRAM"] = "outer"  # itself run by another supervisor
    supervisors.foreground()
    assert supervisors.ctl("restart", "web").returncode == 0  # a stop: no alert
    gate.touch()  # web exits 3: a failure
    wait_log(supervisors, "web: on_failure (pid")
    log = wait_log(supervisors, "web: on_failure: paged on-call")  # the pipe may come later
    (block,) = alerts.read_text().split("---\n")[:-1]  # one alert: the crash's
    variables = dict(line.split("=", 1) for line in block.splitlines())
    assert variables["DAEMONCTX_FAILED"] == "web" and variables["DAEMONCTX_STATE"] == "exited"
    assert variables["DAEMONCTX_EXIT_CODE"] == "3"
    assert variables["DAEMONCTX_REASON"].startswith("exited 3 ")
    assert variables["DAEMONCTX_SUPERVISOR"] == supervisors.control
    assert "DAEMONCTX_PROGRAM" not in variables
    assert "web: on_failure: paged on-call" in log
    assert re.search(r"web: on_failure \(pid \d+\) exited 5", log), log
    assert supervisors.status("web").state == "exited"


def test_an_on_failure_that_cannot_have_a_descriptor_is_skipped_and_the_supervisor_goes_on(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """Out of descriptors (EMFILE) when a failure's alert starts: the alert is
    skipped and logged, the supervisor goes on. (Its pipe was made outside the
    error handling: the supervisor exited "supervise: Too many open files" and
    SIGKILLed every program, 100 alerts at once under a tight limit.)"""
    import resource

    gate = tmp_path / "gate"
    supervisors.config(
        {
            "web": {
                "command": ["/bin/sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done; exit 3"],
                "restart": "never",
                "on_failure": ["/bin/true"],
            },
            "db": {"command": [SLEEP, "1000"]},
        }
    )
    proc = supervisors.foreground()
    db = supervisors.status("db").pid
    limits = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (8, limits[1]))  # no new descriptor
    try:
        gate.touch()  # web exits 3: a failure, and its alert
        wait_log(supervisors, "web: on_failure cannot start: Too many open files")
    finally:
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, limits)
    assert proc.poll() is None
    assert supervisors.status("web").state == "exited"
    assert supervisors.status("db").pid == db


def test_on_failure_output_is_read_to_its_end_when_a_process_it_left_holds_the_pipe(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """The hook leaves a process in the background with its stdout: once the hook
    has exited, its lines are logged, and the supervisor lets go of the pipe."""
    left = tmp_path / "left.pid"
    script = f"{SLEEP} 1000 & echo $! > {left}; echo alert one; echo alert two"
    supervisors.config({"web": crashing(["/bin/sh", "-c", script])})
    proc = supervisors.foreground(booted=False)
    log = wait_log(supervisors, "web: on_failure (pid")
    assert log.index("on_failure: alert two") < log.index("web: on_failure (pid"), log
    pid = int(left.read_text())
    pipe = os.readlink(f"/proc/{pid}/fd/1")
    assert pipe.startswith("pipe:")
    held = []
    for fd in os.listdir(f"/proc/{proc.pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            held.append(os.readlink(f"/proc/{proc.pid}/fd/{fd}"))
    assert pipe not in held, "the supervisor still reads the hook's pipe"


def test_failures_while_on_failure_runs_make_it_run_once_more_told_the_last_state(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A crash loop: the alert about the first crash is slow; the crashes meanwhile
    are told in one more run at its end, with the state then: the supervisor gave up."""
    states = tmp_path / "states"
    hook = f"sleep 0.5; echo $DAEMONCTX_STATE >> {states}"
    supervisors.config(
        {
            "web": {
                "command": ["/bin/sh", "-c", "exit 1"],
                "start_limit": 3,
                "restart_delay": 0.05,
                "on_failure": ["/bin/sh", "-c", hook],
            }
        }
    )
    supervisors.foreground(booted=False)
    lines = wait_for(lambda: states.exists() and states.read_text().split()[1:] and states, 10)
    assert lines.read_text().split() == ["starting", "failed"]
    assert supervisors.status("web").state == "failed"


def test_an_on_failure_that_floods_its_output_is_cut_off_after_what_is_logged(
    supervisors: Supervisors,
) -> None:
    supervisors.config({"web": crashing(["yes", "alert"])})
    supervisors.foreground(booted=False)
    log = wait_log(supervisors, "web: on_failure (pid")
    assert re.search(r"web: on_failure \(pid \d+\) killed by SIGPIPE", log), log
    assert log.count("web: on_failure: alert") == 20
    assert "web: on_failure: (more lines not logged)" in log


def test_on_failure_is_killed_at_its_timeout_and_a_critical_failure_waits_for_it(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """The critical program's alert runs to its end before the supervisor exits;
    another program's alert that hangs is killed at on_failure_timeout."""
    sent = tmp_path / "sent"
    hanging = tmp_path / "hanging.pid"
    supervisors.config(
        {
            "flaky": crashing(
                ["/bin/sh", "-c", f"echo $$ > {hanging}; exec sleep 1000"], on_failure_timeout=0.5
            ),
            "core": {
                "command": ["/bin/sh", "-c", "sleep 1; exit 7"],
                "restart": "never",
                "critical": True,
                "on_failure": ["/bin/sh", "-c", f"sleep 0.3; echo $DAEMONCTX_REASON > {sent}"],
            },
        }
    )
    proc = supervisors.foreground(booted=False)
    pid = int(wait_for(lambda: hanging.exists() and hanging.read_text().strip(), what="the hook"))
    wait_log(supervisors, f"flaky: on_failure (pid {pid}) still runs after 0.5 s: killed")
    wait_gone(pid, 5)
    assert proc.wait(10) == 7
    assert sent.read_text().startswith("exited 7 "), "the supervisor exited before its alert"
    assert "core: on_failure (pid" in log_text(supervisors)


# -- readiness -----------------------------------------------------------------------------------


def test_notify_ready_only_from_the_program_and_its_status_text_is_shown(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    supervisors.config(
        {
            "svc": {
                "command": [PY, str(NOTIFY_GATE), str(gate)],
                "ready": "notify",
                "start_timeout": 60,
            }
        }
    )
    supervisors.foreground(booted=False)  # the boot waits for the gate
    info = wait_for(
        lambda: (i := supervisors.status("svc")).status_text == "waiting for the gate" and i,
        what="the program's STATUS=",
    )
    assert info.state == "starting" and info.pid is not None
    assert info.text.endswith(": waiting for the gate"), info.text

    # A READY=1 from a process that is not the program's: this test.
    address = environ(info.pid)["NOTIFY_SOCKET"]
    assert address.startswith("@")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1", "\0" + address[1:])
    wait_log(supervisors, f"ignored a notification from pid {os.getpid()}")
    assert supervisors.status("svc").state == "starting"
    status = supervisors.ctl("status", "svc")
    assert status.returncode == 3, status
    assert "waiting for the gate" in status.stdout

    gate.touch()  # the program's own READY=1
    info = supervisors.wait_state("svc", "running")
    assert info.status_text == "serving"
    status = supervisors.ctl("status", "svc")
    assert status.returncode == 0, status
    assert "serving" in status.stdout


# The program stops its supervisor, has a process of its own session-less
# send READY=1 and exit, reaps it, and forks a child of its session that takes
# the sender's pid (a new pid namespace: no other process takes it first).
PID_THIEF = """
import os, signal, socket, time
address = "\\0" + os.environ["NOTIFY_SOCKET"][1:]
supervisor = os.getppid()
os.kill(supervisor, signal.SIGSTOP)
while open(f"/proc/{supervisor}/stat").read().rsplit(")", 1)[1].split()[0] != "T":
    time.sleep(0.001)
sender = os.fork()
if sender == 0:
    os.setsid()  # not the program's process
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", address)
    os._exit(0)
os.waitpid(sender, 0)
with open("/proc/sys/kernel/ns_last_pid", "w") as f:
    f.write(str(sender - 1))
child = os.fork()
if child == 0:  # in the program's session, with the sender's pid
    time.sleep(1000)
    os._exit(0)
said = f"STATUS=reused {sender}" if child == sender else f"STATUS=missed {sender} {child}"
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(said.encode(), address)
os.kill(supervisor, signal.SIGCONT)
time.sleep(1000)
"""


@needs_root
@needs_pid_namespace
def test_a_notification_from_a_sender_gone_since_is_not_credited_to_who_took_its_pid(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A READY=1 read after its sender was reaped and its pid taken by a process
    of the program: the kernel's credentials still give the pid, which names
    the new process. With SCM_PIDFD (Linux 6.5) the supervisor sees the sender
    is gone and drops the message; it used to credit it to the program."""
    if tuple(int(part) for part in os.uname().release.split(".")[:2]) < (6, 5):
        pytest.skip("needs SO_PASSPIDFD (Linux 6.5)")
    program = tmp_path / "thief.py"
    program.write_text(PID_THIEF)
    supervisors.config(
        {"thief": {"command": [PY, str(program)], "ready": "notify", "start_timeout": 60}}
    )
    # A shell as the namespace's PID 1: PID 1 itself cannot be stopped from inside.
    supervisors.foreground(prefix=[*UNSHARE_PID, "sh", "-c", '"$@"; exit $?', "sh"], booted=False)
    info = wait_for(lambda: (i := supervisors.status("thief")).status_text and i, what="STATUS=")
    assert info.status_text.startswith("reused "), info.status_text
    assert info.state == "starting", info
    sender = info.status_text.split()[1]
    wait_log(supervisors, f"ignored a notification from pid {sender}: its sender has exited")


def test_descriptors_sent_with_notifications_are_closed_at_once(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """sd_notify_barrier() sends a pipe's end and waits for it to be closed;
    anyone may send descriptors to the socket. Each one received is closed at
    once, a flood of them included, and a program's READY=1 sent with some
    still counts."""
    program = tmp_path / "ready_with_fds.py"
    program.write_text(
        "import os, socket, time\n"
        "address = '\\0' + os.environ['NOTIFY_SOCKET'][1:]\n"
        "sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "sock.connect(address)\n"
        "r, w = os.pipe()\n"
        "socket.send_fds(sock, [b'READY=1'], [w] * 200)\n"
        "os.close(w)\n"
        "os.read(r, 1)  # end of file: the supervisor closed its copies\n"
        "sock.send(b'STATUS=closed')\n"
        "time.sleep(1000)\n"
    )
    supervisors.config({"svc": {"command": [PY, str(program)], "ready": "notify"}})
    supervisors.foreground(booted=False)
    supervisor = supervisors.foreground_pid
    info = wait_for(lambda: (i := supervisors.status("svc")).status_text and i, what="STATUS=")
    assert info.state == "running" and info.status_text == "closed", info
    pidfds = lambda: sum("pidfd" in target for target in proc_fds(supervisor).values())  # noqa: E731
    before = pidfds()
    address = "\0" + environ(info.pid)["NOTIFY_SOCKET"][1:]
    r, w = os.pipe()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            for _ in range(100):  # not a program's: ignored, and its descriptors closed
                socket.send_fds(sock, [b"READY=1"], [w] * 250)
        os.close(w)
        w = -1
        ready, _, _ = select.select([r], [], [], 10)
        assert ready and os.read(r, 1) == b"", "the supervisor holds a copy"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    # and the pidfd each sender came with (the last one's just after its descriptors)
    wait_for(lambda: pidfds() == before, 5, what="the senders' pidfds closed")


def test_a_program_that_stops_sending_watchdog_1_is_stopped_and_restarted(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """watchdog = 0.5: WATCHDOG=1 every 0.1 s for 1.5 s keeps it running (three
    intervals: the pings count); then it hangs, and half a second later it is
    stopped and started again, as after a crash. It learnt its interval from
    WATCHDOG_USEC, as sd_watchdog_enabled() does."""
    rec = tmp_path / "wd.rec"
    supervisors.config(
        {
            "hangs": {
                "command": [PY, str(WATCHDOG), str(rec), "ping", "1.5"],
                "environment": {"PYTHONPATH": str(ROOT)},
                "watchdog": 0.5,
            }
        }
    )
    supervisors.foreground()
    first = supervisors.status("hangs").pid
    assert environ(first)["WATCHDOG_USEC"] == "500000"
    second = wait_for(lambda: events(rec, "start")[1:], 10, what="a second start")
    (hang,) = [when for _event, pid, when in events(rec, "hang") if pid == first]
    # its last WATCHDOG=1 came at most a ping's period (0.1 s) before "hang"
    assert second[0][2] - hang >= 0.4, "stopped before the watchdog's interval"
    why = supervisors.ctl("why", "hangs").stdout
    assert "stopped by no WATCHDOG=1 within 0.5 s (SIGTERM)" in why, why
    assert "then: restarted at once" in why, why
    assert supervisors.status("hangs").restarts >= 1


def test_watchdog_trigger_restarts_at_once_and_no_watchdog_means_no_variable(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    rec, plain = tmp_path / "trigger.rec", tmp_path / "plain.rec"
    env = {"PYTHONPATH": str(ROOT)}
    supervisors.config(
        {
            "trigger": {
                "command": [PY, str(WATCHDOG), str(rec), "trigger", "0.2"],
                "environment": env,
                "watchdog": 60,
            },
            "plain": {"command": [PY, str(WATCHDOG), str(plain), "ping", "1"], "environment": env},
        }
    )
    supervisors.foreground()
    starts = wait_for(lambda: events(rec, "start")[1:], 10, what="a restart after the trigger")
    (trigger,) = times(rec, "trigger")[:1]
    assert starts[0][2] - trigger < 10, "the trigger waited for the 60 s interval"
    wait_for(lambda: events(plain, "no-watchdog"), 10, what="plain's record")
    assert "it sent WATCHDOG=trigger" in supervisors.ctl("why", "trigger").stdout


def test_supervise_fails_when_ready_1_never_comes_and_leaves_nothing(
    supervisors: Supervisors,
) -> None:
    supervisors.config(
        {"mute": {"command": [SLEEP, "1000"], "ready": "notify", "start_timeout": 0.5}}
    )
    began = time.monotonic()
    result = supervisors.supervise()
    assert result.returncode != 0
    assert 0.5 <= time.monotonic() - began < 10
    assert "mute failed to start" in result.stderr, result.stderr
    pid = logged_pid(supervisors, "mute")
    assert not pid_alive(pid), "stopped before supervise returned"
    assert not os.path.exists(supervisors.control)
    wait_for(lambda: not supervisors.processes(), 5, "no process of the test left")


def test_supervise_names_the_missing_ready_1_as_the_reason(supervisors: Supervisors) -> None:
    supervisors.config(
        {"mute": {"command": [SLEEP, "1000"], "ready": "notify", "start_timeout": 0.5}}
    )
    result = supervisors.supervise()
    assert result.returncode != 0
    assert "mute failed to start: no READY=1 within 0.5 s" in result.stderr, result.stderr


def test_ctl_start_answers_at_the_first_failed_start_not_after_the_retry(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A start that times out is retried at once (the first failure of a streak),
    but ``ctl start`` answers at that first failure, as the boot does and as
    ``systemctl start`` does: it used to wait for the retry too, 2 x start_timeout."""
    rec = tmp_path / "mute.rec"
    supervisors.config(
        {
            "web": {"command": [SLEEP, "1000"]},
            "mute": {
                "command": record(rec, "forever"),
                "ready": "notify",
                "start_timeout": 0.5,
                "autostart": False,
            },
        }
    )
    assert supervisors.supervise().returncode == 0
    started = supervisors.ctl("start", "mute")
    assert started.returncode == 1, started
    # Answered as the retry began: starting again, attempt 2, and why the first failed.
    assert re.search(r"^mute\s+starting", started.stdout, re.M), started.stdout
    assert "attempt 2" in started.stdout and "no READY=1 within 0.5 s" in started.stdout, started
    assert len(events(rec, "start")) <= 2
    # The retry goes on, and so does the backoff after it.
    supervisors.wait_state("mute", "backoff")
    assert supervisors.ctl("stop", "mute").returncode == 0


@pytest.mark.parametrize(
    "keys", [{"autostart": False}, {"after": ["slow"]}], ids=["autostart-false", "a-later-wave"]
)
def test_a_program_ctl_starts_during_the_boot_is_retried_as_at_any_other_time(
    supervisors: Supervisors, tmp_path: Path, keys: dict[str, Any]
) -> None:
    """The boot gives its own programs no second try (it fails instead); a program
    it does not wait for yet, started by hand meanwhile, was given none either, and
    stayed "starting" with no process: ctl start said a retry was under way."""
    rec = tmp_path / "crash.rec"
    supervisors.config(
        {
            "slow": {"command": [SLEEP, "1000"], "ready": 60},  # the boot lasts
            "crash": {"command": record(rec, "crash", "3"), "ready": 1.0, **keys},
        }
    )
    supervisors.foreground(booted=False)
    started = supervisors.ctl("start", "crash")
    assert started.returncode == 1, started
    wait_for(lambda: len(events(rec, "start")) >= 3, 10, what="its retries")
    with supervisors.client() as client:
        assert client.request("status")["supervisor"]["state"] == "starting", "still booting"


def test_a_program_waiting_for_its_wave_says_so_and_is_not_healthy_yet(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """During the boot, a program whose wave has not come: `stopped, waiting for
    slow to be ready`, not healthy, and `ctl status` exits 3 (it showed
    `stopped`, healthy, as a program stopped on purpose, and exited 0). Waves are
    strict: late comes after db, which is ready at once, but db's wave is slow's
    too, and the boot waits for slow: that is what late says (not "db")."""
    gate = tmp_path / "gate"
    supervisors.config(
        {
            "db": {"command": [SLEEP, "1000"]},
            "slow": {"command": [PY, str(NOTIFY_GATE), str(gate)], "ready": "notify"},
            "late": {"command": [SLEEP, "1000"], "after": ["db"]},
        }
    )
    supervisors.foreground(booted=False)
    supervisors.wait_state("db", "running")
    late = supervisors.status("late")
    assert (late.state, late.text, late.healthy) == (
        "stopped",
        "stopped, waiting for slow to be ready",
        False,
    )
    result = supervisors.ctl("status")
    assert result.returncode == 3, result
    assert "late  stopped, waiting for slow to be ready\n" in result.stdout
    gate.touch()
    late = supervisors.wait_state("late", "running")
    assert late.healthy
    assert supervisors.ctl("status").returncode == 0


def test_a_program_restarted_during_the_boot_is_still_waited_for(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """ctl restart (a stop, then a start) during the boot: the stop made the boot
    pass the program by (a program stopped before its turn is left stopped),
    though it was started again. The boot then said every program was ready, and
    started what comes after it, before it was."""
    rec = tmp_path / "after.rec"
    supervisors.config(
        {
            "slow": {"command": [SLEEP, "1000"], "ready": 60},
            "later": {"command": record(rec, "forever"), "after": ["slow"]},
        }
    )
    supervisors.foreground(booted=False)
    restarted = supervisors.popen(
        [*supervisors.command(), "ctl", "--control", supervisors.control, "restart", "slow"],
        env=supervisors.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: log_text(supervisors).count("slow: starting") == 2, 10,
             what="slow's second start")  # fmt: skip
    with supervisors.client() as client:
        assert client.request("status")["supervisor"]["state"] == "starting"
    assert supervisors.status("later").state == "stopped" and not rec.exists()
    restarted.kill()
    restarted.wait()


def test_a_program_stopped_then_started_during_the_boot_is_waited_for_again(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """Stopped before it was ready, the boot passes it by; started again, the boot
    waits for it as for the others, and its failed start fails the boot (it used
    to say every program was ready, that one failed)."""
    marker = tmp_path / "ran"
    second_run_fails = f'[ -e "{marker}" ] && exit 3; : > "{marker}"; exec sleep 1000'
    supervisors.config(
        {
            "slow": {"command": [SLEEP, "1000"], "ready": 60},
            "crash": {"command": ["/bin/sh", "-c", second_run_fails], "ready": 30.0},
        }
    )
    proc = supervisors.foreground(booted=False)
    wait_for(marker.exists, what="crash's first run")
    assert supervisors.ctl("stop", "crash").returncode == 0
    assert supervisors.ctl("start", "crash").returncode == 1
    assert proc.wait(timeout=20) == 1
    assert proc.stderr is not None
    assert "crash failed to start" in proc.stderr.read()


# -- supervise failing leaves nothing ------------------------------------------------------------


@pytest.mark.parametrize("foreground", [False, True], ids=["detached", "foreground"])
def test_supervise_fails_naming_the_program_its_status_and_stderr_and_leaves_nothing(
    supervisors: Supervisors, tmp_path: Path, foreground: bool
) -> None:
    """The reason on the error line, then the program's last lines of stderr, each
    on a line of its own, indented (they were one line, joined by a literal \\n),
    and each still made safe to print (an escape sequence shown, not sent)."""
    good = tmp_path / "good.rec"
    script = "echo first complaint >&2; printf 'second \\033[2J complaint\\n' >&2; exit 3"
    supervisors.config(
        {
            "good": {"command": record(good, "forever")},
            "bad": {"command": ["/bin/sh", "-c", script], "ready": 1.0, "after": ["good"]},
        }
    )
    if foreground:
        result = supervisors.daemonctx(
            "supervise", "--config", str(supervisors.config_path), "--foreground", timeout=30
        )
    else:
        result = supervisors.supervise()
    assert result.returncode == 1
    err = result.stderr
    *_before, head, first, second = err.splitlines()
    assert re.fullmatch(
        rf"daemonctx: error: bad failed to start: exited 3 {DURATION} after start, before ready",
        head,
    ), err
    assert [first, second] == ["  bad: first complaint", "  bad: second \\x1b[2J complaint"], err
    assert foreground or not _before, err
    assert not pid_alive(logged_pid(supervisors, "good")), "the program started first is stopped"
    assert not os.path.exists(supervisors.control)
    wait_for(lambda: not supervisors.processes(), 5, "no process of the test left")


def test_a_program_ready_once_has_started_whatever_it_does_next_in_its_wave(
    supervisors: Supervisors,
) -> None:
    """In a wave still waiting for a slower program, a one-shot that was ready and
    exited 0 (``restart = "never"``), and one that was ready and crashed, have
    started: ``supervise`` succeeds (before, it failed naming either, or not,
    depending on which program of the wave was faster)."""
    supervisors.config(
        {
            "slow": {"command": [SLEEP, "1000"], "ready": 0.5},
            "oneshot": {"command": ["/bin/true"], "restart": "never"},
            "flaky": {"command": ["/bin/sh", "-c", "sleep 0.05; exit 1"], "start_limit": 0},
        }
    )
    result = supervisors.supervise()
    assert result.returncode == 0, result.stderr
    with supervisors.client() as client:
        infos = {info.name: info for info in client.status()}
    assert infos["slow"].state == "running"
    assert infos["oneshot"].state == "exited", infos["oneshot"]
    assert infos["oneshot"].last_exit is not None and infos["oneshot"].last_exit.code == 0
    assert infos["flaky"].restarts >= 1, infos["flaky"]
    with supervisors.client() as client:
        client.shutdown(wait=True)


def test_a_critical_program_failed_for_good_during_the_boot_fails_it(
    supervisors: Supervisors,
) -> None:
    """A critical program that started, then failed for good while its wave still
    waited: ``supervise`` fails naming it, and leaves nothing running (rather
    than report success, or keep running without it)."""
    supervisors.config(
        {
            "slow": {"command": [SLEEP, "1000"], "ready": 0.5},
            "crit": {
                "command": ["/bin/sh", "-c", "sleep 0.05; exit 3"],
                "restart": "never",
                "critical": True,
            },
        }
    )
    result = supervisors.supervise()
    assert result.returncode != 0
    assert "crit is critical and failed for good: exited 3" in result.stderr, result.stderr
    assert not os.path.exists(supervisors.control)
    wait_for(lambda: not supervisors.processes(), 5, "no process of the test left")


def test_missing_executable_fails_in_the_foreground_before_anything_starts(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    good = tmp_path / "good.rec"
    supervisors.config(
        {
            "good": {"command": record(good, "forever")},
            "bad": {"command": ["/nonexistent/daemonctx-no-such-program"]},
        }
    )
    proc = supervisors.foreground()
    assert proc.wait(10) != 0
    _out, err = proc.communicate()
    assert "/nonexistent/daemonctx-no-such-program" in err and "bad" in err, err
    assert not good.exists(), "nothing may start"
    assert not os.path.exists(supervisors.control)
    assert not supervisors.processes()


def test_a_missing_on_failure_command_fails_in_the_foreground(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    good = tmp_path / "good.rec"
    supervisors.config(
        {"good": {"command": record(good, "forever"), "on_failure": ["page-oncall-typo"]}}
    )
    result = supervisors.supervise()
    assert result.returncode != 0
    assert result.stderr.strip().endswith(
        "[program.good] on_failure: page-oncall-typo: not found in PATH"
    ), result.stderr
    assert not good.exists() and not supervisors.processes()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        # Saved with Windows line endings: the #! line names "/bin/sh\r". Popen would
        # fail at every start with "No such file or directory" naming the script.
        (
            b"#!/bin/sh\r\nexec sleep 1000\r\n",
            "its interpreter '/bin/sh\\r' (the #! line) is not found (a Windows line ending?)",
        ),
        # An empty file marked executable: exec refuses it at every start.
        (b"", "an empty file: exec cannot run it (Exec format error)"),
    ],
    ids=["crlf", "empty"],
)
def test_a_program_that_cannot_run_fails_in_the_foreground(
    supervisors: Supervisors, tmp_path: Path, content: bytes, why: str
) -> None:
    """What exec would refuse at every start is said before anything starts."""
    good = tmp_path / "good.rec"
    program = tmp_path / "web.sh"
    program.write_bytes(content)
    program.chmod(0o755)
    supervisors.config(
        {"good": {"command": record(good, "forever")}, "web": {"command": [str(program)]}}
    )
    result = supervisors.supervise()
    assert result.returncode != 0
    assert result.stderr.strip().endswith(f"[program.web] command: {program}: {why}"), result.stderr
    assert not good.exists() and not supervisors.processes()


def _env_script(tmp_path: Path) -> Path:
    """tmp/web, "#!/usr/bin/env mytool", and mytool (which runs sleep) in tmp/bin,
    a folder no PATH names unless the test says so."""
    if shutil.which("env") != "/usr/bin/env":
        pytest.skip("needs /usr/bin/env")
    (tmp_path / "bin").mkdir()
    for path, text in ((tmp_path / "bin" / "mytool", "#!/bin/sh\nexec sleep 1000\n"),
                       (tmp_path / "web", "#!/usr/bin/env mytool\n")):  # fmt: skip
        path.write_text(text)
        path.chmod(0o755)
    return tmp_path / "web"


def test_env_in_a_shebang_is_looked_up_in_the_program_s_path(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """#!/usr/bin/env mytool, mytool in a folder only the program's PATH names: it
    starts; without that PATH, the check names mytool before anything starts."""
    script = _env_script(tmp_path)
    supervisors.config({"web": {"command": [str(script)]}})
    result = supervisors.supervise()
    assert result.returncode != 0
    assert result.stderr.strip().endswith(
        "[program.web] command: "
        f"{script}: 'mytool', which its #! line runs through /usr/bin/env, is not found in PATH"
    ), result.stderr
    assert not supervisors.processes()
    path = f"{tmp_path / 'bin'}:/usr/bin:/bin"
    supervisors.config({"web": {"command": [str(script)], "environment": {"PATH": path}}})
    supervisors.foreground()
    result = supervisors.ctl("status", "web")
    assert result.returncode == 0 and "running" in result.stdout, result.stdout


def test_one_script_run_with_two_paths_is_judged_for_each(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """The check reads a script once for all the programs that run it, but judges
    env's NAME against each program's own PATH."""
    script = _env_script(tmp_path)
    found = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    supervisors.config(
        {
            "good": {"command": [str(script)], "environment": found},
            "bad": {"command": [str(script)], "environment": {"PATH": "/usr/bin:/bin"}},
        }
    )
    result = supervisors.supervise()
    assert result.returncode != 0
    assert "[program.bad] command: " in result.stderr, result.stderr
    assert "[program.good]" not in result.stderr and not supervisors.processes()


def test_env_in_a_shebang_is_not_judged_when_an_environment_file_may_set_path(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """The file is read at each start, and wins: its PATH finds mytool."""
    script = _env_script(tmp_path)
    env_file = tmp_path / "web.env"
    env_file.write_text(f"PATH={tmp_path / 'bin'}:/usr/bin:/bin\n")
    supervisors.config(
        {
            "web": {"command": [str(script)], "environment_file": str(env_file)},
            "bare": {"command": ["mytool"], "environment_file": str(env_file)},
        }
    )
    supervisors.foreground()
    result = supervisors.ctl("status")
    assert result.returncode == 0 and result.stdout.count("running") == 2, result.stdout


def test_env_in_a_shebang_is_judged_when_environment_sets_path(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """environment wins over the environment files: its PATH is the one env uses."""
    script = tmp_path / "web"
    script.write_text("#!/usr/bin/env mytool\n")
    script.chmod(0o755)
    env_file = tmp_path / "web.env"
    env_file.write_text(f"PATH={tmp_path}:/usr/bin:/bin\n")
    supervisors.config(
        {
            "web": {
                "command": [str(script)],
                "environment_file": str(env_file),
                "environment": {"PATH": "/usr/bin:/bin"},
            }
        }
    )
    result = supervisors.supervise()
    assert result.returncode != 0
    assert "'mytool', which its #! line runs through /usr/bin/env, is not found in PATH" in (
        result.stderr
    ), result.stderr


# -- signals to the supervisor, PID 1 -------------------------------------------------------------


def test_sigterm_stops_programs_in_reverse_order_and_exits_0(supervisors: Supervisors) -> None:
    supervisors.config(
        {
            "db": {"command": [SLEEP, "1000"]},
            "web": {"command": [SLEEP, "1000"], "after": ["db"]},
        }
    )
    proc = supervisors.foreground()
    pids = [supervisors.wait_state(name, "running").pid for name in ("db", "web")]
    wait_log(supervisors, "every program is ready")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    for pid in pids:
        assert pid is not None
        wait_gone(pid, 5)
    log = log_text(supervisors)
    assert log_index(log, "SIGTERM: shutting down") < log_index(log, "web: stopping")
    assert log_index(log, "web: stopped") < log_index(log, "db: stopping"), log


def test_a_program_that_dies_during_the_shutdown_is_not_started_again(
    supervisors: Supervisors,
) -> None:
    """The stop waves take a while (app ignores SIGTERM); db, whose wave comes
    next, dies meanwhile: it is not restarted, and the supervisor exits 0. (It
    was: "db: starting (attempt 2 ...)" a second into an orderly stop, under
    systemd's documented unit too.)"""
    stubborn = "trap '' TERM; while :; do sleep 0.05; done"
    supervisors.config(
        {
            "db": {"command": [SLEEP, "1000"]},
            "app": {"command": ["/bin/sh", "-c", stubborn], "after": ["db"], "stop_timeout": 2},
        }
    )
    proc = supervisors.foreground()
    db = supervisors.wait_state("db", "running").pid
    assert db is not None
    proc.send_signal(signal.SIGTERM)
    wait_log(supervisors, "app: stopping")
    os.kill(db, signal.SIGKILL)
    assert proc.wait(20) == 0
    log = log_text(supervisors)
    assert "starting (attempt 2" not in log, log
    assert "db: stopped (killed by SIGKILL" in log, log


def test_sighup_reopens_log_files_and_leaves_programs_alone(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    err = tmp_path / "web.err"
    script = "trap 'echo got USR1 >&2' USR1; echo first >&2; while :; do sleep 1000 & wait $!; done"
    supervisors.config({"web": {"command": ["/bin/sh", "-c", script], "stderr": str(err)}})
    proc = supervisors.foreground()
    before = supervisors.wait_state("web", "running").pid
    wait_for(lambda: err.exists() and "first" in err.read_text(), what="the first line")
    rotated = tmp_path / "web.err.1"
    err.rename(rotated)  # logrotate, then its postrotate
    proc.send_signal(signal.SIGHUP)
    wait_log(supervisors, "SIGHUP: log files reopened")
    assert err.exists(), "reopened by name"
    signalled = supervisors.ctl("signal", "USR1", "web")
    assert signalled.returncode == 0, signalled
    wait_for(lambda: "got USR1" in err.read_text(), what="the line in the new file")
    assert "got USR1" not in rotated.read_text()
    info = supervisors.status("web")
    assert info.state == "running" and info.pid == before
    assert info.restarts == 0
    assert proc.poll() is None


@needs_root
@needs_pid_namespace
def test_as_pid_1_in_a_pid_namespace_it_reaps_orphans_and_exits_0_on_sigterm(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A container: the supervisor is PID 1 (it stays in the foreground by itself).
    Orphans of its program are reparented to it and, once they exit, reaped: no
    zombie is left, even of processes it cannot attribute to a program (they run
    with an empty environment). SIGTERM (docker stop) stops the program, and it
    exits 0."""
    gate = tmp_path / "gate"
    config = supervisors.config({"orphans": {"command": [PY, str(ORPHANS), str(gate), "3"]}})
    unshare = supervisors.popen(
        [*UNSHARE_PID, *supervisors.command(), "supervise", "--config", str(config)],
        env=supervisors.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    init = wait_for(lambda: children(unshare.pid), what="the namespace's PID 1")[0]
    supervisors.add(init)
    assert proc_status(init)["NSpid"].split() == [str(init), "1"], "not PID 1: it forked"
    supervisors.wait_answering(unshare)
    inner = supervisors.wait_state("orphans", "running").pid  # a pid in the namespace

    # The program and its three orphans, all children of PID 1 now (a zombie
    # stays listed among its parent's children until it is reaped).
    found = wait_for(lambda: len(children(init)) == 4 and children(init), what="three orphans")
    (leader,) = [pid for pid in found if int(proc_stat(pid)[2]) == pid]
    assert proc_status(leader)["NSpid"].split() == [str(leader), str(inner)]
    orphans = [pid for pid in found if pid != leader]
    assert all(proc_stat(pid)[0] != "Z" for pid in orphans), "they wait for the gate"
    empty = [Path(f"/proc/{pid}/environ") for pid in orphans]  # on purpose: read as it is
    wait_for(lambda: not any(path.read_bytes() for path in empty), what="orphans, no environment")
    gate.touch()  # the orphans exit; PID 1 must reap them
    wait_for(lambda: children(init) == [leader], what="PID 1 to reap its orphans")
    assert proc_stat(leader)[0] != "Z"

    os.kill(init, signal.SIGTERM)  # docker stop
    assert unshare.wait(10) == 0, unshare.stderr.read() if unshare.stderr else ""
    wait_gone(leader, 5)


#: Where ``daemonctx supervise`` runs without a /proc of its own, and what it says there.
_FOREIGN_PROC = (
    r"/proc is another pid namespace's: it shows this process as pid \d+, not {pid};"
    r" mount this pid namespace's own \(unshare --pid --fork --mount-proc, nsenter --mount\)"
)
_NO_PROC = re.escape("/proc is not mounted; mount it (mount -t proc proc /proc)")
_WITHOUT_PROC = {
    "as PID 1": (["unshare", "--pid", "--fork"], [], _FOREIGN_PROC.format(pid=1)),
    "under a shell": (
        ["unshare", "--pid", "--fork", "sh", "-c", '"$@"', "sh"],
        ["--foreground"],
        _FOREIGN_PROC.format(pid=2),
    ),
    "with no /proc": (
        ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs none /proc && exec "$@"', "sh"],
        ["--foreground"],
        _NO_PROC,
    ),
}


def _as_pid_1(supervisors: Supervisors, config: Path) -> subprocess.Popen[str]:
    """``daemonctx supervise`` as PID 1 of a pid namespace of its own (a
    container), once it answers; the ``unshare`` process, whose exit status is
    the supervisor's."""
    unshare = supervisors.popen(
        [*UNSHARE_PID, *supervisors.command(), "supervise", "--config", str(config)],
        env=supervisors.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    init = wait_for(lambda: children(unshare.pid), what="the namespace's PID 1")[0]
    supervisors.add(init)
    supervisors.wait_answering(unshare)
    return unshare


@needs_root
@needs_pid_namespace
@pytest.mark.parametrize("where", list(_WITHOUT_PROC))
def test_without_a_proc_of_its_own_it_refuses_to_start(
    supervisors: Supervisors, tmp_path: Path, where: str
) -> None:
    """``unshare --pid --fork`` without ``--mount-proc``: /proc is the host's, where the
    supervisor would look for its escaped processes under another process's pid (it
    let a double-forked one live on, silently); or no /proc at all. It refuses at
    once, in one line that says why and what to do, before anything starts: no
    program, no socket."""
    prefix, flags, why = _WITHOUT_PROC[where]
    started = tmp_path / "started"
    config = supervisors.config(
        {"app": {"command": ["sh", "-c", f"touch {started}; exec sleep 1000"]}}
    )
    result = subprocess.run(
        [*prefix, *supervisors.command(), "supervise", "--config", str(config), *flags],
        env=supervisors.env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1, result
    (line,) = result.stderr.splitlines()
    assert re.fullmatch(f"daemonctx: error: cannot supervise: {why}", line), line
    assert not started.exists()
    assert not os.path.exists(supervisors.control)
    assert supervisors.processes() == []


@needs_root
@needs_pid_namespace
@pytest.mark.parametrize(
    ("script", "extra", "status", "said"),
    [
        ("exit 3", {}, 1, "job (exited 3)"),
        ("kill -SEGV $$", {}, 1, "job (killed by SIGSEGV"),
        ("exit 3", {"success_codes": [0, 3]}, 0, None),
    ],
    ids=["exit-3", "sigsegv", "exit-3-a-success"],
)
def test_as_pid_1_its_exit_status_says_whether_a_program_ended_unhealthy(
    supervisors: Supervisors,
    tmp_path: Path,
    script: str,
    extra: dict[str, Any],
    status: int,
    said: str | None,
) -> None:
    """A container's only program ends (restart = "never"), beside one that
    ended well: the supervisor, PID 1, exits with 1 when that end is unhealthy
    (``ctl status`` says so: an exit not in success_codes, a signal), as tini
    passes its child's failure on, and says which program; 0 otherwise. It used
    to exit 0 unless a program was ``failed``."""
    gate = tmp_path / "gate"
    wait = f"until [ -e {gate} ]; do {SLEEP} 0.05; done; "
    config = supervisors.config(
        {
            "job": {"command": ["/bin/sh", "-c", wait + script], "restart": "never", **extra},
            "done": {"command": ["/bin/true"], "restart": "never"},
        }
    )
    unshare = _as_pid_1(supervisors, config)
    supervisors.wait_state("done", "exited")
    gate.touch()
    assert unshare.wait(20) == status, unshare.stderr.read() if unshare.stderr else ""
    log = log_text(supervisors)
    assert f"exiting with status {status}" in log, log
    if said is not None:
        assert f"every program has ended; unhealthy: {said}" in log, log
    else:
        assert "unhealthy" not in log, log


@needs_root
@needs_pid_namespace
def test_as_pid_1_with_only_jobs_started_by_hand_it_stays_after_each_job(
    supervisors: Supervisors,
) -> None:
    """A container of on-demand jobs (every program autostart = false): PID 1
    stays up at boot, and after each ``ctl start``ed job has ended, ready for
    the next; ``ctl shutdown`` ends it. It used to exit when the first job ended."""
    config = supervisors.config(
        {"job": {"command": ["/bin/true"], "autostart": False, "ready": "exited"}}
    )
    unshare = _as_pid_1(supervisors, config)
    assert supervisors.status("job").state == "stopped"
    for _ in range(2):
        started = supervisors.ctl("start", "job")
        assert started.returncode == 0, started
        assert supervisors.status("job").state == "exited"  # and it still answers
        assert unshare.poll() is None
    assert supervisors.ctl("shutdown").returncode == 0
    assert unshare.wait(10) == 0


@needs_root
@needs_pid_namespace
def test_as_pid_1_a_boot_of_one_shots_done_at_once_ends_it(supervisors: Supervisors) -> None:
    """Every program a one-shot that is done before the boot is over: nothing
    runs or will run again, so PID 1 exits 0 (it used to stay up for ever, as
    nothing changed after the boot to make it look)."""
    config = supervisors.config({"setup": {"command": ["/bin/true"], "ready": "exited"}})
    unshare = _as_pid_1(supervisors, config)
    assert unshare.wait(10) == 0, unshare.stderr.read() if unshare.stderr else ""
    assert "every program is stopped; exiting with status 0" in log_text(supervisors)


@pytest.mark.parametrize("ready", ["exited", "notify"])
def test_a_failed_start_at_boot_announces_no_retry(supervisors: Supervisors, ready: str) -> None:
    """A program that exits 3 before it is ready fails the boot: the log says it
    failed and the boot stops, without a "starting (attempt 2, ...)" that never
    ran, nor the stop of a start that was not made ("not spawned yet")."""
    supervisors.config({"job": {"command": ["/bin/sh", "-c", "exit 3"], "ready": ready}})
    proc = supervisors.foreground(booted=False)
    assert proc.wait(20) == 1
    log = log_text(supervisors)
    assert "job: failed: exited 3" in log, log
    assert "job failed to start: exited 3" in log, log
    assert "attempt 2" not in log and "not spawned yet" not in log, log
    assert "job: starting\n" in log and log.count("job: starting") == 1, log


def test_a_program_stopped_during_the_boot_does_not_fail_it(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """While the boot waits for a slow program, an operator stops another one: the
    boot goes on without it (it stays stopped), and the supervisor runs."""
    gate = tmp_path / "gate"
    supervisors.config(
        {
            "slow": {"command": [PY, str(NOTIFY_GATE), str(gate)], "ready": "notify"},
            "other": {"command": [SLEEP, "1000"]},
        }
    )
    proc = supervisors.foreground(booted=False)
    with supervisors.client() as client:
        assert client.request("status")["supervisor"]["state"] == "starting"
        (other,) = client.stop("other")
    assert other.state == "stopped"
    gate.touch()

    def booted() -> bool:
        with supervisors.client() as client:
            return bool(client.request("status")["supervisor"]["state"] == "running")

    wait_for(booted, what="the boot to end")
    assert proc.poll() is None
    assert supervisors.status("slow").state == "running"
    assert supervisors.status("other").state == "stopped"


@pytest.mark.parametrize("when", ["while it runs", "before its turn"])
def test_a_program_stopped_during_the_boot_fails_it_when_others_come_after_it(
    supervisors: Supervisors, tmp_path: Path, when: str
) -> None:
    """`ctl stop migrate` while the boot waits for it (a one-shot still running), or
    before its wave: the program `after` it is not started (it used to start at
    once, and `supervise` said every program was ready); the boot fails, as at a
    failed start of migrate, naming it and who stopped it, and leaves nothing."""
    gate = tmp_path / "gate"
    rec = tmp_path / "app.rec"
    programs: dict[str, dict[str, Any]] = {
        "migrate": {"command": [SLEEP, "1000"], "ready": "exited", "restart": "never"},
        "app": {"command": record(rec, "forever"), "after": ["migrate"]},
    }
    if when == "before its turn":
        slow = {"command": [PY, str(NOTIFY_GATE), str(gate)], "ready": "notify"}
        programs = {"slow": slow, **programs}
        programs["migrate"]["after"] = ["slow"]
    supervisors.config(programs)
    launcher = supervisors.popen(
        [*supervisors.command(), "supervise", "--config", str(supervisors.config_path)],
        env=supervisors.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    supervisors.wait_answering(booted=False)
    if when == "while it runs":
        supervisors.wait_state("migrate", "starting")
    stopped = supervisors.ctl("stop", "migrate")
    assert stopped.returncode == 0, stopped.stderr
    gate.touch()
    _out, err = launcher.communicate(timeout=20)
    assert launcher.returncode == 1, err
    assert re.fullmatch(
        rf"daemonctx: error: migrate was stopped by uid {os.geteuid()} \(pid \d+\) through the"
        " control socket before it was ready: app, after it, not started\n",
        err,
    ), err
    assert "app: starting" not in log_text(supervisors)
    assert not rec.exists(), "app ran"
    wait_for(lambda: supervisors.processes() == [], what="every process gone")


def test_ctl_signal_reaches_each_process_of_the_program_once(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """The group, the leader and an orphan still in the group each get one SIGHUP
    per `ctl signal HUP`: a program that reloads on SIGHUP reloads once (a second
    SIGTERM is "stop now" to many programs)."""
    path = tmp_path / "signals"
    supervisors.config({"web": {"command": [PY, str(SIGNAL_COUNTER), str(path)]}})
    supervisors.foreground()

    def lines() -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    wait_for(lambda: sum(line.endswith(" ready") for line in lines()) == 2, what="both ready")
    for _ in range(3):
        assert supervisors.ctl("signal", "HUP", "web").returncode == 0
    # A signal sent after the HUPs is handled after any of them still pending
    # (pending signals are delivered lowest number first): then every HUP is in.
    assert supervisors.ctl("signal", "USR1", "web").returncode == 0
    wait_for(lambda: sum(line.endswith(" SIGUSR1") for line in lines()) >= 2, what="USR1")
    got = lines()
    for role in ("leader", "orphan"):
        assert sum(line.startswith(role) and line.endswith(" SIGHUP") for line in got) == 3, got
        assert sum(line.startswith(role) and line.endswith(" SIGUSR1") for line in got) == 1, got
    assert supervisors.ctl("stop", "web").returncode == 0
    got = lines()
    for role in ("leader", "orphan"):
        assert sum(line.startswith(role) and line.endswith(" SIGTERM") for line in got) == 1, got


def _worker_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("forking", [False, True], ids=["leader", "pidfile-daemon"])
def test_a_stop_lets_the_rest_of_the_group_finish_when_the_leader_goes_first(
    supervisors: Supervisors, tmp_path: Path, forking: bool
) -> None:
    """`ctl stop` sends SIGTERM to the program's group. Its leader (or the daemon
    a `pidfile` program forked) dies at once; a worker in the group takes its
    time to finish (a shell that runs the real program as a child is such a
    leader). The worker keeps the rest of the stop's time: no SIGKILL when the
    leader is gone (the leader stays unreaped meanwhile, so its group id stays
    its own), and the stop returns once the worker is done."""
    events, gate, pidfile = tmp_path / "events", tmp_path / "gate", tmp_path / "web.pid"
    os.mkfifo(gate)
    command = [PY, str(GROUP_STOP), str(events), str(gate)]
    web: dict[str, Any] = {"command": command, "stop_timeout": 30}
    if forking:
        web.update(command=[*command, "--daemon", str(pidfile)], pidfile=str(pidfile))
    supervisors.config({"web": web})
    supervisors.foreground()
    wait_for(lambda: _worker_lines(events), what="the worker ready")
    worker = int(_worker_lines(events)[0].split()[1])
    leader = supervisors.status("web").pid
    assert leader == (int(pidfile.read_text()) if forking else leader)
    stop = supervisors.ctl_popen("stop", "web")
    wait_for(
        lambda: len(_worker_lines(events)) > 1 or not pid_alive(worker), what="the worker's SIGTERM"
    )
    wait_for(lambda: not pid_alive(leader), what="the leader's exit")
    assert _worker_lines(events)[1:] == [f"worker {worker} SIGTERM"]
    assert pid_alive(worker), "killed when its leader exited"
    assert stop.poll() is None, stop.communicate()
    with open(gate, "w"):  # the worker may finish now
        pass
    assert stop.wait(20) == 0, stop.communicate()
    assert _worker_lines(events)[2:] == [f"worker {worker} done"]
    assert not os.path.exists(f"/proc/{worker}") and not os.path.exists(f"/proc/{leader}")
    with supervisors.client() as client:
        ((info, runs),) = client.why("web")
    assert info.state == "stopped" and runs[-1].steps == ("SIGTERM",), runs[-1]


def test_an_orphan_is_reaped_at_once_while_a_stop_waits_for_a_group(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """While a stop waits for the rest of a group, its leader dead and kept
    unreaped (the kernel lists that zombie first among the supervisor's exited
    children, as the older child), an orphan the supervisor adopted exits: it
    is reaped then, not left a zombie until the stop is over."""
    events, gate, released = tmp_path / "events", tmp_path / "gate", tmp_path / "released"
    os.mkfifo(gate)
    supervisors.config(
        {
            "web": {"command": [PY, str(GROUP_STOP), str(events), str(gate)], "stop_timeout": 30},
            "orphans": {"command": [PY, str(ORPHANS), str(released), "1"]},
        }
    )
    supervisor = supervisors.foreground()
    wait_for(lambda: _worker_lines(events), what="the worker ready")
    worker = int(_worker_lines(events)[0].split()[1])
    leader, keeper = supervisors.status("web").pid, supervisors.status("orphans").pid

    def adopted() -> list[int]:  # sup_orphans.py's grandchild, a shell by now
        found = []
        for pid in children(supervisor.pid):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sh\0-c\0"):
                    found.append(pid)
            except OSError:
                continue
        return found

    (orphan,) = wait_for(adopted, what="the orphan adopted")
    kids = children(supervisor.pid)
    assert kids.index(leader) < kids.index(orphan), "web's leader must be listed first"
    stop = supervisors.ctl_popen("stop", "web")
    try:
        wait_for(lambda: len(_worker_lines(events)) > 1, what="the worker's SIGTERM")
        wait_for(lambda: not pid_alive(leader), what="the leader's exit")
        assert leader in children(supervisor.pid), "the leader is kept unreaped"
        released.touch()  # the orphan exits now; the stop still waits for the worker
        wait_for(lambda: orphan not in children(supervisor.pid), 5, what="the orphan reaped")
        assert stop.poll() is None and pid_alive(worker) and pid_alive(keeper)
    finally:
        released.touch()  # it has no token: the fixture would not find it
        with open(gate, "w"):  # the worker may finish now
            pass
    assert stop.wait(20) == 0, stop.communicate()
    assert leader not in children(supervisor.pid)


def test_a_supervisor_killed_while_a_stop_waits_for_the_group_leaves_nothing(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """SIGKILL to the supervisor while a stop waits for the rest of a group (the
    leader dead, unreaped): its guard kills the worker all the same."""
    events, gate = tmp_path / "events", tmp_path / "gate"
    os.mkfifo(gate)
    supervisors.config(
        {"web": {"command": [PY, str(GROUP_STOP), str(events), str(gate)], "stop_timeout": 30}}
    )
    supervisor = supervisors.foreground()
    wait_for(lambda: _worker_lines(events), what="the worker ready")
    worker = int(_worker_lines(events)[0].split()[1])
    leader = supervisors.status("web").pid
    supervisors.ctl_popen("stop", "web", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(_worker_lines(events)) > 1, what="the worker's SIGTERM")
    wait_for(lambda: not pid_alive(leader), what="the leader's exit")
    assert pid_alive(worker)
    os.kill(supervisor.pid, signal.SIGKILL)
    wait_gone(worker, 10)
    assert _worker_lines(events)[1:] == [f"worker {worker} SIGTERM"]


def test_a_worker_that_ignores_the_stop_gets_sigkill_at_the_ladders_end(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """The same group, its worker ignoring SIGTERM: the leader's exit does not end
    the stop; the ladder's next step, SIGKILL 0.5 s later, reaches the worker
    through the group (its id still the unreaped leader's)."""
    events, gate = tmp_path / "events", tmp_path / "gate"
    supervisors.config(
        {
            "web": {
                "command": [PY, str(GROUP_STOP), str(events), str(gate), "--ignore"],
                "stop": ["TERM", 0.5, "KILL"],
            }
        }
    )
    supervisors.foreground()
    wait_for(lambda: _worker_lines(events), what="the worker ready")
    worker = int(_worker_lines(events)[0].split()[1])
    began = time.monotonic()
    assert supervisors.ctl("stop", "web").returncode == 0
    assert time.monotonic() - began >= 0.5
    assert not os.path.exists(f"/proc/{worker}")
    with supervisors.client() as client:
        ((info, runs),) = client.why("web")
    first, kill = runs[-1].steps
    assert (info.state, first, kill.split(" after ")[0]) == ("stopped", "SIGTERM", "SIGKILL")


def marked(control: str, program: str) -> list[int]:
    """The live processes (not zombies) whose environment marks them as
    ``program``'s of the supervisor on ``control``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "environ").read_bytes()
            state = proc_stat(int(entry.name))[0]
        except (OSError, IndexError):
            continue
        items = raw.split(b"\0")
        if (
            state != "Z"
            and f"DAEMONCTX_SUPERVISOR={control}".encode() in items
            and f"DAEMONCTX_PROGRAM={program}".encode() in items
        ):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("how", ["stop", "restart", "shutdown", "SIGTERM"])
def test_what_sigkill_of_the_main_process_lets_escape_is_killed_too(
    supervisors: Supervisors, tmp_path: Path, how: str
) -> None:
    """The main process ignores SIGTERM. Its child ``keeper`` started a session
    of its own (no group signal reaches it) and has a child, ``daemon``, in that
    session. Both stay out of the supervisor's reach while the main process
    lives: only the ladder's SIGKILL kills it, and then ``keeper`` is
    reparented to the supervisor (a subreaper), before or after the supervisor
    looked for escaped processes to SIGKILL. Either way one of them is adopted
    after the ladder's last step: ``keeper`` (it looked too early), or
    ``daemon`` when ``keeper`` died of that SIGKILL. That one used to be waited
    for and never signalled: the stop hung ("stuck: alive 5 s after SIGKILL",
    the main process a zombie), and so did a restart, a shutdown, a SIGTERM to
    the supervisor (the tester's ``setsid sleep &`` hit it in about half of the
    runs, when the main process's death outran the supervisor's look). Now what
    is adopted after SIGKILL gets SIGKILL, and the stop is over at once."""
    keeper, daemon, ready = tmp_path / "keeper.pid", tmp_path / "daemon.pid", tmp_path / "ready"
    script = (
        f"setsid /bin/sh -c 'echo $$ > {keeper}; {SLEEP} 2101 & echo $! > {daemon}; wait' & "
        f"until [ -s {daemon} ]; do {SLEEP} 0.01; done; "
        f"trap '' TERM; touch {ready}; while :; do {SLEEP} 1; done"
    )
    supervisors.config({"esc": {"command": ["/bin/sh", "-c", script], "stop_timeout": 0.5}})
    supervisor = supervisors.foreground()
    wait_for(ready.exists, what="the program ignoring SIGTERM")
    escaped = [int(keeper.read_text()), int(daemon.read_text())]
    leader = supervisors.status("esc").pid
    assert int(proc_stat(escaped[0])[1]) == leader, "the keeper is the main process's child"
    assert int(proc_stat(escaped[0])[3]) == escaped[0] != leader, "in a session of its own"
    assert int(proc_stat(escaped[1])[1]) == escaped[0], "the daemon is the keeper's child"
    began = time.monotonic()
    if how in ("stop", "restart"):
        done = supervisors.ctl(how, "esc", timeout=15)
        assert done.returncode == 0, done
    elif how == "shutdown":
        assert supervisors.ctl("shutdown", timeout=15).returncode == 0
    else:
        os.kill(supervisor.pid, signal.SIGTERM)
    if how in ("shutdown", "SIGTERM"):
        assert supervisor.wait(15) == 0
    assert time.monotonic() - began < 5, "the ladder is 0.5 s, then SIGKILL"
    for pid in escaped:
        wait_gone(pid, 5)
    if how == "restart":
        info = supervisors.status("esc")
        assert info.state == "running" and info.pid != leader
        assert not set(escaped) & set(marked(supervisors.control, "esc"))
        assert leader not in children(supervisor.pid), "the old main process is reaped"
    else:
        assert marked(supervisors.control, "esc") == []
    if how == "stop":
        assert supervisors.status("esc").state == "stopped"
        assert leader not in children(supervisor.pid), "the main process is reaped"


@pytest.mark.parametrize(
    ("how", "left"),
    [("stop", "session"), ("stop", "group"), ("restart", "session"), ("SIGTERM", "session")],
)
def test_a_worker_in_a_session_of_its_own_gets_the_stop_signal_once_adopted(
    supervisors: Supervisors, tmp_path: Path, how: str, left: str
) -> None:
    """The main process starts a worker in a session (``setsid cmd &``,
    ``Popen(start_new_session=True)``) or a process group of its own: the stop's
    SIGTERM to the program's group misses it. The main process takes 0.5 s to
    exit; the worker, reparented to the supervisor then, gets SIGTERM at once
    and cleans up. It used to be waited for, never signalled, and SIGKILLed
    after the whole stop_timeout (10 s), the log saying "SIGTERM ignored"."""
    events = tmp_path / "events"
    command = [PY, str(OWN_SESSION), str(events), left]
    supervisors.config({"app": {"command": command, "stop_timeout": 10}})
    supervisor = supervisors.foreground()
    wait_for(lambda: _worker_lines(events), what="the worker ready")
    worker = int(_worker_lines(events)[0].split()[1])
    main = supervisors.status("app").pid
    _state, parent, group, session = proc_stat(worker)[:4]
    assert (int(parent), int(group)) == (main, worker), "the main process's child, own group"
    assert (int(session) == worker) == (left == "session")
    began = time.monotonic()
    if how in ("stop", "restart"):
        done = supervisors.ctl(how, "app", timeout=20)
        assert done.returncode == 0, done
    else:
        os.kill(supervisor.pid, signal.SIGTERM)
        assert supervisor.wait(20) == 0
    took = time.monotonic() - began
    assert f"worker {worker} SIGTERM" in _worker_lines(events), "its clean-up ran"
    assert took < 5, f"{took:.1f} s: waited for stop_timeout"
    wait_gone(worker, 5)
    log = log_text(supervisors)
    assert f"app: pid {worker} (" in log, log
    assert "left the program's process group: SIGTERM sent to it too" in log, log
    assert "SIGKILL" not in log, log
    if how == "restart":
        info = supervisors.status("app")
        assert info.state == "running" and info.pid != main


def test_a_worker_adopted_during_a_stop_is_logged_by_an_escaped_name(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """The worker that left the program's group names itself (argv[0]) with a
    newline and a log line of its making: the supervisor's line about it shows
    them escaped, and forges no ``uid 0 (pid 1): shutdown`` line."""
    events = tmp_path / "events"
    name = "w\n2026-11-28 00:00:00,000 daemonctx: uid 0 (pid 1): shutdown"
    command = [PY, str(OWN_SESSION), str(events), "session", "--exec-as", name]
    supervisors.config({"app": {"command": command, "stop_timeout": 10}})
    supervisors.foreground()
    wait_for(lambda: _worker_lines(events), what="the worker ready")
    worker = int(_worker_lines(events)[0].split()[1])
    wait_for(lambda: cmdline_of(worker).startswith(b"w\n"), what="the worker's exec")
    assert supervisors.ctl("stop", "app", timeout=20).returncode == 0
    wait_gone(worker, 5)
    log = log_text(supervisors)
    shown = "w\\n2026-11-28 00:00:00,000 daemonctx: uid 0 (pid 1): shutdown"
    assert f"app: pid {worker} ({shown}) left the program's process group" in log, log
    assert not any(line.startswith("2026-11-28 00:00:00,000") for line in log.splitlines())


def test_a_group_member_outliving_the_main_process_gets_one_sigterm_and_sigcont(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A worker still in the program's group outlives the main process by 0.5 s:
    the stop's SIGTERM (and the SIGCONT after it) reached it through the group,
    so it is not signalled again as one that left the group (the SIGCONT's
    record once hid the SIGTERM's: a second SIGTERM and a false log line)."""
    events = tmp_path / "events"
    command = [PY, str(OWN_SESSION), str(events), "same"]
    supervisors.config({"app": {"command": command, "stop_timeout": 10}})
    supervisors.foreground()
    wait_for(lambda: _worker_lines(events), what="the worker ready")
    worker = int(_worker_lines(events)[0].split()[1])
    done = supervisors.ctl("stop", "app", timeout=20)
    assert done.returncode == 0, done
    wait_gone(worker, 5)
    mine = [line for line in _worker_lines(events) if line.startswith(f"worker {worker} ")]
    assert mine == [f"worker {worker} ready", f"worker {worker} SIGTERM"]
    log = log_text(supervisors)
    assert "left the program's process group" not in log, log
    assert "SIGKILL" not in log, log


def test_a_worker_adopted_late_that_ignores_sigterm_gets_sigkill_with_the_rest(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """The same worker ignores SIGTERM: it gets SIGKILL at stop_timeout (2 s), as
    the group would, not later; and the log says truly how long it ignored
    SIGTERM: from its adoption, about 0.5 s after the stop, not the whole 2 s."""
    events = tmp_path / "events"
    command = [PY, str(OWN_SESSION), str(events), "session", "--ignore"]
    supervisors.config({"app": {"command": command, "stop_timeout": 2}})
    supervisors.foreground()
    wait_for(lambda: _worker_lines(events), what="the worker ready")
    worker = int(_worker_lines(events)[0].split()[1])
    began = time.monotonic()
    done = supervisors.ctl("stop", "app", timeout=20)
    took = time.monotonic() - began
    assert done.returncode == 0, done
    assert 2 <= took < 4, took
    wait_gone(worker, 5)
    assert f"worker {worker} SIGTERM" not in _worker_lines(events)
    log = log_text(supervisors)
    sent = log.index(f"app: pid {worker} (")
    found = re.search(
        rf"SIGKILL sent (?:just now|{DURATION} ago), SIGTERM ignored for ({DURATION})", log
    )
    assert found is not None and found.start() > sent, log
    assert duration(found.group(1)) <= 1.6, "it had SIGTERM from its adoption on"


def test_a_working_directory_missing_for_a_moment_is_waited_for(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A deploy swaps the program's directory as it restarts: the start fails,
    says why, and is tried again with the backoff, as for a missing environment
    file (with start_limit = 0, for ever). It used to make the program `failed`
    for good, as a command that cannot be executed."""
    directory = tmp_path / "wd"
    directory.mkdir()
    web = {"command": [SLEEP, "1000"], "directory": str(directory), "start_limit": 0}
    supervisors.config({"web": {**web, "restart_delay_max": 0.2}})
    supervisors.foreground()
    pid = supervisors.status("web").pid
    assert pid is not None
    directory.rmdir()
    os.kill(pid, signal.SIGKILL)
    info = wait_for(lambda: (i := supervisors.status("web")).attempt > 2 and i, what="retries")
    assert info.state in ("backoff", "starting"), info
    why = f"cannot change to directory {directory}: No such file or directory"
    assert why in supervisors.ctl("why", "web").stdout
    directory.mkdir()
    info = wait_for(lambda: (i := supervisors.status("web")).state == "running" and i)
    assert info.pid != pid and Path(f"/proc/{info.pid}/cwd").resolve() == directory


@pytest.mark.parametrize("foreground", [False, True], ids=["detached", "foreground"])
@pytest.mark.parametrize("cause", ["stdout", "fifo", "directory", "exec"])
def test_a_program_that_cannot_start_in_the_first_wave_fails_supervise(
    supervisors: Supervisors,
    tmp_path: Path,
    cause: str,
    foreground: bool,
    request: pytest.FixtureRequest,
) -> None:
    """Its start fails before the loop runs (its log file's directory is missing,
    its directory is, its file is not a program): `supervise` exits 1 at once with
    one line saying why, and leaves nothing running. It used to wait forever: the
    supervisor's stop came before its loop ran, and was lost."""
    missing = tmp_path / "missing"
    web: dict[str, Any] = {"command": [SLEEP, "1000"]}
    if cause == "stdout":
        web["stdout"] = str(missing / "web.log")
        why = f"cannot open web's stdout {missing}/web.log: no such directory {missing}"
    elif cause == "fifo":  # "cannot open" said once
        os.mkfifo(tmp_path / "fifo")
        web["stdout"] = str(tmp_path / "fifo")
        why = f"cannot open web's stdout {tmp_path}/fifo: no process reads the FIFO"
    elif cause == "directory":
        web["directory"] = str(missing)
        why = f"cannot change to directory {missing}: No such file or directory"
    else:
        # A real program, held open for writing: every check before the start
        # passes (a file exec can never run is refused there), exec fails (ETXTBSY).
        busy = tmp_path / "busy"
        shutil.copyfile("/bin/true", busy)
        busy.chmod(0o755)
        request.addfinalizer(open(busy, "r+b").close)  # noqa: SIM115
        web["command"] = [str(busy)]
        why = f"cannot execute {busy}: Text file busy"
    supervisors.config({"web": web})  # alone: nothing runs once it failed
    argv = [*supervisors.command(), "supervise", "--config", str(supervisors.config_path)]
    if foreground:
        argv.append("--foreground")
    launcher = supervisors.popen(
        argv, env=supervisors.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _out, err = launcher.communicate(timeout=20)
    assert launcher.returncode == 1, err
    expected = f"daemonctx: error: web failed to start: {why}"
    assert err.strip().splitlines()[-1] == expected, err  # the foreground's log before it
    assert foreground or len(err.strip().splitlines()) == 1, err
    wait_for(lambda: supervisors.processes() == [], what="every process gone")
    assert not os.path.exists(supervisors.control)


@pytest.mark.parametrize("how", ["ctl shutdown", "SIGTERM", "SIGKILL"])
def test_a_stop_during_the_boot_fails_the_launcher_saying_who_stopped_it(
    supervisors: Supervisors, tmp_path: Path, how: str
) -> None:
    """`daemonctx supervise` (detached) waits for every program to be ready; a
    shutdown asked meanwhile fails that start with a line naming who asked, not
    "the daemon exited before it was ready", and leaves nothing running. A
    supervisor killed (the OOM killer) says nothing: the line says it died (it was
    DaemonContext's, "... left its with block without calling notify_ready()")."""
    supervisors.config(
        {
            "slow": {"command": [PY, str(NOTIFY_GATE), str(tmp_path / "gate")], "ready": "notify"},
            "other": {"command": [SLEEP, "1000"]},
        }
    )
    launcher = supervisors.popen(
        [*supervisors.command(), "supervise", "--config", str(supervisors.config_path)],
        env=supervisors.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    supervisors.wait_answering(booted=False)
    with supervisors.client() as client:
        assert client.request("status")["supervisor"]["state"] == "starting"
    if how.startswith("SIG"):
        daemon = live_owner(supervisors.control)
        assert daemon is not None and daemon != launcher.pid  # detached
        os.kill(daemon, getattr(signal, how))
        by = "shutdown (SIGTERM)"
    else:
        assert supervisors.ctl("shutdown").returncode == 0
        by = f"shutdown by uid {os.geteuid()} (pid "
    _out, err = launcher.communicate(timeout=20)
    assert launcher.returncode == 1
    if how == "SIGKILL":
        expected = f"daemonctx: error: the supervisor (pid {daemon}) died before every program"
        assert err == expected + " was ready (killed?)\n", err
    else:
        assert err.startswith(
            "daemonctx: error: the supervisor was stopped before every program was ready: " + by
        ), err
    assert len(err.strip().splitlines()) == 1, err
    wait_for(lambda: supervisors.processes() == [], what="every process gone")


def test_a_stop_during_the_boot_of_a_foreground_supervisor_is_a_clean_exit(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """In the foreground nobody waits for the boot (systemd's `stop` during a
    start, a Ctrl-C): a requested stop exits 0, as it does after the boot."""
    supervisors.config(
        {"slow": {"command": [PY, str(NOTIFY_GATE), str(tmp_path / "gate")], "ready": "notify"}}
    )
    proc = supervisors.foreground(booted=False)
    with supervisors.client() as client:
        assert client.request("status")["supervisor"]["state"] == "starting"
    assert supervisors.ctl("shutdown").returncode == 0
    assert proc.wait(20) == 0, proc.stderr.read() if proc.stderr else ""
    assert supervisors.processes() == []


def test_a_signal_the_supervisor_was_started_ignoring_is_default_in_its_programs(
    supervisors: Supervisors,
) -> None:
    """A script's `supervise &` starts it with SIGQUIT ignored. The supervisor
    keeps ignoring it, through a handler that does nothing (an exec resets a
    handled signal, not an ignored one, so programs start through Popen's fast
    path), and its program gets SIGQUIT's default action."""
    supervisors.config({"web": {"command": [SLEEP, "1000"]}})
    proc = supervisors.popen(
        [
            *("sh", "-c", 'trap "" QUIT; exec "$@"', "sh", *supervisors.command(), "supervise"),
            *("--config", str(supervisors.config_path), "--foreground"),
        ],
        env=supervisors.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    supervisors.foreground_pid = proc.pid
    supervisors.wait_answering(proc)
    quit_bit = 1 << (signal.SIGQUIT - 1)
    status = proc_status(proc.pid)
    assert not int(status["SigIgn"], 16) & quit_bit and int(status["SigCgt"], 16) & quit_bit
    program = supervisors.wait_state("web", "running").pid
    assert not int(proc_status(program)["SigIgn"], 16) & quit_bit
    os.kill(proc.pid, signal.SIGQUIT)  # still ignored, in effect
    assert supervisors.status("web").pid == program and proc.poll() is None


@pytest.mark.parametrize(
    "name",
    [
        "SIGUSR1",
        "SIGALRM",
        "SIGPWR",
        "SIGRTMIN+3",
        pytest.param(
            "SIGSTKFLT",
            marks=pytest.mark.skipif(
                not hasattr(signal, "SIGSTKFLT"), reason="Python names SIGSTKFLT from 3.11"
            ),
        ),
    ],
)
def test_a_signal_that_would_end_the_supervisor_is_logged_and_ignored(
    supervisors: Supervisors, name: str
) -> None:
    """SIGUSR1 (nginx's and Apache's log reopen), SIGALRM and the like end a process
    at their default action: the supervisor would die without a word, and its
    guard kill every program. It logs such a signal and goes on; its programs
    still get it at its default action (handled here, not ignored)."""
    from daemonctx.signals import parse_signal

    supervisors.config({"web": {"command": [SLEEP, "1000"]}})
    proc = supervisors.foreground()
    program = supervisors.wait_state("web", "running").pid
    signum = parse_signal(name)
    os.kill(proc.pid, signum)
    said = (
        f"{name} received: ignored (SIGHUP or SIGUSR2 reopen the log files;"
        " `ctl reload` reloads the configuration)"
    )
    wait_for(lambda: said in supervisors.log.read_text(), what="the log line")
    assert proc.poll() is None and supervisors.status("web").pid == program
    bit = 1 << (signum - 1)
    status = proc_status(program)
    assert not int(status["SigIgn"], 16) & bit and not int(status["SigCgt"], 16) & bit
    os.kill(program, signum)  # its default action: the end of sleep
    wait_for(lambda: supervisors.status("web").pid not in (None, program), what="a restart")
    assert supervisors.ctl("shutdown").returncode == 0
    assert proc.wait(20) == 0


def test_sigquit_shuts_the_supervisor_down_in_order(supervisors: Supervisors) -> None:
    """SIGQUIT (Ctrl-\\) is a shutdown, as SIGTERM: every program stopped through its
    stop signal, logged, the control socket removed, exit 0. Not its default core
    dump, after which the guard would SIGKILL every program. Started with SIGQUIT
    at its default, as from a terminal's shell: a test runner in the background
    (CI's suites side by side) has it ignored, and a supervisor keeps a signal it
    was started with ignored."""
    clean = supervisors.tmp_path / "clean"
    script = f"trap 'echo clean > {clean}; exit 0' TERM; while :; do sleep 0.1; done"
    supervisors.config({"web": {"command": ["/bin/sh", "-c", script]}})
    before = signal.signal(signal.SIGQUIT, signal.SIG_DFL)  # what the child inherits
    try:
        proc = supervisors.foreground()
    finally:
        signal.signal(signal.SIGQUIT, before)
    supervisors.wait_state("web", "running")
    os.kill(proc.pid, signal.SIGQUIT)
    assert proc.wait(20) == 0
    assert clean.read_text() == "clean\n"
    log = supervisors.log.read_text()
    assert "SIGQUIT: shutting down" in log and "web: stopped (exited 0" in log
    assert not os.path.exists(supervisors.control)


def test_during_a_shutdown_signal_goes_through_and_stop_is_refused(
    supervisors: Supervisors,
) -> None:
    """A program that ignores SIGTERM holds a shutdown up for its ``stop_timeout``:
    ``ctl signal KILL`` ends it then, and the shutdown with it, while ``ctl stop``
    is refused: the supervisor is shutting down."""
    pidfile = supervisors.tmp_path / "stubborn.pid"
    command = [PY, str(IGNORE_TERM), str(pidfile)]
    supervisors.config({"stubborn": {"command": command, "stop_timeout": 60}})
    proc = supervisors.foreground()
    supervisors.wait_state("stubborn", "running")
    wait_for(pidfile.exists, what="SIGTERM ignored")
    shutdown = supervisors.ctl_popen("shutdown")
    supervisors.wait_state("stubborn", "stopping")
    stop = supervisors.ctl("stop", "stubborn")
    assert stop.returncode == 1 and "the supervisor is shutting down" in stop.stderr, stop
    began = time.monotonic()
    assert supervisors.ctl("signal", "KILL", "stubborn").returncode == 0
    assert shutdown.wait(20) == 0 and proc.wait(20) == 0
    assert time.monotonic() - began < 10


@needs_root
def test_a_signal_to_a_main_process_group_skips_a_pid_reused_while_it_looked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A forking program's main process is not our child: the rest of its group is
    found by walking its descendants (``_signal_under``), each pinned by a pidfd and
    looked at again. A descendant that died, its pid taken by an unrelated process
    between the listing and the pidfd (forced here through ns_last_pid), is not
    signalled; the other descendant in the group is."""
    from daemonctx.supervisor import core

    script = f"{SLEEP} 1000 & echo $!; {SLEEP} 1001 & echo $!; wait; exec {SLEEP} 1002"
    top = subprocess.Popen(
        ["/bin/sh", "-c", script], stdout=subprocess.PIPE, start_new_session=True
    )
    unrelated: list[subprocess.Popen[bytes]] = []
    try:
        assert top.stdout is not None
        reused, other = int(top.stdout.readline()), int(top.stdout.readline())
        real_open = core.open_pidfd

        def open_late(pid: int) -> int | None:
            if pid == reused:  # listed, in the group: it dies, its pid is taken
                os.kill(reused, signal.SIGKILL)
                wait_gone(reused, 5)
                # It blocks SIGUSR1 (its mask is ours): one sent stays pending, to see.
                mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
                try:
                    unrelated.append(spawn_as_pid(reused, [SLEEP, "1003"]))
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            return real_open(pid)

        monkeypatch.setattr(core, "open_pidfd", open_late)
        core._signal_under(top.pid, top.pid, signal.SIGUSR1)
        assert unrelated and unrelated[0].pid == reused
        wait_gone(other, 5)  # the group's other member got it, and ended
        status = proc_status(reused)
        blocked = int(status["SigBlk"], 16)
        pending = int(status["SigPnd"], 16) | int(status["ShdPnd"], 16)
        assert blocked & 1 << (signal.SIGUSR1 - 1), status
        assert not pending & 1 << (signal.SIGUSR1 - 1), "an unrelated process was signalled"
    finally:
        for proc in unrelated:
            proc.kill()
            proc.wait()
        os.killpg(top.pid, signal.SIGKILL)
        top.wait()


def test_a_status_text_cannot_act_on_the_operator_s_terminal(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """STATUS= goes to ctl status's output: an escape sequence (clear the screen,
    retitle the window), a backspace, a carriage return, are shown as escapes, not sent."""
    program = tmp_path / "escapes.py"
    program.write_text(
        "import os, socket, time\n"
        "address = os.environ['NOTIFY_SOCKET'].replace('@', '\\0', 1)\n"
        "sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "sock.sendto(b'READY=1\\nSTATUS=\\x1b]0;owned\\x07\\x1b[2Jfake\\x08\\rnext', address)\n"
        "time.sleep(1000)\n"
    )
    supervisors.config({"esc": {"command": [PY, str(program)], "ready": "notify"}})
    supervisors.foreground()
    result = supervisors.ctl("status")
    assert result.returncode == 0, result
    (line,) = result.stdout.splitlines()
    assert line.endswith(r": \x1b]0;owned\x07\x1b[2Jfake\x08\rnext"), line
    assert not any(char in result.stdout for char in "\x1b\x07\x08\r")


def test_a_pid_beyond_any_pid_in_mainpid_or_a_pidfile_is_ignored(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """2**31 and more do not fit pidfd_open's pid_t: such a pid is no pid, and the
    supervisor goes on (it died of an OverflowError)."""
    notify = tmp_path / "notify.py"
    notify.write_text(
        "import os, socket, time\n"
        "address = os.environ['NOTIFY_SOCKET'].replace('@', '\\0', 1)\n"
        "sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "sock.sendto(b'MAINPID=99999999999999999999\\nMAINPID=2147483648\\nREADY=1', address)\n"
        "time.sleep(1000)\n"
    )
    pidfile = tmp_path / "pf.pid"
    supervisors.config(
        {
            "n": {"command": [PY, str(notify)], "ready": "notify"},
            "pf": {
                "command": ["/bin/sh", "-c", f"echo 2147483648 > {pidfile}"],
                "pidfile": str(pidfile),
                "start_timeout": 1,
                "autostart": False,
            },
        }
    )
    supervisors.foreground()
    n = supervisors.status("n")
    assert n.running and n.pid is not None and environ(n.pid)  # the program itself
    supervisors.ctl("start", "pf")
    wait_for(
        lambda: supervisors.status("pf").state in ("backoff", "failed", "exited"),
        what="pf's start to fail: no pid in its pidfile",
    )
    assert supervisors.ctl("ping").returncode == 0 and supervisors.status("n").running


def test_a_program_cannot_name_the_guard_as_its_main_process(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A supervisor that is itself a program of another (DAEMONCTX_PROGRAM=web in its
    environment): its guard does not carry that name, and MAINPID= naming the guard
    is ignored, so that ctl stop web never signals it."""
    program = tmp_path / "name_the_guard.py"
    program.write_text(
        "import os, socket, time\n"
        "sup = os.getppid()\n"
        "kids = open(f'/proc/{sup}/task/{sup}/children').read().split()\n"
        "guard = [k for k in kids if b'.guard' in open(f'/proc/{k}/cmdline', 'rb').read()]\n"
        "address = os.environ['NOTIFY_SOCKET'].replace('@', '\\0', 1)\n"
        "message = f'MAINPID={guard[0]}\\nREADY=1'.encode()\n"
        "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(message, address)\n"
        "time.sleep(1000)\n"
    )
    supervisors.config({"web": {"command": [PY, str(program)], "ready": "notify"}})
    supervisors.env = {**supervisors.env, "DAEMONCTX_PROGRAM": "web"}
    proc = supervisors.foreground()
    guard = guard_of(proc.pid)
    assert "DAEMONCTX_PROGRAM" not in environ(guard)
    info = supervisors.status("web")
    assert info.running and info.pid not in (None, guard)
    assert supervisors.ctl("stop", "web").returncode == 0
    assert pid_alive(guard) and guard_of(proc.pid) == guard


def test_a_flood_of_notifications_from_no_program_is_not_a_flood_of_log_lines(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    supervisors.config({"svc": {"command": [PY, str(NOTIFY_GATE), str(gate)], "ready": "notify"}})
    supervisors.foreground(booted=False)
    info = wait_for(lambda: (i := supervisors.status("svc")).pid and i, what="svc")
    address = "\0" + environ(info.pid)["NOTIFY_SOCKET"][1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        for _ in range(2000):
            sock.sendto(b"x", address)
    gate.touch()  # svc's READY=1 comes after them all
    wait_for(lambda: supervisors.status("svc").running, what="svc ready")
    ignored = supervisors.log.read_text().count("ignored a notification from pid")
    assert 1 <= ignored <= 5, ignored


def test_a_launcher_waiting_for_a_slow_boot_says_what_it_waits_for(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """Past 3 s, the launcher says what the daemon does: the pidfile was taken
    long before; the programs are what it waits for."""
    supervisors.config(
        {"slow": {"command": [SLEEP, "1000"], "ready": 3.5}},
        pidfile=str(tmp_path / "supervisor.pid"),
    )
    result = supervisors.supervise()
    assert result.returncode == 0, result.stderr
    assert "to see its programs ready (slow) (3 s so far" in result.stderr, result.stderr
    assert "pidfile" not in result.stderr


def test_a_launcher_waiting_for_a_boot_a_reload_changed_says_the_new_waves(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """While the boot waits for db, a reload adds cache (after db) and api (after
    cache): three waves now, and the launcher's line, 3 s in, says so."""
    gate = tmp_path / "gate"
    db = {"command": [PY, str(NOTIFY_GATE), str(gate)], "ready": "notify"}
    web = {"command": [SLEEP, "1000"], "after": ["db"]}
    supervisors.config({"db": db, "web": web})
    launcher = supervisors.popen(
        [*supervisors.command(), "supervise", "--config", str(supervisors.config_path)],
        env=supervisors.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    supervisors.wait_answering(booted=False)
    cache = {"command": [SLEEP, "1001"], "after": ["db"]}
    api = {"command": [SLEEP, "1002"], "after": ["cache"]}
    supervisors.config({"db": db, "web": web, "cache": cache, "api": api})
    assert supervisors.ctl("reload").stdout == "add cache\nadd api\n"
    assert launcher.stderr is not None
    said = b""
    deadline = time.monotonic() + 15
    while b"\n" not in said:  # its one line, at 3 s
        ready, _, _ = select.select([launcher.stderr], [], [], max(deadline - time.monotonic(), 0))
        assert ready, f"no line from the launcher: {said!r}"
        chunk = os.read(launcher.stderr.fileno(), 4096)
        assert chunk, f"the launcher ended: {said!r}"
        said += chunk
    assert b"to see its programs ready (wave 1 of 3: db) (3 s so far" in said, said
    gate.touch()
    assert launcher.wait(20) == 0
    with supervisors.client() as client:
        assert [(i.name, i.state) for i in client.status()] == [
            (name, "running") for name in ("db", "web", "cache", "api")
        ]


def test_an_exit_read_in_the_same_wake_up_as_sigterm_is_not_restarted(
    supervisors: Supervisors,
) -> None:
    """The program's exit and the supervisor's SIGTERM come while the supervisor is
    stopped, so one epoll wake-up reads both, the exit first: the shutdown comes
    first, and the program is not started again. It was restarted (restart_delay
    10 ms), only to be stopped at once: a run nobody asked for, at shutdown."""
    starts = supervisors.tmp_path / "starts"
    command = ["sh", "-c", f'echo x >> "{starts}"; exec {SLEEP} 1000']
    supervisors.config({"web": {"command": command, "restart_delay": 0.01}})
    proc = supervisors.foreground()
    web = supervisors.status("web").pid
    assert web is not None
    # web is running from its exec on: killed before its shell wrote (a loaded
    # machine), it would leave no start to count
    wait_for(lambda: starts.exists() and starts.read_text() == "x\n", what="web's start")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: proc_stat(proc.pid)[0] == "T", what="the supervisor to stop")
        os.kill(web, signal.SIGKILL)
        wait_for(lambda: not pid_alive(web), what="web to die")
        os.kill(proc.pid, signal.SIGTERM)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert proc.wait(timeout=20) == 0
    log = supervisors.log.read_text()
    assert "web: starting (attempt 2" not in log, log[-2000:]
    assert starts.read_text() == "x\n"
