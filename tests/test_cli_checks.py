"""What the single-daemon commands refuse in the foreground, before anything
starts or a running daemon is stopped: numbers in other scripts' digits, an
output file that is the pidfile, a program exec cannot run (as the user it
will run as), a pidfile path that cannot be used; and what a pidfile and the
start-up pipe do with no file descriptor to spare.

Real processes, real files: ``daemonctx`` runs as a subprocess, every process
it starts is killed by the ``tracker`` fixture.
"""

from __future__ import annotations

import errno
import os
import pwd
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    READABLE_ROOT,
    STARTED,
    Tracker,
    needs_root,
    needs_tools,
    pid_alive,
    python_for_nobody,
    run_script,
    wait_for,
)

# -- numbers are ASCII digits -----------------------------------------------------


def _in_script(number: int, zero: str) -> str:
    """``number`` written in another script's digits ("٦٥٥٣٤" for 65534)."""
    return "".join(chr(ord(zero) + int(digit)) for digit in str(number))


@pytest.mark.parametrize("zero", ["\u0660", "\uff10"], ids=["arabic-indic", "fullwidth"])
def test_user_and_group_ids_are_ascii_digits(tracker: Tracker, zero: str) -> None:
    """``--user ٦٥٥٣٤`` is no uid (str.isdigit and int() would take it for 65534):
    a name, and no user has it."""
    nobody = pwd.getpwnam("nobody")
    for flag, number, what in (
        ("--user", nobody.pw_uid, "user"),
        ("--group", nobody.pw_gid, "group"),
    ):
        typed = _in_script(number, zero)
        result = tracker.daemonctx(
            "start", "-p", tracker.pidfile, flag, typed, "--", "sleep", "1000"
        )
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == f"daemonctx: error: {flag} {typed}: no such {what}\n"
        assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


@pytest.mark.parametrize(
    ("flag", "typed"),
    [
        ("--umask", "\u0660\u0667\u0667"),
        ("--umask", "0o77"),
        ("--umask", "+77"),
        ("--umask", "0_77"),
        ("--timeout", "\u0661\u0660"),
        ("--ready-after", "\u0661"),
    ],
)
def test_masks_and_seconds_are_ascii(tracker: Tracker, flag: str, typed: str) -> None:
    result = tracker.daemonctx("start", "-p", tracker.pidfile, flag, typed, "--", "sleep", "1000")
    assert result.returncode == 2, result.stderr
    assert f"argument {flag}" in result.stderr and repr(typed) in result.stderr
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


def test_ready_after_0_is_the_default_said_out_loud(tracker: Tracker) -> None:
    """``--ready-after 0`` (the documented default, no wait) starts as without it;
    below 0 is refused, as is ``inf`` (a start that would never end), and a
    timeout of 0 still is."""
    pid = tracker.start("sleep", "1000", options=("--ready-after", "0"))
    assert pid_alive(pid)
    for flag, typed, reason in (
        ("--ready-after", "-1", "must be 0 or more, and finite"),
        ("--ready-after", "nan", "must be 0 or more, and finite"),
        ("--ready-after", "inf", "must be 0 or more, and finite"),
        ("--ready-after", "1e309", "must be 0 or more, and finite"),
        ("--timeout", "0", "must be more than 0"),
    ):
        pidfile = str(tracker.tmp_path / "other.pid")
        result = tracker.daemonctx("start", "-p", pidfile, flag, typed, "--", "sleep", "1000")
        assert result.returncode == 2, result.stderr
        assert f"argument {flag}: {reason}: {typed!r}" in result.stderr
        assert not os.path.exists(pidfile)


def test_an_ascii_umask_still_works(tracker: Tracker) -> None:
    out = tracker.tmp_path / "out.log"
    pid = tracker.start(
        "sh", "-c", "umask; exec sleep 1000", options=("--umask", "077", "--stdout", str(out))
    )
    assert pid_alive(pid)
    wait_for(lambda: out.read_text() == "0077\n", what="the program's umask in its output")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


# -- an output file is never the pidfile ------------------------------------------


def _refusal(option: str, typed: str, pidfile: str, guard: bool = False) -> str:
    what = (
        f"the pidfile's hidden second name (the guard of --pidfile {pidfile})"
        if guard
        else f"the pidfile (--pidfile {pidfile})"
    )
    return f"daemonctx: error: {option} {typed}: that is {what}; give another file\n"


@pytest.mark.parametrize("command", ["start", "run"])
@pytest.mark.parametrize("option", ["--stdout", "--stderr"])
def test_an_output_file_that_is_the_pidfile_is_refused(
    tracker: Tracker, command: str, option: str
) -> None:
    """The program's output would overwrite the pidfile (and a --user program could
    rewrite it), or go to its guard, which release() unlinks: refused in the
    foreground, nothing started, no file made."""
    pidfile = tracker.pidfile
    guard = str(tracker.tmp_path / ".app.pid.lock")
    for typed, is_guard in ((pidfile, False), (guard, True)):
        result = tracker.daemonctx(
            command, "-p", pidfile, option, typed, "--", "sh", "-c", "seq 1 100; exec sleep 985"
        )
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == _refusal(option, typed, pidfile, is_guard)
        assert tracker.processes() == [] and os.listdir(tracker.tmp_path) == []


def test_the_pidfile_through_a_link_or_a_relative_path_is_refused(tracker: Tracker) -> None:
    """Resolved paths are compared (a symlinked directory, a relative path), and
    where both files exist, the file itself (a hard link to a stale pidfile)."""
    tmp = tracker.tmp_path
    (tmp / "link").symlink_to(tmp)
    pidfile = str(tmp / "app.pid")
    for typed in ("link/app.pid", "./app.pid", "link/.app.pid.lock"):
        result = tracker.daemonctx(
            "start", "-p", pidfile, "--stdout", typed, "--", "sleep", "985", cwd=tmp
        )
        assert (result.returncode, result.stdout) == (1, ""), result.stderr
        guard = typed.endswith(".lock")
        assert result.stderr == _refusal("--stdout", typed, pidfile, guard)
    (tmp / "app.pid").write_text("")  # stale: left empty by a crash
    os.link(tmp / "app.pid", tmp / "out.log")
    result = tracker.daemonctx(
        "start", "-p", pidfile, "--stderr", "out.log", "--", "sleep", "985", cwd=tmp
    )
    assert (result.returncode, result.stderr) == (1, _refusal("--stderr", "out.log", pidfile))
    assert tracker.processes() == [] and (tmp / "app.pid").read_text() == ""


def test_restart_with_the_pidfile_as_output_keeps_the_daemon(tracker: Tracker) -> None:
    pid = tracker.start("sleep", "985")
    for typed in (tracker.pidfile, str(tracker.tmp_path / ".app.pid.lock")):
        result = tracker.daemonctx(
            "restart", "-p", tracker.pidfile, "--stdout", typed, "--", "sh", "-c", "seq 1 100"
        )
        assert result.returncode == 1 and result.stdout == ""
        # the guard of a running daemon is the pidfile's very file
        assert result.stderr == _refusal("--stdout", typed, tracker.pidfile)
        assert tracker.processes() == [pid]
        assert Path(tracker.pidfile).read_text() == f"{pid}\n"


def test_another_output_file_beside_the_pidfile_is_fine(tracker: Tracker) -> None:
    out = tracker.tmp_path / "app.pid.log"
    pid = tracker.start("sh", "-c", "echo hi; exec sleep 985", options=("--stdout", str(out)))
    wait_for(lambda: out.read_text() == "hi\n", what="the program's output")
    assert Path(tracker.pidfile).read_text() == f"{pid}\n"


# -- a pidfile path that cannot be used --------------------------------------------

DELETED = "--pidfile x.pid: relative to a current directory that was deleted; give an absolute path"


@pytest.mark.parametrize(
    ("args", "code", "out", "err"),
    [
        (("start", "-p", "x.pid", "--", "sleep", "985"), 1, "", f"daemonctx: error: {DELETED}\n"),
        (("restart", "-p", "x.pid", "--", "sleep", "985"), 1, "", f"daemonctx: error: {DELETED}\n"),
        (("run", "-p", "x.pid", "--", "true"), 1, "", f"daemonctx: error: {DELETED}\n"),
        (("stop", "-p", "x.pid"), 1, "", f"daemonctx: error: {DELETED}\n"),
        (("signal", "-p", "x.pid", "HUP"), 1, "", f"daemonctx: error: {DELETED}\n"),
        (("status", "-p", "x.pid"), 4, f"x status is unknown: {DELETED}\n", ""),
    ],
    ids=lambda value: value[0] if isinstance(value, tuple) else None,
)
def test_a_relative_pidfile_in_a_deleted_directory_is_named(
    tracker: Tracker, args: tuple[str, ...], code: int, out: str, err: str
) -> None:
    """Every command says what start says, not "No such file or directory"."""
    gone = tracker.tmp_path / "gone"
    gone.mkdir()
    line = " ".join(f"'{word}'" for word in [*tracker.command(), *args])
    result = subprocess.run(
        ["sh", "-c", f"cd '{gone}' && rmdir '{gone}' && exec {line}"],
        capture_output=True,
        text=True,
        env=tracker.env,
        timeout=30,
    )
    assert (result.returncode, result.stdout, result.stderr) == (code, out, err)
    assert tracker.processes() == []


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("start", "--", "sleep", "985"), 1),
        (("restart", "--", "sleep", "985"), 1),
        (("run", "--", "true"), 1),
        (("stop",), 1),
        (("signal", "HUP"), 1),
        (("status",), 4),
    ],
    ids=lambda value: value[0] if isinstance(value, tuple) else None,
)
def test_a_pidfile_name_too_long_is_no_privilege_error(
    tracker: Tracker, args: tuple[str, ...], code: int
) -> None:
    """ENAMETOOLONG is a path that cannot be used, not one refused as untrusted: exit
    1 as cli.md says for each command (status: 4, "unknown"), no "refusing"."""
    pidfile = str(tracker.tmp_path / ("a" * 300 + ".pid"))
    command, *rest = args
    result = tracker.daemonctx(command, "-p", pidfile, *rest)
    why = f"cannot open pidfile {pidfile}: File name too long"
    if command == "status":
        assert (result.returncode, result.stderr) == (4, "")
        assert result.stdout == f"{'a' * 300} status is unknown: {why}\n"
    else:
        assert (result.returncode, result.stdout) == (code, "")
        assert result.stderr == f"daemonctx: error: {why}\n"
    assert tracker.processes() == []


# -- a program exec cannot run: refused before a restart stops anything ----------------

ENOEXEC_SUFFIX = ": exec cannot run it (Exec format error)"


def _patched(source: bytes, at: int, data: bytes) -> bytes:
    return source[:at] + data + source[at + len(data) :]


def _not_programs() -> dict[str, tuple[bytes, str]]:
    """Files exec refuses (or that crash as they start), each with what is said."""
    true = Path("/bin/true").read_bytes()
    return {
        "empty": (b"", "an empty file" + ENOEXEC_SUFFIX),
        "garbage": (b"\x00\x01garbage", "neither a #! script nor an ELF program" + ENOEXEC_SUFFIX),
        "header-cut": (
            true[:40], "an ELF file cut short (40 bytes, not even a header)" + ENOEXEC_SUFFIX
        ),
        "table-cut": (
            true[:100],
            "an ELF program cut short (100 bytes, its program headers end past them)"
            + ENOEXEC_SUFFIX,
        ),
        "segments-cut": (
            true[: len(true) // 2],
            f"an ELF program cut short ({len(true) // 2} bytes, its segments run past them):"
            " it would crash as it starts",
        ),
        "aarch64": (
            _patched(true, 18, b"\xb7\x00" if os.uname().machine != "aarch64" else b"\x3e\x00"),
            "an ELF program for "
            + ("aarch64, not for this machine (x86-64)" if os.uname().machine != "aarch64"
               else "x86-64, not for this machine (aarch64)")
            + ENOEXEC_SUFFIX,
        ),
        "object-file": (
            _patched(true, 16, b"\x01\x00"),
            "an ELF file that is no program (a relocatable object)" + ENOEXEC_SUFFIX,
        ),
    }  # fmt: skip


needs_elf_system = pytest.mark.skipif(
    os.uname().machine not in ("x86_64", "aarch64")
    or os.path.exists("/proc/sys/fs/binfmt_misc/status"),
    reason="the files are made for x86-64 or aarch64, and binfmt_misc may run foreign ones",
)


@needs_elf_system
@pytest.mark.parametrize("kind", list(_not_programs()))
def test_restart_for_a_program_exec_cannot_run_keeps_the_daemon(
    tracker: Tracker, kind: str
) -> None:
    content, why = _not_programs()[kind]
    program = tracker.tmp_path / "t"
    program.write_bytes(content)
    program.chmod(0o755)
    if why.endswith(ENOEXEC_SUFFIX):  # the kernel's own answer
        with pytest.raises(OSError) as info:
            subprocess.run([str(program)], check=False)
        assert info.value.errno == errno.ENOEXEC
    pid = tracker.start("sleep", "985")
    for command in ("restart", "start", "run"):
        result = tracker.daemonctx(
            command, "-p", tracker.pidfile, "--", "./t", cwd=tracker.tmp_path
        )
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == f"daemonctx: error: ./t: {why}\n"
        assert tracker.processes() == [pid]
        assert Path(tracker.pidfile).read_text() == f"{pid}\n"


@needs_elf_system
def test_a_script_whose_interpreter_exec_cannot_run_is_refused(tracker: Tracker) -> None:
    (tracker.tmp_path / "interp").write_bytes(b"garbage")
    (tracker.tmp_path / "interp").chmod(0o755)
    script = tracker.tmp_path / "app.sh"
    script.write_text(f"#!{tracker.tmp_path}/interp\n")
    script.chmod(0o755)
    result = tracker.daemonctx("start", "-p", tracker.pidfile, "--", str(script))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"daemonctx: error: {script}: its interpreter {tracker.tmp_path}/interp: neither a #!"
        f" script nor an ELF program{ENOEXEC_SUFFIX}\n"
    )
    assert tracker.processes() == []


@needs_elf_system
def test_what_the_kernel_runs_is_not_refused(tracker: Tracker) -> None:
    """The kernel reads e_machine in its own byte order and ignores EI_DATA and
    EI_CLASS for its own machine: such a /bin/true runs, and is not refused."""
    true = Path("/bin/true").read_bytes()
    for name, content in (
        ("order", _patched(true, 5, b"\x02")),
        ("class", _patched(true, 4, b"\x01")),
    ):
        program = tracker.tmp_path / name
        program.write_bytes(content)
        program.chmod(0o755)
        assert subprocess.run([str(program)], check=False).returncode == 0, "the kernel runs it"
        pid = tracker.start(str(program))
        assert pid > 0
        assert tracker.daemonctx("stop", "-p", tracker.pidfile).returncode == 0


def test_binfmt_misc_handlers_stop_the_guess(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a handler enabled in binfmt_misc (qemu-user, wine), a file the kernel's
    own formats refuse may still run: no format error is guessed."""
    from daemonctx import executable

    garbage = tmp_path / "t"
    garbage.write_bytes(b"MZ\x90\x00 a Windows program")
    misc = tmp_path / "binfmt_misc"
    misc.mkdir()
    monkeypatch.setattr(executable, "_BINFMT_MISC", str(misc))
    said = "neither a #! script nor an ELF program" + ENOEXEC_SUFFIX
    assert executable.format_problem(str(garbage)) == said, "not mounted"
    (misc / "register").write_text("")
    (misc / "status").write_text("enabled\n")
    assert executable.format_problem(str(garbage)) == said, "mounted, no handler"
    (misc / "wine").write_text("disabled\ninterpreter /usr/bin/wine\n")
    assert executable.format_problem(str(garbage)) == said, "a handler, disabled"
    (misc / "wine").write_text("enabled\ninterpreter /usr/bin/wine\n")
    assert executable.format_problem(str(garbage)) is None
    (misc / "status").write_text("disabled\n")
    assert executable.format_problem(str(garbage)) == said, "binfmt_misc disabled"


# -- permission denied: LSB 4 ----------------------------------------------------------

AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def daemonctx_as_nobody(tracker: Tracker, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m daemonctx ARGS`` run as nobody, with the daemonctx nobody can read
    and our Python, else python_for_nobody()'s (skip the test when neither imports
    daemonctx and lockfile so)."""
    env = {**tracker.env, "PYTHONPATH": str(READABLE_ROOT)}  # keeps the tracker's token
    python = sys.executable
    if not _imports_daemonctx_as_nobody(python, env):
        python = python_for_nobody()
        if not _imports_daemonctx_as_nobody(python, env):
            pytest.skip("no Python here runs daemonctx and lockfile as nobody")
    argv = [*AS_NOBODY, python, "-m", "daemonctx", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)


def _imports_daemonctx_as_nobody(python: str, env: dict[str, str]) -> bool:
    probe = [*AS_NOBODY, python, "-c", "import daemonctx, lockfile"]
    return subprocess.run(probe, env=env, capture_output=True, timeout=30).returncode == 0


@needs_root
@needs_tools("setpriv")
@pytest.mark.parametrize(
    "case", ["start pidfile", "restart pidfile", "run pidfile", "start --stdout", "start --chdir"]
)
def test_a_start_denied_a_path_exits_4_as_stop_and_status_do(
    open_tracker: Tracker, shared_dir: Path, case: str
) -> None:
    """Run as nobody: a pidfile in root's directory, an output file there, a --chdir
    nobody may not enter. Exit 4, LSB's "insufficient privilege", as cli.md says
    and as stop and status exit for the same EACCES (start, restart and run exited
    1); one line, and nothing left."""
    tmp = open_tracker.tmp_path  # root's, 0755
    private = tmp / "private"
    private.mkdir(mode=0o700)
    command, what = case.split()
    pidfile = str((tmp if what == "pidfile" else shared_dir) / "app.pid")
    options = {"--stdout": [what, str(tmp / "out.log")], "--chdir": [what, str(private)]}
    argv = [command, "-p", pidfile, *options.get(what, []), "--", "sleep", "985"]
    result = daemonctx_as_nobody(open_tracker, *argv)
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith("daemonctx: error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "ermission denied" in result.stderr, result.stderr
    assert open_tracker.processes() == []
    assert not os.path.exists(pidfile)


@needs_root
@needs_tools("setpriv")
@pytest.mark.parametrize("command", ["supervise", "ctl"])
def test_a_configuration_file_nobody_may_read_exits_4(open_tracker: Tracker, command: str) -> None:
    """Run as nobody: ``supervise --config F`` and ``ctl --config F status`` of a
    file only root may read. Exit 4, LSB's "insufficient privilege", in one line
    (``ctl`` exited 2, "bad usage"; ``supervise`` 1); nothing started."""
    tmp = open_tracker.tmp_path  # root's, 0755
    config = tmp / "shop.toml"
    control = tmp / "control.sock"
    config.write_text(
        f'[supervisor]\ncontrol = "{control}"\n[program.web]\ncommand = ["sleep", "985"]\n'
    )
    config.chmod(0o600)
    argv = ["supervise", "--config", str(config)]
    if command == "ctl":
        argv = ["ctl", "--config", str(config), "status"]
    result = daemonctx_as_nobody(open_tracker, *argv)
    assert result.returncode == 4, result.stderr
    assert result.stderr == f"daemonctx: error: {config}: cannot read: Permission denied\n"
    assert open_tracker.processes() == []
    assert not control.exists()


# -- a program its --user may not run --------------------------------------------------


@needs_root
@pytest.mark.parametrize("kind", ["program", "script", "directory"])
def test_restart_for_a_program_the_user_may_not_run_keeps_the_daemon(
    open_tracker: Tracker, kind: str
) -> None:
    """The foreground runs as root, the program as --user nobody: what exec would
    refuse (EACCES) as nobody is refused first, from the mode bits, owners and
    nobody's groups: a root-only file, a script nobody may not read (its
    interpreter reads it), a directory nobody may not search."""
    tmp = open_tracker.tmp_path
    where = tmp
    if kind == "directory":
        where = tmp / "private"
        where.mkdir(mode=0o700)
    program = where / "app"
    if kind == "script":
        program.write_text("#!/bin/sh\nexec sleep 985\n")
        program.chmod(0o711)
    else:
        program.write_bytes(Path("/bin/sleep").read_bytes())
        program.chmod(0o700 if kind == "program" else 0o755)
    pid = open_tracker.start("sleep", "985", options=("--user", "nobody"))
    result = open_tracker.daemonctx(
        "restart", "-p", open_tracker.pidfile, "--user", "nobody", "--", str(program), "985"
    )
    assert (result.returncode, result.stdout) == (1, "")
    why = {
        "program": "may not execute it (mode 0700, owner uid 0, group 0)",
        "script": "may not read it, and its interpreter must (mode 0711, owner uid 0, group 0)",
        "directory": f"may not reach it: {where} is mode 0700, owner uid 0, group 0",
    }[kind]
    assert result.stderr == f"daemonctx: error: {program}: --user nobody {why}\n"
    assert open_tracker.processes() == [pid]
    program.chmod(0o755)  # nobody's to run now, where it may reach it
    if kind == "directory":
        return
    result = open_tracker.daemonctx(
        "restart", "-p", open_tracker.pidfile, "--user", "nobody", "--", str(program), "985"
    )
    assert result.returncode == 0, result.stderr
    new = STARTED.fullmatch(result.stdout.splitlines(keepends=True)[1])
    assert new is not None
    started = open_tracker.add(int(new.group(2)))
    # the script execs sleep: its /proc/PID/environ reads empty for a moment then
    wait_for(lambda: open_tracker.processes() == [started], what="the new daemon alone")


@needs_root
def test_a_group_that_may_run_it_is_enough(open_tracker: Tracker) -> None:
    """Execute permission for the user's group (one of its groups from initgroups,
    or --group's) is enough: no false refusal."""
    program = open_tracker.tmp_path / "app"
    program.write_bytes(Path("/bin/sleep").read_bytes())
    nobody = pwd.getpwnam("nobody")
    os.chown(program, 0, nobody.pw_gid)
    program.chmod(0o750)
    pid = open_tracker.start(str(program), "985", options=("--user", "nobody"))
    assert pid_alive(pid)


# -- with no file descriptor to spare ----------------------------------------------

# Fills the descriptor table (a limit of 64) with /dev/null, kept in ``held``.
_FILL = """
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
held = []
while True:
    try:
        held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        break
"""

_ONE_FD_LEFT = (
    """
import os, resource, sys
if {first!r}:
    import lockfile
from daemonctx.pidfile import PIDLockFile
"""
    + _FILL
    + """os.close(held.pop())  # one descriptor left
try:
    PIDLockFile({path!r}).acquire()
except Exception as exc:
    said = f"{{type(exc).__module__}}.{{type(exc).__name__}}: {{exc}}"
else:
    said = "acquired"
for fd in held:
    os.close(fd)
print(said)
"""
)


@pytest.mark.parametrize("lockfile_first", [False, True], ids=["lazy-lockfile", "lockfile-loaded"])
def test_a_failed_acquire_with_one_descriptor_left_leaves_no_file(
    tmp_path: Path, lockfile_first: bool
) -> None:
    """pidfiles.md: with one descriptor left, acquire() fails at once with LockFailed
    (it needs two), and whether or not lockfile was imported, the file it created
    is gone again: the next start finds no empty pidfile of a start that failed."""
    path = tmp_path / "app.pid"
    result = run_script(_ONE_FD_LEFT.format(first=lockfile_first, path=str(path)))
    assert result.stdout == (
        f"lockfile.LockFailed: cannot open pidfile {path}: Too many open files\n"
    ), result.stderr
    assert os.listdir(tmp_path) == []
    path.write_text("4242\n")  # a stale pidfile it did not create: left as it was
    result = run_script(_ONE_FD_LEFT.format(first=lockfile_first, path=str(path)))
    assert result.stdout.startswith("lockfile.LockFailed: cannot open pidfile"), result.stderr
    assert os.listdir(tmp_path) == ["app.pid"] and path.read_text() == "4242\n"


_ERROR_AT_THE_LIMIT = (
    """
import os, resource
from daemonctx import DaemonContext
"""
    + _FILL
    + """for _ in range({spare}):
    os.close(held.pop())
try:
    with DaemonContext(ready_on_open=False, detach_process=True):
        raise RuntimeError("the daemon's own error")
except BaseException as exc:
    said = f"{{type(exc).__name__}}: {{exc}}"
for fd in held:
    os.close(fd)
print(said)
"""
)


@pytest.mark.parametrize("spare", [2, 3])
def test_the_daemons_error_is_told_by_a_launcher_at_its_descriptor_limit(spare: int) -> None:
    """ulimit -n 64, all but two descriptors in use: the start-up pipe takes both,
    the daemon's pidfd the read end's place once the write end is closed. Its error
    record still comes back as its error, not as the EMFILE of an import (pidfd,
    json) on the way to telling it."""
    result = run_script(_ERROR_AT_THE_LIMIT.format(spare=spare))
    match = re.fullmatch(
        r"DaemonStartupError: the daemon \(pid (\d+)\) failed to start:"
        r" RuntimeError: the daemon's own error\n",
        result.stdout,
    )
    assert match, (result.stdout, result.stderr)
    wait_for(lambda: not pid_alive(int(match.group(1))), what="the failed daemon gone")


# -- the --user's own directory ----------------------------------------------------------


@needs_root
def test_start_user_refuses_a_pidfile_in_that_users_directory(tracker: Tracker) -> None:
    """A DaemonContext with ``uid`` trusts that user's directory for its pidfile; the
    command does not: its ``status`` and ``stop``, as root, would have to trust a
    pidfile that user can forge (locked by any process it passes the open file to),
    and a daemon they would refuse to look at must not be started."""
    run = tracker.tmp_path / "svc"
    run.mkdir(mode=0o755)
    os.chown(run, 65534, 65534)
    pidfile = str(run / "app.pid")
    result = tracker.daemonctx("start", "-p", pidfile, "--user", "65534", "--", "sleep", "1000")
    assert (result.returncode, result.stdout) == (4, "")
    assert result.stderr == (
        f"daemonctx: error: refusing pidfile {pidfile}: {run} is owned by uid 65534\n"
    )
    assert tracker.processes() == [] and list(run.iterdir()) == []


# -- a word too many: the usage of the command it was given to ---------------------------


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["ctl", "--control", "{tmp}/c.sock", "ping", "extra"], "daemonctx ctl [options] ping"),
        (["ctl", "--control", "{tmp}/c.sock", "reload", "extra"], "daemonctx ctl [options] reload"),
        (["signal", "-p", "{tmp}/a.pid", "HUP", "HUP"], "daemonctx signal --pidfile PATH"),
        (["status", "-p", "{tmp}/a.pid", "extra"], "daemonctx status --pidfile PATH"),
        (["start", "-p", "{tmp}/a.pid", "--bogus", "--", "sleep", "985"], "daemonctx start"),
    ],
    ids=["ctl ping", "ctl reload", "signal", "status", "start"],
)
def test_a_word_too_many_is_said_with_its_commands_usage(
    open_tracker: Tracker, args: list[str], usage: str
) -> None:
    """An argument no command takes: exit 2, nothing done, and the usage line of
    the (sub)command it was given to, not the top level's (``usage: daemonctx
    [-h] [--version] COMMAND ...``, which says nothing of ``ping``'s)."""
    argv = [arg.replace("{tmp}", str(open_tracker.tmp_path)) for arg in args]
    result = open_tracker.daemonctx(*argv)
    assert result.returncode == 2, result
    first, said = result.stderr.splitlines()
    assert first.startswith(f"usage: {usage}"), first
    assert said.endswith(
        f": error: unrecognized arguments: {args[-1] if args[-1] != '985' else '--bogus'}"
    )
    assert open_tracker.processes() == []


def test_a_command_without_its_dash_dash_is_said_to_need_one(tracker: Tracker) -> None:
    """``start -p X sleep 1``: the words are the COMMAND, given without the '--' that
    starts it; the error says where they go, with ``start``'s usage (as does a start
    with no COMMAND at all, not the top level's)."""
    result = tracker.daemonctx("start", "-p", tracker.pidfile, "sh", "-c", "sleep 1000")
    assert (result.returncode, result.stdout) == (2, "")
    usage, said = result.stderr.splitlines()
    assert usage.startswith("usage: daemonctx start --pidfile PATH"), usage
    assert said == (
        "daemonctx start: error: unrecognized arguments: sh -c sleep 1000"
        " (a COMMAND goes after '--': -- sh -c 'sleep 1000')"
    )
    result = tracker.daemonctx("start", "-p", tracker.pidfile)
    usage, said = result.stderr.splitlines()
    assert result.returncode == 2 and usage.startswith("usage: daemonctx start --pidfile PATH")
    assert said == "daemonctx start: error: missing -- COMMAND [ARG...]"
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["stop", "--exec", "/usr/sbin/nginx"],
         "unrecognized arguments: --exec /usr/sbin/nginx (start-stop-daemon's --exec;"
         " here: the program is the COMMAND after '--'; stop and status find the daemon"
         " by its pidfile's lock, with no filter)"),
        (["start", "--oknodo", "--", "sleep", "1000"],
         "unrecognized arguments: --oknodo (start-stop-daemon's --oknodo; here: stop of a"
         " daemon not running exits 0 anyway; start of a running one fails, exit 1)"),
        (["start", "--user", "nobody:nogroup", "--", "sleep", "1000"],
         "argument --user: no user name holds ':' (for USER:GROUP give --user nobody"
         " --group nogroup): 'nobody:nogroup'"),
    ],
    ids=["stop --exec", "start --oknodo", "start --user USER:GROUP"],
)  # fmt: skip
def test_start_stop_daemon_s_options_say_what_to_write_here(
    tracker: Tracker, args: list[str], said: str
) -> None:
    """An init script's start-stop-daemon options, kept: exit 2, nothing started,
    and what daemonctx takes instead ("no such user 'nobody:nogroup'" before)."""
    command, *rest = args
    result = tracker.daemonctx(command, "-p", tracker.pidfile, *rest)
    assert (result.returncode, result.stdout) == (2, ""), result
    assert result.stderr.splitlines()[-1] == f"daemonctx {command}: error: {said}"
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


def test_stop_takes_oknodo_as_init_scripts_write_it(tracker: Tracker) -> None:
    """``stop --oknodo`` (start-stop-daemon's "exit 0 if nothing was done") is what
    stop does anyway: taken, and the daemon stopped; again, "not running", exit 0."""
    pid = tracker.start("sleep", "1000")
    result = tracker.daemonctx("stop", "-p", tracker.pidfile, "--oknodo")
    assert result.returncode == 0, result
    assert result.stdout.startswith(f"stopped app (pid {pid}) in ")
    assert not pid_alive(pid) and not os.path.exists(tracker.pidfile)
    result = tracker.daemonctx("stop", "-p", tracker.pidfile, "--oknodo")
    assert (result.returncode, result.stdout) == (0, "app is not running\n")
    assert "--oknodo" not in tracker.daemonctx("stop", "--help").stdout  # kept out of sight
