"""Tests for daemonctx.paths, on real files planted by a real other user.

The attacker is uid/gid 65534 (nobody): a forked child drops to it and creates the
symlinks and files, so they really are nobody's. The tests work in a fresh directory
under /tmp: pytest's tmp_path sits in /tmp/pytest-of-root, mode 0700, which nobody
cannot get through.
"""

from __future__ import annotations

import errno
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from conftest import NOBODY, ROOT, needs_root, run_as_nobody

from daemonctx import paths
from daemonctx.errors import DaemonError
from daemonctx.paths import (
    UnsafePathError,
    check_owned_file,
    check_path,
    open_log,
    trusted_uids,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def base(open_dir: Path) -> Path:
    """A 0755 directory of ours, which nobody can reach but not write."""
    return open_dir


@pytest.fixture
def shared(shared_dir: Path) -> Path:
    """A directory like /tmp: anyone may create entries, only their owner remove them."""
    return shared_dir


@pytest.fixture
def secret(base: Path) -> Path:
    """A file of root's that an attacker would like root to overwrite."""
    path = base / "secret"
    path.write_bytes(b"root's data\n")
    return path


def write_log(path: Path | str, data: bytes, **kwargs: int) -> None:
    fd = open_log(str(path), "--stdout", **kwargs)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def unchanged(path: Path) -> Callable[[], None]:
    """Remember ``path``'s content and mtime; the returned function asserts both stayed."""
    before = (path.read_bytes(), path.stat().st_mtime_ns)

    def check() -> None:
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before

    return check


# -- plain paths ----------------------------------------------------------------------


def test_new_file_gets_mode_0640_less_umask_and_appends(base: Path) -> None:
    log = base / "app.log"
    assert check_path(str(log), "--stdout") == str(log)
    write_log(log, b"one\n")
    write_log(log, b"two\n")
    assert log.read_bytes() == b"one\ntwo\n"
    assert stat.S_IMODE(log.stat().st_mode) == 0o640
    assert log.stat().st_uid == os.geteuid()

    write_log(base / "private.log", b"x", umask=0o077)
    assert stat.S_IMODE((base / "private.log").stat().st_mode) == 0o600

    old = os.umask(0o077)  # the process's umask does not narrow the mode asked for
    try:
        write_log(base / "group.log", b"x", umask=0o022)
    finally:
        os.umask(old)
    assert stat.S_IMODE((base / "group.log").stat().st_mode) == 0o640

    log.chmod(0o604)  # an existing file keeps its mode
    write_log(log, b"three\n", umask=0o077)
    assert stat.S_IMODE(log.stat().st_mode) == 0o604
    assert log.read_bytes() == b"one\ntwo\nthree\n"


def test_fd_is_close_on_exec_and_blocking(base: Path) -> None:
    fd = open_log(str(base / "app.log"), "--stderr")
    try:
        assert not os.get_inheritable(fd)
        assert os.get_blocking(fd)
        assert os.fstat(fd).st_ino == (base / "app.log").stat().st_ino
    finally:
        os.close(fd)


def test_relative_path_is_made_absolute(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(base)
    (base / "logs").mkdir()
    assert check_path("./logs/../app.log", "--stdout") == str(base / "app.log")


def test_dot_dot_is_the_kernel_s_not_folded_as_text(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "link/.." is the parent of where the link leads, as open() resolves it: the
    path checked is the path opened. And "missing/.." is no path at all."""
    (base / "deep" / "er").mkdir(parents=True)
    (base / "link").symlink_to(base / "deep" / "er")
    assert check_path(str(base / "link" / ".." / "app.log"), "--stdout") == str(
        base / "deep" / "app.log"
    )
    monkeypatch.chdir(base)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        check_path("./missing/../app.log", "--stdout")


# -- a sticky directory anyone may write, like /tmp --------------------------------------


@needs_root
def test_sticky_dir_new_file_is_created_as_root(shared: Path) -> None:
    log = shared / "new.log"
    write_log(log, b"hello\n")
    assert log.read_bytes() == b"hello\n"
    assert (log.stat().st_uid, stat.S_IMODE(log.stat().st_mode)) == (0, 0o640)


@needs_root
def test_sticky_dir_symlink_planted_by_nobody_is_refused(shared: Path, secret: Path) -> None:
    link = shared / "out.log"
    run_as_nobody(lambda: os.symlink(secret, link))
    assert link.lstat().st_uid == NOBODY
    check_secret = unchanged(secret)
    expected = f"refusing --stdout {link}: {link} is a symbolic link owned by uid {NOBODY}"
    with pytest.raises(UnsafePathError) as info:
        check_path(str(link), "--stdout")
    assert str(info.value) == expected
    with pytest.raises(UnsafePathError) as info:
        write_log(link, b"pwned\n")
    assert str(info.value) == expected
    check_secret()


@needs_root
def test_sticky_dir_file_planted_by_nobody_is_refused(shared: Path) -> None:
    log = shared / "out.log"
    run_as_nobody(lambda: log.write_bytes(b"nobody's\n"))
    with pytest.raises(UnsafePathError) as info:
        write_log(log, b"root's output\n")
    assert str(info.value) == (
        f"refusing --stdout {log}: {log} is owned by uid {NOBODY}, in {shared} writable by others"
    )
    assert log.read_bytes() == b"nobody's\n"


@needs_root
def test_sticky_dir_hard_link_is_refused(shared: Path, secret: Path) -> None:
    # protected_hardlinks=1 stops nobody linking to root's file; root links it for the test.
    link = shared / "out.log"
    os.link(secret, link)
    check_secret = unchanged(secret)
    assert check_path(str(link), "--stdout") == str(link)  # the path itself is fine
    with pytest.raises(UnsafePathError) as info:
        write_log(link, b"pwned\n")
    assert str(info.value) == (
        f"refusing --stdout {link}: the file has 2 hard links, in {shared} writable by others"
    )
    check_secret()


@needs_root
@pytest.mark.parametrize("plant", ["symlink", "file"])
def test_entry_planted_between_check_and_open_is_refused(
    shared: Path, secret: Path, monkeypatch: pytest.MonkeyPatch, plant: str
) -> None:
    """The attacker wins the race: nobody plants the file right after check_path looked."""
    log = shared / "out.log"
    real_walk = paths._walk

    def walk_then_plant(path: str, what: str) -> tuple[str, bool]:
        result = real_walk(path, what)
        if plant == "symlink":
            run_as_nobody(lambda: os.symlink(secret, log))
        else:
            run_as_nobody(lambda: log.write_bytes(b""))
        return result

    monkeypatch.setattr(paths, "_walk", walk_then_plant)
    check_secret = unchanged(secret)
    with pytest.raises(UnsafePathError) as info:
        write_log(log, b"pwned\n")
    reason = {
        "symlink": f"{log} is a symbolic link",
        "file": f"the file is another user's (uid {NOBODY}), in {shared} writable by others",
    }[plant]
    assert str(info.value) == f"refusing --stdout {log}: {reason}"
    check_secret()
    if plant == "file":
        assert log.read_bytes() == b""  # nothing written to nobody's file either


# -- directories others can write or own -----------------------------------------------


def test_world_writable_dir_without_sticky_bit_is_refused(base: Path) -> None:
    open_dir = base / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    log = open_dir / "out.log"
    with pytest.raises(UnsafePathError) as info:
        open_log(str(log), "--stdout")
    assert str(info.value) == (
        f"refusing --stdout {log}: {open_dir} is writable by others (mode 0777) and not sticky"
    )
    assert info.value.errno == errno.EPERM
    assert not log.exists()


@needs_root
def test_group_writable_dir_depends_on_the_group(base: Path) -> None:
    group_dir = base / "group"
    group_dir.mkdir()
    group_dir.chmod(0o775)
    log = group_dir / "out.log"
    assert check_path(str(log), "--stdout") == str(log)  # group 0: root's own
    os.chown(group_dir, 0, NOBODY)
    with pytest.raises(UnsafePathError) as info:
        check_path(str(log), "--stdout")
    reason = f"{group_dir} is writable by group {NOBODY} (mode 0775) and not sticky"
    assert info.value.reason == reason


@needs_root
def test_dir_owned_by_nobody_is_refused(base: Path) -> None:
    owned = base / "svc"
    (owned / "logs").mkdir(parents=True)
    os.chown(owned, NOBODY, NOBODY)  # mode 0755: only nobody may write it
    log = owned / "logs" / "out.log"
    with pytest.raises(UnsafePathError) as info:
        open_log(str(log), "--stderr")
    assert str(info.value) == f"refusing --stderr {log}: {owned} is owned by uid {NOBODY}"
    assert not log.exists()


# -- symbolic links ---------------------------------------------------------------------


def test_trusted_symlinked_dir_is_followed(base: Path) -> None:
    (base / "real").mkdir()
    (base / "other").mkdir()
    (base / "link").symlink_to("real")
    (base / "up").symlink_to("real/../other")  # relative, resolved against its directory
    assert check_path(str(base / "link" / "out.log"), "--stdout") == str(base / "real/out.log")
    assert check_path(str(base / "up" / "out.log"), "--stdout") == str(base / "other/out.log")
    write_log(base / "link" / "out.log", b"via link\n")
    assert (base / "real" / "out.log").read_bytes() == b"via link\n"


def test_trusted_symlink_as_last_component_opens_its_target(base: Path) -> None:
    (base / "real").mkdir()
    target = base / "real" / "app-1.log"
    (base / "current.log").symlink_to(target)
    assert check_path(str(base / "current.log"), "--stdout") == str(target)
    write_log(base / "current.log", b"to target\n")
    assert target.read_bytes() == b"to target\n"
    assert (base / "current.log").is_symlink()


@needs_root
def test_symlinked_dir_owned_by_nobody_is_refused(base: Path, shared: Path) -> None:
    (base / "real").mkdir()
    # nobody makes the link where it may, root moves it (still nobody's) where nobody may not write
    run_as_nobody(lambda: os.symlink(base / "real", shared / "link"))
    os.rename(shared / "link", base / "link")
    assert (base / "link").lstat().st_uid == NOBODY
    log = base / "link" / "out.log"
    with pytest.raises(UnsafePathError) as info:
        open_log(str(log), "--stdout")
    assert info.value.reason == f"{base / 'link'} is a symbolic link owned by uid {NOBODY}"
    assert not (base / "real" / "out.log").exists()


def test_symlink_loop_is_refused(base: Path) -> None:
    (base / "a").symlink_to("b")
    (base / "b").symlink_to("a")
    with pytest.raises(UnsafePathError) as info:
        check_path(str(base / "a" / "out.log"), "--stdout")
    assert str(info.value) == f"refusing --stdout {base / 'a' / 'out.log'}: too many symbolic links"


def test_forty_links_are_followed_and_forty_one_refused(base: Path) -> None:
    (base / "real").mkdir()
    (base / "link0").symlink_to("real")
    for number in range(1, 41):
        (base / f"link{number}").symlink_to(f"link{number - 1}")
    assert check_path(str(base / "link39" / "x.log"), "--stdout") == str(base / "real/x.log")
    with pytest.raises(UnsafePathError) as info:
        check_path(str(base / "link40" / "x.log"), "--stdout")
    assert info.value.reason == "too many symbolic links"


# -- devices, our own fds, FIFOs --------------------------------------------------------


def test_dev_null_is_accepted() -> None:
    assert check_path("/dev/null", "--stdout") == "/dev/null"
    fd = open_log("/dev/null", "--stdout")
    try:
        assert stat.S_ISCHR(os.fstat(fd).st_mode)
        assert os.write(fd, b"discarded") == 9
    finally:
        os.close(fd)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize(
    "path", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1", "/proc/thread-self/fd/1"]
)
def test_our_stdout_pipe_is_accepted(path: str) -> None:
    code = (
        "import os, sys\n"
        "from daemonctx.paths import check_path, open_log\n"
        "fd = open_log(sys.argv[1], '--stdout')\n"
        "os.write(fd, f'{os.getpid()} {check_path(sys.argv[1], \"--stdout\")}\\n'.encode())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, path],
        capture_output=True,  # stdout is a pipe
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=20,
    )
    assert result.returncode == 0, result.stderr.decode()
    pid, resolved = result.stdout.decode().split()
    assert resolved.startswith(f"/proc/{pid}/") and resolved.endswith("/fd/1")


def test_our_stdout_file_open_for_reading_only_is_refused(base: Path) -> None:
    """A dup of the caller's file gives no more than the caller had: ``1< file``."""
    (base / "in.txt").write_bytes(b"")
    code = "from daemonctx.paths import open_log\nopen_log('/dev/stdout', '--stdout')\n"
    with (base / "in.txt").open("rb") as read_only:
        result = subprocess.run(
            [sys.executable, "-c", code],
            stdout=read_only,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            text=True,
            timeout=20,
        )
    last = result.stderr.splitlines()[-1]
    assert last == "OSError: [Errno 9] cannot open --stdout /dev/stdout: open for reading only"


@pytest.mark.timeout(10)
def test_fifo_without_reader_fails_at_once(base: Path) -> None:
    fifo = base / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError) as info:
        open_log(str(fifo), "--stdout")
    assert info.value.errno == errno.ENXIO
    assert str(info.value) == f"[Errno 6] cannot open --stdout {fifo}: no process reads the FIFO"


def test_fifo_with_reader_gets_the_output(base: Path) -> None:
    fifo = base / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fd = open_log(str(fifo), "--stdout")
        assert os.get_blocking(fd)
        os.write(fd, b"line\n")
        os.close(fd)
        assert os.read(reader, 100) == b"line\n"
    finally:
        os.close(reader)


@pytest.mark.timeout(10)
def test_fifo_opened_non_blocking_never_waits_for_its_reader(base: Path) -> None:
    """``blocking=False`` (the supervisor's own logs): once a reader that reads
    nothing has let the FIFO fill, a write fails at once instead of waiting."""
    fifo = base / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fd = open_log(str(fifo), "supervisor log", blocking=False)
        try:
            assert not os.get_blocking(fd)
            with pytest.raises(BlockingIOError):
                while True:
                    os.write(fd, b"x" * 4096)
        finally:
            os.close(fd)
    finally:
        os.close(reader)


# -- what is not there, or not a file ---------------------------------------------------


def test_missing_directory_is_named(base: Path) -> None:
    log = base / "no" / "such" / "out.log"
    for call in (check_path, open_log):
        with pytest.raises(FileNotFoundError) as info:
            call(str(log), "--stdout")
        assert info.value.errno == errno.ENOENT
        assert str(info.value) == f"[Errno 2] --stdout {log}: no such directory {base / 'no'}"


def test_file_as_directory_is_refused(base: Path) -> None:
    (base / "file").write_bytes(b"")
    log = base / "file" / "out.log"
    with pytest.raises(NotADirectoryError) as info:
        check_path(str(log), "--stdout")
    assert str(info.value) == f"[Errno 20] --stdout {log}: {base / 'file'} is not a directory"


def test_directory_as_log_is_refused(base: Path) -> None:
    (base / "logs").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        open_log(str(base / "logs"), "--stderr")
    assert str(info.value) == f"[Errno 21] cannot open --stderr {base / 'logs'}: Is a directory"


# -- pidfiles ---------------------------------------------------------------------------


def test_own_pidfile_is_accepted(base: Path) -> None:
    pidfile = base / "app.pid"
    pidfile.write_text("1\n")
    pidfile.chmod(0o644)
    check_owned_file(pidfile.stat(), str(pidfile), "pidfile")


@needs_root
@pytest.mark.parametrize(
    ("owner", "mode", "reason"),
    [
        ((NOBODY, 0), 0o644, f"the file is owned by uid {NOBODY}"),
        ((0, 0), 0o666, "the file is writable by others (mode 0666)"),
        ((0, NOBODY), 0o664, f"the file is writable by group {NOBODY} (mode 0664)"),
        ((0, 0), 0o664, None),
        ((0, NOBODY), 0o644, None),
    ],
)
def test_pidfile_others_control_is_refused(
    base: Path, owner: tuple[int, int], mode: int, reason: str | None
) -> None:
    pidfile = base / "app.pid"
    pidfile.write_text("1\n")
    os.chown(pidfile, *owner)
    pidfile.chmod(mode)
    if reason is None:
        check_owned_file(pidfile.stat(), str(pidfile), "pidfile")
        return
    with pytest.raises(UnsafePathError) as info:
        check_owned_file(pidfile.stat(), str(pidfile), "pidfile")
    assert str(info.value) == f"refusing pidfile {pidfile}: {reason}"


@needs_root
def test_as_nobody_nobody_is_trusted(base: Path, shared: Path) -> None:
    root_pidfile = base / "root.pid"
    root_pidfile.write_text("1\n")
    other = base / "other.pid"
    other.write_text("1\n")
    os.chown(other, 1, 1)

    def check() -> None:
        assert trusted_uids() == {0, NOBODY}
        mine = shared / "mine.pid"
        mine.write_text("2\n")
        check_owned_file(mine.stat(), str(mine), "pidfile")
        check_owned_file(root_pidfile.stat(), str(root_pidfile), "pidfile")
        with pytest.raises(UnsafePathError) as info:
            check_owned_file(other.stat(), str(other), "pidfile")
        assert info.value.reason == "the file is owned by uid 1"
        write_log(shared / "mine.log", b"nobody's log\n")  # nobody's own file in /tmp-like dir
        assert (shared / "mine.log").stat().st_uid == NOBODY

    run_as_nobody(check)
    assert (shared / "mine.log").read_bytes() == b"nobody's log\n"


# -- the exception ----------------------------------------------------------------------


def test_unsafe_path_error_is_picklable_and_one_line() -> None:
    error = UnsafePathError("--stdout", "/tmp/x/out.log", "/tmp/x is writable by others")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is UnsafePathError
    assert (copy.what, copy.path, copy.reason) == ("--stdout", "/tmp/x/out.log", error.reason)
    message = "refusing --stdout /tmp/x/out.log: /tmp/x is writable by others"
    assert str(copy) == str(error) == message
    assert isinstance(copy, PermissionError) and isinstance(copy, DaemonError)
    assert copy.errno == errno.EPERM
    odd = UnsafePathError("--stdout", "/tmp/a\nb", "too many symbolic links")
    assert str(odd) == "refusing --stdout '/tmp/a\\nb': too many symbolic links"
    assert odd.path == "/tmp/a\nb"


def test_another_process_s_links_in_proc_are_not_followed(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/proc/<pid>/root (cwd, fd/N) of another process reads as a path of ours, but
    the kernel goes where that process sees it: another mount namespace's
    directory, a chroot's. Our own (/proc/self/cwd) is followed as before."""
    child = subprocess.Popen(["sleep", "1000"], cwd=base)
    try:
        for link in ("root", "cwd"):
            typed = f"/proc/{child.pid}/{link}{base if link == 'root' else ''}/app.log"
            with pytest.raises(UnsafePathError) as info:
                check_path(typed, "--stdout")
            assert info.value.reason == (
                f"/proc/{child.pid}/{link} is another process's link (its root, cwd or"
                " files may be another mount namespace's): give the path itself"
            )
    finally:
        child.kill()
        child.wait()
    monkeypatch.chdir(base)
    assert check_path("/proc/self/cwd/app.log", "--stdout") == str(base / "app.log")


@pytest.mark.parametrize("tail", ["newlog/", "newlog/.", "dir/.."])
def test_a_directory_name_is_refused_not_made_a_file(base: Path, tail: str) -> None:
    """ "newlog/" is a directory's name: the shell says "Is a directory"; the walk,
    which drops the slash, created a file newlog."""
    (base / "dir").mkdir()
    with pytest.raises(IsADirectoryError, match="Is a directory"):
        open_log(f"{base}/{tail}", "--stdout")
    assert not (base / "newlog").exists()


@needs_root
def test_links_of_a_second_procfs_mount_are_not_followed(base: Path, tmp_path: Path) -> None:
    """``mount -t proc proc /mnt``: /mnt/<pid>/root is the same view as /proc's."""
    mnt = tmp_path / "proc"
    mnt.mkdir()
    child = subprocess.Popen(["sleep", "1000"], cwd=base)
    mounted = subprocess.run(["mount", "-t", "proc", "proc", str(mnt)], check=False).returncode
    try:
        if mounted != 0:
            pytest.skip("cannot mount a procfs here")
        with pytest.raises(UnsafePathError, match="is another process's link"):
            check_path(f"{mnt}/{child.pid}/root{base}/app.log", "--stdout")
    finally:
        if mounted == 0:
            subprocess.run(["umount", str(mnt)], check=True)
        child.kill()
        child.wait()
