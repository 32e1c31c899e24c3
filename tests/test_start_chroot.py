"""``start``/``run``/``restart --chroot DIR`` (start-stop-daemon's ``--chroot``,
systemd's ``RootDirectory=``): the program and ``--chdir`` are looked for inside the
jail, as the program will see them; the pidfile and the output files stay outside,
where ``status`` and ``stop`` find them. Jails are real: a copy of ``sleep`` and the
libraries ``ldd`` names, and what the daemon became is read from ``/proc``."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import (
    NOBODY,
    NOGROUP,
    STARTED,
    Tracker,
    needs_root,
    pid_alive,
    proc_environ,
    proc_status,
    wait_for,
)

from daemonctx.errors import CommandError
from daemonctx.executable import interpreter, resolve_in_root, resolve_program_in_root

_SLEEP = shutil.which("sleep")


def _make_jail(root: Path) -> Path:
    """A jail with ``/usr/bin/sleep``, ``/bin`` a relative link to ``usr/bin`` (as
    merged-usr systems have it), ``/srv``, and the libraries sleep loads."""
    assert _SLEEP is not None
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "srv").mkdir()
    (root / "bin").symlink_to("usr/bin")
    shutil.copy2(os.path.realpath(_SLEEP), root / "usr" / "bin" / "sleep")
    listed = subprocess.run(["ldd", _SLEEP], capture_output=True, text=True, check=True).stdout
    for library in re.findall(r"(/\S+) \(0x", listed):  # "libc.so.6 => /lib/... (0x...)"
        copy = root / library.lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, copy)
    return root


def _copy_into(root: Path, name: str) -> None:
    """``name`` (found in PATH) into the jail's /usr/bin, with the libraries ldd names."""
    program = shutil.which(name)
    assert program is not None
    shutil.copy2(os.path.realpath(program), root / "usr" / "bin" / name)
    listed = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout
    for library in re.findall(r"(/\S+) \(0x", listed):
        copy = root / library.lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, copy)


def start_refused(tracker: Tracker, *options: str, **popen: Any) -> tuple[int, str, str]:
    """``start OPTIONS --pidfile P -- sleep 1000``: its exit status, stdout and
    stderr, once it is known that nothing started and no pidfile was left."""
    result = tracker.daemonctx("start", *options, "--pidfile", tracker.pidfile,
                               "--", "sleep", "1000", **popen)  # fmt: skip
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture
def jail(tmp_path: Path) -> Path:
    return _make_jail(tmp_path / "jail")


needs_ldd = pytest.mark.skipif(
    _SLEEP is None or shutil.which("ldd") is None, reason="needs sleep and ldd"
)


@needs_root
@needs_ldd
def test_the_program_runs_in_the_jail_and_its_pidfile_stays_outside(
    tracker: Tracker, jail: Path
) -> None:
    """As nobody, in /srv of the jail; its supplementary groups are the host's, not
    those the jail's /etc/group lists (whoever fills the jail could grant any)."""
    (jail / "etc").mkdir()
    (jail / "etc" / "group").write_text("wheel:x:4242:nobody\n")
    result = tracker.daemonctx("start", "--chroot", str(jail), "--chdir", "srv",
                               "--user", "nobody", "--pidfile", tracker.pidfile,
                               "--", "sleep", "1000")  # fmt: skip
    assert result.returncode == 0, result.stderr
    match = STARTED.fullmatch(result.stdout)
    assert match, result.stdout
    pid = int(match.group(2))
    assert os.readlink(f"/proc/{pid}/root") == str(jail)
    assert os.readlink(f"/proc/{pid}/cwd") == str(jail / "srv")
    assert os.readlink(f"/proc/{pid}/exe") == str(jail / "usr" / "bin" / "sleep")
    status = proc_status(pid)
    assert status["Uid"].split() == [str(NOBODY)] * 4
    import pwd

    nobody = pwd.getpwnam("nobody")
    host_groups = sorted(os.getgrouplist("nobody", nobody.pw_gid))
    assert sorted(int(g) for g in status["Groups"].split()) == host_groups
    assert 4242 not in host_groups
    assert Path(tracker.pidfile).read_text() == f"{pid}\n", "the pidfile is the host's path"

    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert result.returncode == 0 and result.stdout.startswith(f"app is running (pid {pid}")
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert result.returncode == 0, result.stderr
    assert not pid_alive(pid) and not os.path.exists(tracker.pidfile)


@needs_root
@needs_ldd
def test_the_program_checked_is_the_program_run_dot_dot_after_a_link_included(
    tracker: Tracker, jail: Path
) -> None:
    """srv/link points to /opt/real: /srv/link/../prog is /opt/prog for the kernel
    (the checked one), not /srv/prog (another program, which folding the text
    gives); --chdir /srv/link/.. is /opt."""
    (jail / "opt" / "real").mkdir(parents=True)
    (jail / "srv" / "link").symlink_to("/opt/real")
    shutil.copy2(jail / "usr" / "bin" / "sleep", jail / "opt" / "prog")
    decoy = jail / "srv" / "prog"
    decoy.write_bytes(b"not a program\n")
    decoy.chmod(0o755)
    options = ("--chroot", str(jail), "--chdir", "/srv/link/..", "--pidfile", tracker.pidfile)
    result = tracker.daemonctx("start", *options, "--", "/srv/link/../prog", "1000")
    assert result.returncode == 0, result.stderr
    pid = int(Path(tracker.pidfile).read_text())
    assert os.readlink(f"/proc/{pid}/exe") == str(jail / "opt" / "prog")
    assert os.readlink(f"/proc/{pid}/cwd") == str(jail / "opt"), "--chdir /srv/link/.. is /opt"
    os.kill(pid, signal.SIGTERM)


@needs_root
@needs_ldd
def test_a_tiny_descriptor_limit_still_gets_its_error_reported(
    tracker: Tracker, jail: Path
) -> None:
    """--limit nofile=3 leaves the daemon no descriptor to import a module with:
    what a failure after the chroot reports with is loaded in the foreground."""
    busy = jail / "usr" / "bin" / "busy"
    shutil.copy2(jail / "usr" / "bin" / "sleep", busy)
    with open(busy, "ab"):  # open for writing: execve refuses it (ETXTBSY), in the jail
        result = tracker.daemonctx("start", "--chroot", str(jail), "--limit", "nofile=3",
                                   "--pidfile", tracker.pidfile, "--", "/bin/busy")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.endswith("Text file busy: '/bin/busy'\n"), result.stderr
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


@needs_root
@needs_ldd
@pytest.mark.skipif(shutil.which("systemd-notify") is None, reason="needs systemd-notify")
def test_notify_in_a_jail_gets_a_socket_inside_it_gone_with_start(
    tracker: Tracker, jail: Path
) -> None:
    """The program cannot reach start's directory in /run from the jail: its
    NOTIFY_SOCKET is a directory of root's made in the jail (which no user but root
    and the program's may write), removed when start exits, so that nobody else can
    bind it later and receive what the program sends. It was an abstract address."""
    for name in ("sh", "systemd-notify"):
        _copy_into(jail, name)
    pid = tracker.start("sh", "-c", "systemd-notify --ready; exec sleep 1000",
                        options=("--chroot", str(jail), "--user", "nobody", "--notify",
                                 "--timeout", "20"))  # fmt: skip
    environ = dict(entry.split(b"=", 1) for entry in proc_environ(pid).split(b"\0") if entry)
    address = environ[b"NOTIFY_SOCKET"].decode()
    assert re.fullmatch(r"/daemonctx-notify\.[0-9a-f]{16}/notify", address), address
    assert not os.path.exists(f"{jail}{os.path.dirname(address)}"), "removed when start exited"
    wait_for(lambda: tracker.processes() == [pid], what="systemd-notify to exit")


@needs_root
@needs_ldd
def test_run_chroots_in_the_foreground(tracker: Tracker, jail: Path) -> None:
    argv = [*tracker.command(), "run", "--chroot", str(jail), "--pidfile", tracker.pidfile,
            "--", "/bin/sleep", "1000"]  # fmt: skip
    proc = tracker.popen(argv, env=tracker.env, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: os.readlink(f"/proc/{proc.pid}/exe").endswith("/sleep"), what="the exec")
    assert os.readlink(f"/proc/{proc.pid}/root") == str(jail)
    assert os.readlink(f"/proc/{proc.pid}/cwd") == str(jail), "--chdir / inside the jail"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM


@needs_root
@needs_ldd
@pytest.mark.parametrize("command", ["run", "start"])
@pytest.mark.parametrize("where", ["outside", "bound-in", "abstract"])
def test_a_notify_socket_the_jail_lacks_is_a_warning(
    tracker: Tracker, jail: Path, command: str, where: str
) -> None:
    """Under systemd, NOTIFY_SOCKET is /run/systemd/notify: the program, chrooted,
    sends there itself (nothing of daemonctx is left after the exec to relay), so
    without that socket in the jail its READY=1 never arrived and a Type=notify unit
    failed at TimeoutStartSec=, with no word said. One line now says so and how to
    fix it; the program still runs. A socket bound into the jail (here a hard link,
    the same socket) or an @abstract one reaches it: nothing is said."""
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with manager:
        path = tracker.tmp_path / "notify"
        if where == "abstract":
            value = f"@daemonctx-test-{tracker.token}"
            manager.bind("\0" + value[1:])
        else:
            value = str(path)
            manager.bind(value)
        if where == "bound-in":
            seen = jail / str(path).lstrip("/")
            seen.parent.mkdir(parents=True)
            os.link(path, seen)
        program = "1000" if command == "start" else "0"  # run waits for its program
        env = {**tracker.env, "NOTIFY_SOCKET": value}
        result = tracker.daemonctx(command, "--chroot", str(jail), "--pidfile", tracker.pidfile,
                                   "--", "sleep", program, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    if where != "outside":
        assert result.stderr == ""
        return
    assert result.stderr == (
        f"daemonctx: warning: NOTIFY_SOCKET={value} is not in --chroot {jail}: what the"
        " program sends the service manager (READY=1, STATUS=, WATCHDOG=1) is lost; bind it"
        f" into the jail (systemd: BindReadOnlyPaths={value}:{jail}{value}) or use systemd's"
        f" RootDirectory={jail} instead of --chroot\n"
    )


@needs_root
@needs_ldd
def test_start_notify_in_a_jail_says_nothing_of_the_manager_s_socket(
    tracker: Tracker, jail: Path
) -> None:
    """With --notify the program gets start's own NOTIFY_SOCKET, not the manager's."""
    env = {**tracker.env, "NOTIFY_SOCKET": str(tracker.tmp_path / "absent")}
    options = ("--notify", "--timeout", "0.5", "--chroot", str(jail), "--pidfile", tracker.pidfile)
    result = tracker.daemonctx("start", *options, "--", "sleep", "1000", env=env)
    assert result.returncode == 1
    assert re.fullmatch(
        r"daemonctx: error: app \(pid \d+\) did not send READY=1 within 0.5 s; stopped it\n",
        result.stderr,
    ), result.stderr


@needs_root
@needs_ldd
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chroot", "{jail}", "--", "nope"], "command not found: nope in --chroot {jail}"),
        (["--chroot", "{jail}", "--", "/srv"], "/srv: is a directory in --chroot {jail}"),
        (["--chroot", "{jail}", "--", "./srv"], "./srv: is a directory in --chroot {jail}"),
        (["--chroot", "{jail}/none", "--", "sleep"], "--chroot {jail}/none: no such directory"),
        (
            ["--chroot", "{jail}", "--chdir", "/nodir", "--", "sleep"],
            "--chdir /nodir: no such directory in --chroot {jail}",
        ),
        (["--chroot", "{jail}", "--", "{ldd}"], "command not found: {ldd} in --chroot {jail}"),
    ],
    ids=[
        "not-found",
        "directory",
        "relative-directory",
        "no-jail",
        "no-chdir",
        "host-only",
    ],
)
def test_what_the_jail_lacks_fails_in_the_foreground(
    tracker: Tracker, jail: Path, args: list[str], message: str
) -> None:
    """Nothing started, no pidfile. The host-only case: a program the host has at
    that path, the jail not."""
    values = {"jail": str(jail), "ldd": str(shutil.which("ldd"))}
    typed = [arg.format(**values) for arg in args]
    result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, *typed)
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert result.stderr == f"daemonctx: error: {message.format(**values)}\n"
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


@needs_root
@needs_ldd
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_without_cap_sys_chroot_it_is_refused_before_anything_starts(
    tracker: Tracker, jail: Path
) -> None:
    drop = ["setpriv", "--bounding-set", "-sys_chroot", "--inh-caps", "-sys_chroot"]
    result = tracker.daemonctx("start", "--chroot", str(jail), "--pidfile", tracker.pidfile,
                               "--", "sleep", "1000", prefix=drop)  # fmt: skip
    assert (result.returncode, result.stderr) == (
        4,
        f"daemonctx: error: --chroot {jail}: changing the root directory needs root"
        " (CAP_SYS_CHROOT)\n",
    )
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


def _bob_owns_the_jail(jail: Path) -> str:
    os.chown(jail, NOBODY, -1)
    return f"{jail} is owned by uid {NOBODY}"


def _world_writable(jail: Path) -> str:
    jail.chmod(0o777)
    return f"{jail} is writable by others (mode 0777)"


def _sticky_world_writable(jail: Path) -> str:
    jail.chmod(0o1777)  # anyone may still make /lib there, if the jail has none
    return f"{jail} is writable by others (mode 1777)"


def _group_writable(jail: Path) -> str:
    os.chown(jail, 0, NOGROUP)
    jail.chmod(0o775)
    return f"{jail} is writable by group {NOGROUP} (mode 0775)"


def _in_bob_s_directory(jail: Path) -> str:
    os.chown(jail.parent, NOBODY, -1)  # bob may rename the jail and put his own there
    return f"{jail.parent} is owned by uid {NOBODY}"


def _through_bob_s_link(jail: Path) -> str:
    link = jail.parent / "link"
    link.symlink_to(jail)
    os.lchown(link, NOBODY, -1)
    return f"{link} is a symbolic link owned by uid {NOBODY}"


def _dot_dot_after_bob_s_link(jail: Path) -> str:
    """link/.. is the parent of where the link leads (bob's), not link's own."""
    bobs = jail.parent / "bobs"
    (bobs / "sub").mkdir(parents=True)
    os.chown(bobs, NOBODY, -1)
    (jail.parent / "link").symlink_to(bobs / "sub")
    return f"{bobs} is owned by uid {NOBODY}"


def _sticky_above_a_dot_dot(jail: Path) -> str:
    """/tmp-like, reached as "sub/..": the walk entered it on the way (sticky was
    enough there), and ended in it."""
    jail.chmod(0o1777)
    (jail / "sub").mkdir()
    return f"{jail} is writable by others (mode 1777)"


def _sticky_through_a_link_to_dot(jail: Path) -> str:
    jail.chmod(0o1777)
    (jail / "here").symlink_to(".")
    return f"{jail} is writable by others (mode 1777)"


@needs_root
@needs_ldd
@pytest.mark.parametrize(
    "plant",
    [
        _sticky_above_a_dot_dot,
        _sticky_through_a_link_to_dot,
        _dot_dot_after_bob_s_link,
        _bob_owns_the_jail,
        _world_writable,
        _sticky_world_writable,
        _group_writable,
        _in_bob_s_directory,
        _through_bob_s_link,
    ],
)
def test_a_jail_another_user_could_fill_is_refused_before_anything_starts(
    tracker: Tracker, jail: Path, plant: Callable[[Path], str]
) -> None:
    """Root enters the jail and runs what it finds there: whoever else can write it,
    or the directories above it, could plant the program or its loader (sshd
    refuses such a ChrootDirectory too). LSB 4, nothing started, no pidfile."""
    reason = plant(jail)
    typed_as: dict[Callable[[Path], str], str] = {
        _through_bob_s_link: f"{jail.parent}/link",
        _dot_dot_after_bob_s_link: f"{jail.parent}/link/..",
        _sticky_above_a_dot_dot: f"{jail}/sub/..",
        _sticky_through_a_link_to_dot: f"{jail}/here",
    }
    typed = typed_as.get(plant, str(jail))
    assert start_refused(tracker, "--chroot", typed) == (
        4,
        "",
        f"daemonctx: error: refusing --chroot {typed}: {reason}\n",
    )


@needs_root
@needs_ldd
def test_a_jail_of_the_user_is_not_trusted_with_a_group_the_user_lacks(
    tracker: Tracker, jail: Path
) -> None:
    """--user nobody --group root: nobody could fill its jail with code that then
    runs with a group nobody does not have."""
    os.chown(jail, NOBODY, -1)
    options = ("--chroot", str(jail), "--user", "nobody", "--group", "root")
    assert start_refused(tracker, *options) == (
        4,
        "",
        f"daemonctx: error: refusing --chroot {jail}: {jail} is owned by uid {NOBODY}\n",
    )


@needs_root
@needs_ldd
def test_the_jail_entered_is_the_one_checked(tracker: Tracker, jail: Path) -> None:
    """The daemon chroots to the path the check resolved, in the launcher: not to
    the path again, which /proc/self/... (or a link moved since) resolves
    elsewhere in the daemon."""
    options = ("--chroot", "/proc/self/cwd/jail", "--pidfile", tracker.pidfile)
    result = tracker.daemonctx("start", *options, "--", "sleep", "1000", cwd=jail.parent)
    assert result.returncode == 0, result.stderr
    pid = int(Path(tracker.pidfile).read_text())
    assert os.readlink(f"/proc/{pid}/root") == str(jail)
    os.kill(pid, signal.SIGTERM)


@needs_root
@needs_ldd
def test_a_jail_given_as_an_open_descriptor_is_refused(tracker: Tracker, jail: Path) -> None:
    """/proc/self/fd/N (or /dev/fd/N): what it leads to is not the daemon's to see."""
    fd = os.open(jail, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for typed in (f"/proc/self/fd/{fd}", f"/dev/fd/{fd}"):
            assert start_refused(tracker, "--chroot", typed, pass_fds=(fd,)) == (
                4,
                "",
                f"daemonctx: error: refusing --chroot {typed}: a link to an open file;"
                " give the directory's path\n",
            )
    finally:
        os.close(fd)


@needs_root
@needs_ldd
def test_a_jail_of_the_daemon_s_own_user_is_entered(tracker: Tracker, jail: Path) -> None:
    """The program runs as that user: the jail's owner can change nothing it could
    not change anyway. Without --user, root would run it: refused (above)."""
    os.chown(jail, NOBODY, -1)
    result = tracker.daemonctx("start", "--chroot", str(jail), "--user", "nobody",
                               "--pidfile", tracker.pidfile, "--", "sleep", "1000")  # fmt: skip
    assert result.returncode == 0, result.stderr
    pid = int(Path(tracker.pidfile).read_text())
    assert os.readlink(f"/proc/{pid}/root") == str(jail)
    assert proc_status(pid)["Uid"].split() == [str(NOBODY)] * 4
    os.kill(pid, signal.SIGTERM)


@needs_root
@needs_ldd
def test_a_loader_missing_from_the_jail_fails_in_the_foreground(
    tracker: Tracker, jail: Path
) -> None:
    """sleep is there, its ELF loader (PT_INTERP) is not: execve would fail with
    "No such file or directory" for a file that exists."""
    needed = interpreter(str(jail / "usr" / "bin" / "sleep"))
    assert needed is not None and needed[0] == "ELF"
    (jail / needed[1].lstrip("/")).unlink()
    result = tracker.daemonctx("start", "--chroot", str(jail), "--pidfile", tracker.pidfile,
                               "--", "sleep", "1000")  # fmt: skip
    assert (result.returncode, result.stderr) == (
        1,
        f"daemonctx: error: sleep: its ELF loader {needed[1]} is not found in --chroot {jail}\n",
    )
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


@needs_root
@needs_ldd
def test_a_script_whose_shell_lacks_its_loader_in_the_jail_fails_in_the_foreground(
    tracker: Tracker, jail: Path
) -> None:
    """The common jail mistake one level down: /bin/sh is there, its loader not."""
    shutil.copy2(jail / "usr" / "bin" / "sleep", jail / "usr" / "bin" / "sh")  # an ELF "shell"
    needed = interpreter(str(jail / "usr" / "bin" / "sh"))
    assert needed is not None
    (jail / needed[1].lstrip("/")).unlink()
    script = jail / "srv" / "app"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    result = tracker.daemonctx("start", "--chroot", str(jail), "--pidfile", tracker.pidfile,
                               "--", "/srv/app")  # fmt: skip
    assert (result.returncode, result.stderr) == (
        1,
        f"daemonctx: error: /srv/app: its interpreter /bin/sh: its ELF loader {needed[1]} is"
        f" not found in --chroot {jail}\n",
    )
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


@needs_root
@needs_ldd
def test_an_exec_that_fails_inside_the_jail_fails_the_start_whole(
    tracker: Tracker, jail: Path
) -> None:
    """A program the kernel refuses to run though the foreground found nothing wrong
    with it (open for writing: ETXTBSY): execve fails in the jail, after the
    chroot, where no module file is reachable; the report still comes back, and
    nothing is left."""
    busy = jail / "usr" / "bin" / "busy"
    shutil.copy2(jail / "usr" / "bin" / "sleep", busy)
    with open(busy, "ab"):
        result = tracker.daemonctx("start", "--chroot", str(jail), "--pidfile", tracker.pidfile,
                                   "--", "/bin/busy")  # fmt: skip
    assert (result.returncode, result.stderr) == (
        1,
        "daemonctx: error: app failed to start: OSError: [Errno 26] Text file busy: '/bin/busy'\n",
    )
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


@needs_root
@needs_ldd
def test_restart_into_a_jail_that_lacks_the_program_leaves_the_daemon_running(
    tracker: Tracker, jail: Path
) -> None:
    pid = tracker.start("sleep", "1000", options=("--chroot", str(jail)))
    (jail / "usr" / "bin" / "sleep").unlink()
    result = tracker.daemonctx("restart", "--chroot", str(jail), "--pidfile", tracker.pidfile,
                               "--", "sleep", "1000")  # fmt: skip
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"daemonctx: error: command not found: sleep in --chroot {jail}\n"
    assert pid_alive(pid) and tracker.processes() == [pid]
    os.kill(pid, signal.SIGTERM)


# -- looking inside the jail from here: pure path logic on a real tree ---------------------


def test_links_are_followed_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "app").write_text("")
    (root / "bin").symlink_to("usr/bin")
    (root / "opt").symlink_to("/usr/bin")  # absolute: the jail's /usr/bin
    (root / "up").symlink_to("../../../../../../etc")  # .. stops at the root
    (root / "etc").mkdir()
    (root / "loop").symlink_to("loop")
    (root / "usr" / "lib").mkdir()
    (root / "usr" / "lib" / "app").symlink_to("/usr/bin/app")  # absolute, deeper down
    assert resolve_in_root(str(root), "/bin/app") == str(root / "usr" / "bin" / "app")
    assert resolve_in_root(str(root), "/opt/app") == str(root / "usr" / "bin" / "app")
    assert resolve_in_root(str(root), "/usr/lib/app") == str(root / "usr" / "bin" / "app")
    assert resolve_in_root(str(root), "/up/passwd") == str(root / "etc" / "passwd")
    assert resolve_in_root(str(root), "/../../etc") == str(root / "etc")
    assert resolve_in_root(str(root), "/loop/x") is None


def test_the_program_is_searched_in_the_jail_s_path(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    program = root / "usr" / "bin" / "app"
    shutil.copy2("/bin/true", program)  # a program of this machine, and a loader for it
    loader = interpreter(str(program))
    assert loader is not None
    (root / loader[1].lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    (root / loader[1].lstrip("/")).touch(mode=0o755)
    (root / "bin").symlink_to("/usr/bin")
    (root / "srv").mkdir()
    found = resolve_program_in_root("app", str(root), "/", "/nowhere:/bin")
    assert found == "/bin/app", "the path to exec, as the jail names it"
    found = resolve_program_in_root("../usr/bin/app", str(root), "/srv", "")
    assert found == "/srv/../usr/bin/app", "joined, not folded: the kernel resolves it so"
    assert resolve_program_in_root("app", str(root), "/usr/bin", ":/nowhere") == "/usr/bin/./app"
    (root / "srv" / "link").symlink_to("/usr/lib")  # link/.. is /usr, where the kernel looks
    (root / "usr" / "lib").mkdir()
    assert resolve_program_in_root("link/../bin/app", str(root), "/srv", "") == (
        "/srv/link/../bin/app"
    )
    with pytest.raises(CommandError, match=r"command not found: link/\.\./app"):
        resolve_program_in_root("link/../app", str(root), "/srv", "")  # no /usr/app
    with pytest.raises(CommandError, match="/bin/app/: not a directory in --chroot"):
        resolve_program_in_root("/bin/app/", str(root), "/", "")  # ENOTDIR for the kernel
    with pytest.raises(CommandError, match=r"command not found: nowhere/\.\./app"):
        resolve_program_in_root("nowhere/../app", str(root), "/usr/bin", "")  # ENOENT
    with pytest.raises(CommandError, match=r"command not found: app/\.\./app"):
        resolve_program_in_root("app/../app", str(root), "/usr/bin", "")  # ENOTDIR
    program.chmod(0o644)

    with pytest.raises(CommandError, match="not executable"):
        resolve_program_in_root("/bin/app", str(root), "/", "")
    with pytest.raises(CommandError, match=r"^command not found: app in --chroot "):
        resolve_program_in_root("app", str(root), "/", "/bin")
    with pytest.raises(CommandError, match="command not found"):  # the host has it
        resolve_program_in_root(str(shutil.which("ldd")), str(root), "/", "")
