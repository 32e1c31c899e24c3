"""The supervisor and RLIMIT_NOFILE: a limit too low for the programs fails in the
foreground, before anything starts, and so does a reload that would pass it; the
soft limit is raised only as far as the programs need (they inherit it)."""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, Supervisors, guard_of, proc_fds, proc_stat, wait_for

from daemonctx.errors import CommandError
from daemonctx.supervisor import Client, ProgramInfo
from daemonctx.supervisor.protocol import encode_request, parse_response

pytestmark = pytest.mark.timeout(60)

SLEEP = shutil.which("sleep") or "/bin/sleep"
PRLIMIT = shutil.which("prlimit")
needs_prlimit = pytest.mark.skipif(PRLIMIT is None, reason="needs prlimit (util-linux)")


def hard_limit(at_least: int) -> int:
    """This process's hard RLIMIT_NOFILE (which a child may keep, not pass); the
    test skips when it is below ``at_least``."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if hard < at_least:
        pytest.skip(f"the hard RLIMIT_NOFILE is {hard}, below {at_least}")
    return hard


def statuses(supervisors: Supervisors) -> list[ProgramInfo]:
    with supervisors.client() as client:
        return client.status("all")


def sleepers(count: int, first: int = 1000) -> dict[str, dict[str, object]]:
    """``count`` programs, each a sleep of its own (``sleep 1000``, ``sleep 1001``...)."""
    return {
        f"p{index}": {"command": [SLEEP, str(first + index)], "stdout": "null", "stderr": "null"}
        for index in range(count)
    }


def idle_fds(pid: int, control: str) -> set[int] | None:
    """The fds of supervisor ``pid``, or None while a client's connection to
    ``control`` is open (accepted sockets have the listener's path in /proc/net/unix)."""
    connected = {
        fields[6]
        for fields in (line.split() for line in Path("/proc/net/unix").read_text().splitlines())
        if len(fields) == 8 and fields[5] == "03" and fields[7] == control
    }
    fds = proc_fds(pid)
    if any(target == f"socket:[{inode}]" for target in fds.values() for inode in connected):
        return None
    return set(fds)


def open_files_limit(pid: int) -> tuple[int, int]:
    """The soft and hard RLIMIT_NOFILE of ``pid``, from /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no 'Max open files' in /proc/{pid}/limits")


@needs_prlimit
def test_a_hard_limit_too_low_for_the_programs_fails_in_the_foreground(
    supervisors: Supervisors,
) -> None:
    supervisors.config(sleepers(40))
    result = supervisors.daemonctx(
        "supervise",
        "--config",
        str(supervisors.config_path),
        "--foreground",
        prefix=[str(PRLIMIT), "--nofile=64:64", "--"],
    )
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "40 programs need about" in lines[0], lines
    assert "hard limit of 64" in lines[0] and "ulimit -Hn" in lines[0], lines
    assert supervisors.processes() == [], "nothing may start"
    assert not Path(supervisors.control).exists()


@needs_prlimit
def test_the_soft_limit_is_raised_as_far_as_the_programs_need_and_no_further(
    supervisors: Supervisors,
) -> None:
    hard = hard_limit(4096)
    supervisors.config(sleepers(300))
    proc = supervisors.foreground(prefix=[str(PRLIMIT), f"--nofile=256:{hard}", "--"])
    assert proc.poll() is None, "the supervisor runs"
    infos = statuses(supervisors)
    assert len(infos) == 300 and all(info.running for info in infos), infos
    soft, hard_now = open_files_limit(proc.pid)
    assert hard_now == hard
    held = len(proc_fds(proc.pid))
    assert held > 256, "300 programs need more than the soft limit it was given"
    assert held < soft < min(hard, 10_000), (held, soft)
    assert infos[0].pid is not None
    assert open_files_limit(infos[0].pid) == (soft, hard), "its programs inherit it"


@needs_prlimit
def test_a_soft_limit_that_is_enough_is_left_as_it_is(supervisors: Supervisors) -> None:
    hard = hard_limit(2048)
    supervisors.config(sleepers(3))
    proc = supervisors.foreground(prefix=[str(PRLIMIT), f"--nofile=1024:{hard}", "--"])
    pid = supervisors.status("p0").pid
    assert open_files_limit(proc.pid) == (1024, hard)
    assert open_files_limit(pid) == (1024, hard), "a program gets the soft limit it had"


def test_the_supervisord_guide_says_what_the_limit_does() -> None:
    """coming-from-supervisord.md said the supervisor raised its open-file limit "to
    the hard limit", against supervisor.md and the two tests above: a few programs
    keep (and pass on) the soft limit the supervisor was started with."""
    text = (ROOT / "docs" / "coming-from-supervisord.md").read_text()
    (row,) = [line for line in text.splitlines() if line.startswith("| `[supervisord] minfds`")]
    assert "to the hard limit" not in row, row
    assert "only as far as it needs" in row and "never past the hard limit" in row, row
    assert "stays as it was (1024, usually)" in row and "limits = { nofile" in row, row


@needs_prlimit
def test_a_reload_past_the_hard_limit_changes_nothing(supervisors: Supervisors) -> None:
    supervisors.config(sleepers(5))
    supervisors.foreground(prefix=[str(PRLIMIT), "--nofile=128:128", "--"])
    before = {info.name: info.pid for info in statuses(supervisors)}
    assert len(before) == 5 and None not in before.values()

    supervisors.config(sleepers(40))
    result = supervisors.ctl("reload")
    assert result.returncode == 1, result
    assert "nothing changed: 40 programs need about" in result.stderr, result.stderr
    assert "hard limit of 128" in result.stderr, result.stderr
    after = {info.name: info.pid for info in statuses(supervisors)}
    assert after == before

    supervisors.config(sleepers(8))  # within the limit: applied
    assert supervisors.ctl("reload").returncode == 0
    wait_for(
        lambda: all(info.running for info in statuses(supervisors)),
        10,
        what="the 8 programs",
    )
    assert len(statuses(supervisors)) == 8


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of ``pid`` so far, from /proc/PID/stat."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@needs_prlimit
def test_out_of_descriptors_a_client_waits_without_a_busy_loop(supervisors: Supervisors) -> None:
    """A client that comes when the supervisor has no descriptor left waits in the
    listener's backlog; the supervisor neither spins on the listener, which stays
    readable, nor forgets it: the client is answered once a descriptor is free."""
    supervisors.config(sleepers(2))
    proc = supervisors.foreground()
    soft, hard = open_files_limit(proc.pid)
    limit = [str(PRLIMIT), "--pid", str(proc.pid)]
    # No new descriptor at all: past the standard three, whatever it closes
    # meanwhile (an fd freed below a higher limit would be taken again).
    subprocess.run([*limit, f"--nofile=3:{hard}"], check=True)
    try:
        before = cpu_seconds(proc.pid)
        with (
            Client(supervisors.control, timeout=1.0) as client,
            pytest.raises(CommandError, match="no answer"),
        ):
            client.ping()  # connected (the backlog), never accepted
        spent = cpu_seconds(proc.pid) - before
        assert spent < 0.3, f"{spent:.2f} s of CPU in the second it could not accept"
        waiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        waiting.settimeout(10.0)
        waiting.connect(supervisors.control)  # in the backlog
        waiting.sendall(encode_request(7, "ping"))
    finally:
        subprocess.run([*limit, f"--nofile={soft}:{hard}"], check=True)
    with waiting, waiting.makefile("rb") as answers:
        answer = parse_response(answers.readline())  # once it rests no more: 0.25 s
    assert (answer.id, answer.result) == (7, "pong")
    assert proc.poll() is None


@needs_prlimit
def test_out_of_descriptors_a_restart_fails_and_the_supervisor_goes_on(
    supervisors: Supervisors,
) -> None:
    """A restart with no descriptor left for the program's pipes is a failed start
    (its backoff computed without opening a file: the jitter's random module,
    imported then, once ended the supervisor), said as what failed."""
    supervisors.config(sleepers(2))
    proc = supervisors.foreground()
    soft, hard = open_files_limit(proc.pid)
    limit = [str(PRLIMIT), "--pid", str(proc.pid)]
    with Client(supervisors.control, timeout=10.0) as client:
        client.ping()  # accepted: this connection goes on
        subprocess.run([*limit, f"--nofile=3:{hard}"], check=True)
        try:
            (info,) = client.restart("p0")
            assert info.state in ("starting", "backoff"), info
            assert client.ping() == "pong"
        finally:
            subprocess.run([*limit, f"--nofile={soft}:{hard}"], check=True)
        ((_status, runs),) = client.why("p0")
    assert proc.poll() is None
    errors = [run.error for run in runs if run.error]
    assert f"cannot make the output pipes of {SLEEP}: Too many open files" in errors, runs


def test_out_of_descriptors_a_start_says_which_step_failed_not_cannot_execute(
    supervisors: Supervisors,
) -> None:
    """``ctl start job`` with one, two... descriptors left to the supervisor: each
    short step said as what it is. Popen's /dev/null for stdin and its own pipe
    were "cannot execute /dev/null" and "cannot execute sleep", although no exec
    was tried."""
    job = {"command": [SLEEP, "1248"], "autostart": False, "stderr": "stdout", "restart": "never"}
    supervisors.config({**sleepers(1), "job": job})
    proc = supervisors.foreground()
    soft, hard = open_files_limit(proc.pid)
    assert supervisors.ctl("start", "job").returncode == 0  # what a first start opens for good
    assert supervisors.ctl("stop", "job").returncode == 0
    idle = wait_for(lambda: idle_fds(proc.pid, supervisors.control), what="no client")
    lines = []
    for left in range(1, 12):  # one more descriptor at each try: no step is skipped
        wait_for(lambda: idle_fds(proc.pid, supervisors.control) == idle, what="the idle fds")
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (len(idle) + left, hard))
        try:
            result = supervisors.ctl("start", "job")
        finally:
            resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (soft, hard))
        lines.append(result.stdout.strip().splitlines()[-1])
        if result.returncode == 0:
            break
        assert supervisors.ctl("stop", "job").returncode == 0
    assert lines[-1].startswith("job  running"), lines
    failed = lines[:-1]
    assert not [line for line in failed if "cannot execute" in line], failed
    assert f"job  failed: cannot start {SLEEP} (open /dev/null): Too many open files" in failed
    assert f"job  failed: cannot start {SLEEP}: Too many open files" in failed  # Popen's pipe
    assert proc.poll() is None


def test_with_no_process_left_a_start_says_the_fork_failed(
    pids_cgroup: Path, supervisors: Supervisors
) -> None:
    """``ctl start job`` in a pids cgroup at its limit: the fork fails with EAGAIN,
    "cannot start sleep (fork): ...", not "cannot execute sleep: ...". Started
    once the limit is lifted (and killed by its pid at the end: just started, it
    may show no environment, so no token, for a while under load)."""
    job = {"command": [SLEEP, "1248"], "autostart": False, "restart": "never"}
    supervisors.config({"job": job})
    proc = supervisors.foreground()
    (pids_cgroup / "cgroup.procs").write_text(str(proc.pid))
    (pids_cgroup / "pids.max").write_text((pids_cgroup / "pids.current").read_text())
    try:
        result = supervisors.ctl("start", "job")
    finally:
        (pids_cgroup / "pids.max").write_text("max")
    fork = f"cannot start {SLEEP} (fork): Resource temporarily unavailable"
    assert result.stdout.strip().splitlines()[-1] == f"job  failed: {fork}", result
    assert supervisors.ctl("start", "job").returncode == 0
    info = supervisors.status("job")
    if info.pid is not None:
        supervisors.add(info.pid)
    assert info.running, info
    assert proc.poll() is None


@needs_prlimit
def test_the_guard_takes_the_hard_limit_for_the_programs_a_reload_adds(
    supervisors: Supervisors,
) -> None:
    """The guard holds a pidfd per program; it starts with the supervisor's soft
    limit, which a reload may raise later in the supervisor only: the guard takes
    its hard limit at once (it starts nothing that would inherit it)."""
    hard = hard_limit(2048)
    supervisors.config(sleepers(2))
    proc = supervisors.foreground(prefix=[str(PRLIMIT), f"--nofile=1024:{hard}", "--"])
    guard = guard_of(proc.pid)
    assert open_files_limit(proc.pid) == (1024, hard)
    wait_for(lambda: open_files_limit(guard) == (hard, hard), what="the guard's limit")
