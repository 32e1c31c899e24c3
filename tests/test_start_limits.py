"""``start``/``run``/``restart`` ``--limit NAME=VALUE`` and ``--nice N`` (systemd's
Limit*= and Nice=, start-stop-daemon's --nicelevel, chpst -o): set in the
foreground, inherited by the program across the fork, the exec and a change of
user; one that cannot be set fails before anything starts. Read back from
``/proc/<pid>/limits`` and ``/proc/<pid>/stat``."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import NOBODY, Tracker, needs_root, pid_alive, proc_stat

from daemonctx.limits import UNLIMITED, parse_limit, parse_nice

_HARD_NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
_HARD_CORE = resource.getrlimit(resource.RLIMIT_CORE)[1]
_CAP_SYS_RESOURCE = 24


def _capable(bit: int) -> bool:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    return False


def _limits(pid: int) -> dict[str, tuple[str, str]]:
    """/proc/<pid>/limits: {"Max open files": ("4096", "8192"), ...}."""
    with open(f"/proc/{pid}/limits") as f:
        rows = f.read().splitlines()[1:]
    return {row[:26].strip(): (row[26:47].strip(), row[47:68].strip()) for row in rows}


def _shown(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


# -- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nofile=65536", ("nofile", (65536, 65536))),
        ("nproc=512:1024", ("nproc", (512, 1024))),
        ("core=infinity", ("core", (UNLIMITED, UNLIMITED))),
        ("memlock=64:unlimited", ("memlock", (64, UNLIMITED))),
        ("cpu=0", ("cpu", (0, 0))),
    ],
)
def test_limits_parse_as_prlimit_writes_them(text: str, expected: object) -> None:
    assert parse_limit(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nofile", "expected NAME=VALUE such as nofile=65536, got 'nofile'"),
        ("=5", "expected NAME=VALUE such as nofile=65536, got '=5'"),
        ("nofle=5", "unknown limit 'nofle' (did you mean 'nofile'?); one of as, core,"),
        ("nofile=-1", "nofile: expected a number, infinity, or SOFT:HARD, got '-1'"),
        ("nofile=1:2:3", "nofile: expected a number, infinity, or SOFT:HARD, got '1:2:3'"),
        ("nofile=١٢", "nofile: expected a number, infinity, or SOFT:HARD, got '١٢'"),
        ("nofile=10:5", "nofile: the soft limit is above the hard one, got '10:5'"),
        ("nofile=infinity:5", "nofile: the soft limit is above the hard one, got 'infinity:5'"),
    ],
)
def test_a_bad_limit_says_what_was_typed(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_limit(text)
    assert str(caught.value).startswith(message)


def test_nice_takes_minus_twenty_to_nineteen() -> None:
    assert [parse_nice(text) for text in ("-20", "0", "+5", "19")] == [-20, 0, 5, 19]
    for text in ("-21", "20", "x", "", " 5", "5.0", "--5"):
        with pytest.raises(ValueError, match="expected an integer from -20 to 19"):
            parse_nice(text)


# -- on real programs ---------------------------------------------------------------------


@needs_root
def test_the_program_gets_its_limits_and_priority_across_a_change_of_user(
    tracker: Tracker,
) -> None:
    """Set as root before the fork, kept across the exec and the change to nobody;
    ``--limit core`` replaces the daemon's default of no core dumps."""
    assert _HARD_NOFILE >= 2345
    core = "infinity" if _HARD_CORE == resource.RLIM_INFINITY else str(_HARD_CORE)
    options = ("--limit", "nofile=1234:2345", "--limit", f"core={core}", "--nice", "7")
    pid = tracker.start("sleep", "1000", options=(*options, "--user", "nobody"))
    limits = _limits(pid)
    assert limits["Max open files"] == ("1234", "2345")
    assert limits["Max core file size"] == (_shown(_HARD_CORE), _shown(_HARD_CORE))
    assert int(proc_stat(pid)[16]) == 7  # field 19: nice
    assert os.stat(f"/proc/{pid}").st_uid == NOBODY


def test_without_limits_the_program_gets_no_core_dumps_and_our_priority(
    tracker: Tracker,
) -> None:
    pid = tracker.start("sleep", "1000")
    assert _limits(pid)["Max core file size"][0] == "0"
    assert int(proc_stat(pid)[16]) == os.getpriority(os.PRIO_PROCESS, 0)


def test_run_gives_them_too(tracker: Tracker) -> None:
    result = tracker.daemonctx(
        "run", "--pidfile", tracker.pidfile, "--limit", "nofile=777", "--nice", "3",
        "--", "sh", "-c", 'ulimit -n; cut -d " " -f 19 /proc/$$/stat',
    )  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (0, "777\n3\n", "")


@pytest.mark.skipif(_capable(_CAP_SYS_RESOURCE), reason="may raise any hard limit")
@pytest.mark.skipif(_HARD_NOFILE == resource.RLIM_INFINITY, reason="no hard limit to pass")
def test_a_hard_limit_above_ours_without_the_privilege_fails_before_anything_starts(
    tracker: Tracker,
) -> None:
    above = _HARD_NOFILE + 1
    result = tracker.daemonctx("start", "--pidfile", tracker.pidfile,
                               "--limit", f"nofile={above}", "--", "sleep", "1000")  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert result.stderr == (
        f"daemonctx: error: --limit nofile={above}: above our hard limit ({_HARD_NOFILE}),"
        " without CAP_SYS_RESOURCE\n"
    )
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


def test_more_open_files_than_the_kernel_allows_is_refused(tracker: Tracker) -> None:
    with open("/proc/sys/fs/nr_open") as f:
        most = int(f.read())
    result = tracker.daemonctx("start", "--pidfile", tracker.pidfile,
                               "--limit", f"nofile={most + 1}", "--", "sleep", "1000")  # fmt: skip
    assert (result.returncode, result.stderr) == (
        1,
        f"daemonctx: error: --limit nofile={most + 1}: at most {most} here (fs.nr_open),"
        f" got {most + 1}\n",
    )
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_a_higher_priority_without_cap_sys_nice_is_refused(tracker: Tracker) -> None:
    """Root without CAP_SYS_NICE (dropped from the bounding set, as a container does)."""
    drop = ["setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice"]
    result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, "--nice", "-5",
                               "--", "sleep", "1000", prefix=drop)  # fmt: skip
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert (result.returncode, result.stderr) == (
        4,
        f"daemonctx: error: --nice -5: below {ours}, the most we may give, without CAP_SYS_NICE\n",
    )
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


def test_restart_with_a_limit_that_cannot_be_set_leaves_the_daemon_running(
    tracker: Tracker,
) -> None:
    pid = tracker.start("sleep", "1000")
    with open("/proc/sys/fs/nr_open") as f:
        too_many = int(f.read()) + 1
    result = tracker.daemonctx("restart", "--pidfile", tracker.pidfile,
                               "--limit", f"nofile={too_many}", "--", "sleep", "1000")  # fmt: skip
    assert result.returncode == 1 and "fs.nr_open" in result.stderr, result.stderr
    assert pid_alive(pid) and tracker.processes() == [pid]
    os.kill(pid, signal.SIGTERM)


_NARROWED = """
import resource, sys
from daemonctx import limits
from daemonctx.cli import main
set_limits = limits.set_limits
def narrowed(wanted, nice=None):  # as if prlimit --pid lowered it after the check
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    set_limits(wanted, nice)
limits.set_limits = narrowed
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(_HARD_NOFILE < 2048, reason="needs a hard limit of 2048 open files")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_a_limit_the_kernel_refuses_in_the_daemon_is_told_in_our_words(tracker: Tracker) -> None:
    """The foreground check passed, then the daemon's hard limit was lowered: the
    kernel refuses 2048 (no CAP_SYS_RESOURCE: dropped as a container does). The
    error names what was typed, not our exception's class; nothing is left."""
    drop = ["setpriv", "--bounding-set", "-sys_resource", "--inh-caps", "-sys_resource"]
    prefix = drop if _capable(_CAP_SYS_RESOURCE) else []
    argv = [*prefix, sys.executable, "-c", _NARROWED, "start", "--pidfile", tracker.pidfile,
            "--limit", "nofile=2048", "--", "sleep", "1000"]  # fmt: skip
    result = subprocess.run(argv, env=tracker.env, capture_output=True, text=True, timeout=30)
    name = os.path.splitext(os.path.basename(tracker.pidfile))[0]
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"daemonctx: error: {name} failed to start: --limit nofile=2048: cannot set it:"
        " not allowed to raise maximum limit\n",
    )
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


def test_the_help_names_them() -> None:
    result = subprocess.run(
        [*Tracker.command(), "start", "--help"], capture_output=True, text=True, timeout=30
    )
    assert "--limit NAME=VALUE" in result.stdout and "--nice N" in result.stdout


def test_the_launcher_never_runs_under_the_program_s_limits(tracker: Tracker) -> None:
    """Set in the daemon, not in the launcher: 12 MB of address space is too little
    for the launcher's Python (its failure path could not even import what it
    needs, and left the daemon running), and plenty for sleep."""
    options = ("--limit", "as=12000000", "--notify", "--timeout", "0.5")
    result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, *options,
                               "--", "sleep", "1000")  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.endswith("did not send READY=1 within 0.5 s; stopped it\n")
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)
    pid = tracker.start("sleep", "1000", options=options[:2])
    assert _limits(pid)["Max address space"] == ("12000000", "12000000")


def test_the_rlimit_nice_limit_is_told_apart_from_the_niceness(tracker: Tracker) -> None:
    if _capable(_CAP_SYS_RESOURCE) or resource.getrlimit(resource.RLIMIT_NICE)[1] >= 40:
        pytest.skip("may raise RLIMIT_NICE to 40")
    result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, "--nice", "5",
                               "--limit", "nice=40", "--", "sleep", "1000")  # fmt: skip
    assert result.returncode == 4
    assert result.stderr.startswith("daemonctx: error: --limit nice=40: above our hard limit")


def test_a_limit_past_what_setrlimit_takes_is_a_usage_error(tracker: Tracker) -> None:
    for value in ("9223372036854775808", "18446744073709551615"):
        result = tracker.daemonctx("start", "--pidfile", tracker.pidfile,
                                   "--limit", f"nofile={value}", "--", "sleep", "1")  # fmt: skip
        assert result.returncode == 2 and "at most 9223372036854775807" in result.stderr


def test_a_double_dash_as_an_option_s_value_is_a_usage_error(tracker: Tracker) -> None:
    """argparse before 3.12 dropped it and failed with a traceback."""
    for option in ("--nice=--", "--limit=--", "--umask=--"):
        result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, option,
                                   "--", "sleep", "1")  # fmt: skip
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.endswith(f"error: {option}: '--' is not a value\n")
    assert tracker.processes() == []
