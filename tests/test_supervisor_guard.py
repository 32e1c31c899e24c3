"""The guard's feeding: what the supervisor holds while the guard's socket is
full or the guard is stopped, and a guard that cannot be started at once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Supervisors, guard_of, is_guard, pid_alive, proc_fds, wait_for, wait_gone

from daemonctx.supervisor.config import load
from daemonctx.supervisor.core import descriptors_needed

pytestmark = pytest.mark.timeout(120)

SLEEP = shutil.which("sleep") or "/bin/sleep"
FALSE = shutil.which("false") or "/bin/false"
PRLIMIT = shutil.which("prlimit")
STALL_LIMIT = 30.0  # guard.STALL_LIMIT, as documented
SHORT_STALL = 3.0
# ``python -m daemonctx`` with guard.STALL_LIMIT made SHORT_STALL first: a
# foreground() prefix, so that the stalled guard's test waits 3 s, not 30
SHORT_STALL_PREFIX = (
    sys.executable,
    "-c",
    "import runpy, sys; import daemonctx.supervisor.guard as guard; "
    f"guard.STALL_LIMIT = {SHORT_STALL}; sys.argv = ['daemonctx', *sys.argv[4:]]; "
    "runpy.run_module('daemonctx', run_name='__main__')",
)


def _pidfds(pid: int) -> int:
    return sum(target == "anon_inode:[pidfd]" for target in proc_fds(pid).values())


def _statuses(supervisors: Supervisors) -> list[Any]:
    with supervisors.client() as client:
        return list(client.status())


def _sleepers(count: int) -> dict[str, dict[str, Any]]:
    program = {"command": [SLEEP, "1000"], "stdout": "null", "stderr": "null"}
    return {f"p{i}": dict(program) for i in range(count)}


@pytest.mark.skipif(PRLIMIT is None, reason="needs prlimit (util-linux)")
@pytest.mark.parametrize("how", ["boot", "reload"])
def test_starting_many_programs_fits_in_the_documented_estimate(
    supervisors: Supervisors, how: str
) -> None:
    """300 programs under a hard RLIMIT_NOFILE of the supervisor's own estimate
    (three descriptors each, and its own), started by the boot or by a reload
    from 10: every one starts. Each hold waited for the guard with a copy of its
    pidfd until the loop turned, a fourth descriptor a program at the peak: p229
    of the boot failed with EMFILE."""
    supervisors.config(_sleepers(300))
    needed = descriptors_needed(load(str(supervisors.config_path)))
    assert needed == 32 + 3 * 300
    if how == "reload":
        supervisors.config(_sleepers(10))
    proc = supervisors.foreground(prefix=[str(PRLIMIT), f"--nofile={needed}:{needed}", "--"])
    if how == "reload":
        supervisors.config(_sleepers(300))
        assert supervisors.ctl("reload").returncode == 0
        supervisors.wait_answering(proc)
    failed = [line for line in supervisors.log.read_text().splitlines() if "Too many" in line]
    assert not failed, failed[0]
    assert proc.poll() is None
    guard = guard_of(proc.pid)
    states = {info.name: info.state for info in _statuses(supervisors)}
    assert len(states) == 300 and set(states.values()) == {"running"}, states
    wait_for(lambda: _pidfds(guard) >= 300, what="the guard to hold every program")


@pytest.mark.skipif(PRLIMIT is None, reason="needs prlimit (util-linux)")
def test_alerts_of_programs_failing_at_once_fit_in_the_documented_estimate(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """100 programs with an ``on_failure`` alert fail at once, under a hard
    RLIMIT_NOFILE of the supervisor's estimate: every alert starts (a pipe and a
    pidfd each while it runs, not counted before: alerts failed with EMFILE, and
    the supervisor died of the first one)."""
    gate = tmp_path / "gate"
    once = f"{tmp_path}/$DAEMONCTX_PROGRAM.failed"  # then restarted: it runs beside its alert
    script = (
        f"[ -e {once} ] && exec {SLEEP} 1000; "
        f"while [ ! -e {gate} ]; do sleep 0.05; done; : > {once}; exit 3"
    )
    failing = {
        "command": ["/bin/sh", "-c", script], "restart_delay": 0.01,
        "on_failure": [SLEEP, "5"], "stdout": "null", "stderr": "null",
    }  # fmt: skip
    supervisors.config({f"p{i}": dict(failing) for i in range(100)})
    needed = descriptors_needed(load(str(supervisors.config_path)))
    assert needed == 32 + 5 * 100
    proc = supervisors.foreground(prefix=[str(PRLIMIT), f"--nofile={needed}:{needed}", "--"])
    gate.touch()

    def started() -> int:
        return supervisors.log.read_text().count(": on_failure started (pid")

    wait_for(lambda: started() == 100, 30, what="100 alerts started")
    failed = [line for line in supervisors.log.read_text().splitlines() if "Too many" in line]
    assert not failed, failed[0]
    assert proc.poll() is None


def _crash_loop_beside_web(
    supervisors: Supervisors, count: int, prefix: tuple[str, ...] = ()
) -> subprocess.Popen[str]:
    """``count`` programs in a crash loop (start_limit 0, up to 0.1 s apart) and
    "web" running beside them: the supervisor, once web runs."""
    crashing = {"command": [FALSE], "start_limit": 0, "restart_delay": 0.01}
    programs: dict[str, dict[str, Any]] = {
        f"c{i}": {**crashing, "restart_delay_max": 0.1} for i in range(count)
    }
    programs["web"] = {"command": [SLEEP, "1000"]}
    supervisors.config(programs)
    proc = supervisors.foreground(booted=False, prefix=prefix)
    supervisors.wait_state("web", "running")
    return proc


def test_a_stopped_guard_costs_no_descriptor_a_restart(supervisors: Supervisors) -> None:
    """50 programs in a crash loop while the guard is stopped: each restart's
    hold and release wait for it, with no copy of a pidfd (a hold released
    before it went sends neither), so the supervisor's descriptors stay as many
    as it holds without a guard. They grew by a pidfd a restart, to the limit.
    Once the guard runs again, it holds what runs: SIGKILL the supervisor, and
    the program restarted meanwhile dies."""
    proc = _crash_loop_beside_web(supervisors, 50)
    supervisor = proc.pid
    guard = guard_of(supervisor)
    before = len(proc_fds(supervisor))
    os.kill(guard, signal.SIGSTOP)
    try:
        start = sum(info.restarts for info in _statuses(supervisors))
        peak = before

        def restarted_enough() -> bool:
            nonlocal peak
            peak = max(peak, len(proc_fds(supervisor)))
            return sum(info.restarts for info in _statuses(supervisors)) - start >= 1500

        wait_for(restarted_enough, 60, what="1500 restarts")
        with supervisors.client() as client:
            for _ in range(20):
                (info,) = client.restart("web")
        pid = info.pid
        assert pid is not None
        peak = max(peak, len(proc_fds(supervisor)))
        assert peak < before + 3 * 50 + 32, (before, peak)
    finally:
        os.kill(guard, signal.SIGCONT)
    wait_for(lambda: _pidfds(guard) >= 1 and pid_alive(pid), what="the guard to run")
    # the guard has taken what waited once the supervisor has nothing left to send
    wait_for(lambda: _holds(guard, pid), what=f"the guard to hold {pid}")
    os.kill(supervisor, signal.SIGKILL)
    wait_gone(guard, 30)
    assert not pid_alive(pid), "the program restarted while the guard was stopped survived"


def _holds(guard: int, pid: int) -> bool:
    """Whether one of the guard's pidfds names ``pid`` (its fdinfo's Pid:)."""
    for fd, target in proc_fds(guard).items():
        if target != "anon_inode:[pidfd]":
            continue
        try:
            info = Path(f"/proc/{guard}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        if f"\nPid:\t{pid}\n" in info:
            return True
    return False


def test_a_guard_that_cannot_be_started_is_tried_again(
    pids_cgroup: Path, supervisors: Supervisors
) -> None:
    """The guard killed while the supervisor may start no process (a pids cgroup at
    its limit: EAGAIN): the supervisor tries again, after 1 s, 2 s..., and once the
    limit is lifted a new guard holds every program: SIGKILL the supervisor and
    none is left. It tried once, and left them running for good."""
    supervisors.config({"web": {"command": [SLEEP, "1000"], "instances": 5}})
    proc = supervisors.foreground()
    supervisor = proc.pid
    guard = guard_of(supervisor)
    pids = [info.pid for info in _statuses(supervisors)]
    assert len(pids) == 5 and all(pids)
    (pids_cgroup / "cgroup.procs").write_text(str(supervisor))
    (pids_cgroup / "pids.max").write_text((pids_cgroup / "pids.current").read_text())
    os.kill(guard, signal.SIGKILL)
    wait_for(
        lambda: "cannot start the guard ([Errno 11]" in supervisors.log.read_text(),
        what="a failed start",
    )
    assert guard_of_now(supervisor) is None
    (pids_cgroup / "pids.max").write_text("max")
    second = wait_for(lambda: guard_of_now(supervisor), 15, what="a new guard")
    assert "programs get a parent-death signal; trying again in " in supervisors.log.read_text()
    wait_for(lambda: all(_holds(second, pid) for pid in pids if pid), what="every program held")
    os.kill(supervisor, signal.SIGKILL)
    wait_gone(second, 30)
    for pid in pids:
        assert pid is not None
        wait_gone(pid, 5)


def guard_of_now(supervisor: int) -> int | None:
    """The supervisor's live guard now (not a zombie), or None."""
    for pid in Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split():
        try:
            if is_guard(pid) and Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z":
                return int(pid)
        except OSError:
            continue
    return None


def test_the_guard_s_stall_limit_is_as_documented() -> None:
    """docs/supervisor.md says 30 seconds, which the test below shortens."""
    from daemonctx.supervisor import guard

    assert guard.STALL_LIMIT == STALL_LIMIT
    docs = (Path(__file__).parent.parent / "docs" / "supervisor.md").read_text()
    assert "takes nothing for 30 seconds while messages wait" in " ".join(docs.split())


def test_a_guard_stopped_while_messages_wait_is_replaced(supervisors: Supervisors) -> None:
    """The guard stopped while restarts have holds for it: after ``STALL_LIMIT``
    seconds of taking nothing it is killed and another holds every program, the
    one restarted meanwhile too (a stopped guard could kill none of them). The
    limit is made 3 s here; ``test_the_guard_s_stall_limit_is_as_documented``
    keeps it 30 s."""
    proc = _crash_loop_beside_web(supervisors, 20, SHORT_STALL_PREFIX)
    supervisor = proc.pid
    first = guard_of(supervisor)
    os.kill(first, signal.SIGSTOP)
    with supervisors.client() as client:
        (info,) = client.restart("web")
    pid = info.pid
    assert pid is not None
    second = wait_for(
        lambda: (found := guard_of_now(supervisor)) != first and found,
        SHORT_STALL + 15,
        what="a new guard",
    )
    assert not pid_alive(first)
    log = supervisors.log.read_text()
    said = f"the guard (pid {first}) took nothing for {SHORT_STALL:g} s: killing it"
    assert said in log, log[-2000:]
    wait_for(lambda: _holds(second, pid), what=f"the new guard to hold {pid}")
    os.kill(supervisor, signal.SIGKILL)
    wait_gone(second, 30)
    wait_gone(pid, 5)
