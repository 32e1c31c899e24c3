"""procfs.environment_value: a process's environment, read through the moment of an
exec. For some microseconds in the middle of an exec the kernel shows an empty
/proc/<pid>/environ; that moment cannot be caught on demand, so the first read is
made empty here, on real processes: a marked one, a kernel thread, a zombie."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ProcessTracker, spawn_as_pid, wait_for

from daemonctx import procfs
from daemonctx.supervisor import guard

SLEEP = "/bin/sleep"


def environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Every environ read, by pid; the first one of each process comes back empty."""
    real = procfs._read_environ
    done: list[int] = []

    def first_empty(pid: int) -> bytes | None:
        done.append(pid)
        return b"" if done.count(pid) == 1 else real(pid)

    monkeypatch.setattr(procfs, "_read_environ", first_empty)
    yield done


def test_an_environ_read_in_the_middle_of_an_exec_is_read_again(
    reads: list[int], processes: ProcessTracker
) -> None:
    marked = processes.popen([SLEEP, "1000"], env={"MARK": "here"})
    wait_for(lambda: b"MARK=here" in environ(marked.pid), what="its exec")
    reads.clear()
    assert procfs.environment_value(marked.pid, "MARK") == "here"
    assert reads == [marked.pid, marked.pid]


def test_a_kernel_thread_or_a_zombie_is_read_once(
    reads: list[int], processes: ProcessTracker
) -> None:
    if not os.path.exists("/proc/2/stat") or b"kthreadd" not in Path("/proc/2/stat").read_bytes():
        pytest.skip("no kthreadd as pid 2 here (a pid namespace)")
    started = time.monotonic()
    assert procfs.environment_value(2, "MARK") is None
    zombie = processes.popen(["true"])
    wait_for(lambda: not procfs.is_running(zombie.pid), what="its exit")  # not reaped yet
    assert procfs.environment_value(zombie.pid, "MARK") is None
    assert reads == [2, zombie.pid], "no second read: they stay empty"
    assert time.monotonic() - started < 5


def test_the_sweep_kills_a_marked_process_it_first_read_mid_exec(
    reads: list[int], processes: ProcessTracker, tmp_path: Path
) -> None:
    """What a supervisor's guard, or the next supervisor, runs: a marked process of
    ours, read empty once (as in an exec), is still found and killed."""
    control = str(tmp_path / "control.sock")
    escaped = processes.popen(
        [SLEEP, "1000"], env={guard.SUPERVISOR_VARIABLE: control}, start_new_session=True
    )
    wait_for(lambda: control.encode() in environ(escaped.pid), what="its exec")
    reads.clear()
    killed = guard.sweep(control, {os.geteuid()})
    assert [pid for pid, _name in killed] == [escaped.pid]
    assert escaped.wait(5) == -9
    assert reads.count(escaped.pid) >= 2


def test_the_sweep_kills_a_marked_process_forked_at_a_pid_it_swept(
    processes: ProcessTracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep remembers what it killed by identity, not by pid number: a marked
    process forked while it sweeps (a program's child), with the pid of one it
    killed and that was reaped since, is killed in the next pass too. It used to
    be passed over as seen, and ran on. The pid is chosen here (ns_last_pid)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the next pid is chosen through ns_last_pid")
    control = str(tmp_path / "control.sock")
    mark = {guard.SUPERVISOR_VARIABLE: control}
    first = processes.popen([SLEEP, "1000"], env=mark, start_new_session=True)
    wait_for(lambda: control.encode() in environ(first.pid), what="its exec")
    late: list[subprocess.Popen[bytes]] = []
    passes = 0
    real_pids = procfs.all_pids

    def all_pids() -> list[int]:
        nonlocal passes
        passes += 1
        if passes == 2:  # the first pass killed `first`: reaped, its pid is free
            assert first.wait(5) == -9
            child = spawn_as_pid(first.pid, [SLEEP, "1000"], env=mark, start_new_session=True)
            processes.add(child.pid)
            late.append(child)
            wait_for(lambda: control.encode() in environ(child.pid), what="its exec")
        return list(real_pids())

    monkeypatch.setattr(procfs, "all_pids", all_pids)
    killed = guard.sweep(control, {os.geteuid()})
    assert [child.pid for child in late] == [first.pid]
    assert late[0].wait(5) == -9
    assert [pid for pid, _name in killed] == [first.pid, first.pid]
