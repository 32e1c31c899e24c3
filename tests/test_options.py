"""Options: PEP 3143 defaults, attribute setting, and clear errors for bad values.

Every failure here happens before any fork. A test that expects an error but
gets none would daemonize the test process, so calls to open() that are
expected to fail run in a forked child.
"""

from __future__ import annotations

import os
import resource  # noqa: F401 # loaded before a child drops to nobody (open() imports it),
import shutil  # who may not read the interpreter's files (under /root, 0700)
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NOBODY, NOGROUP, needs_root, run_in_child, run_script

import daemonctx
from daemonctx import DaemonContext, DaemonError, DaemonOptionError
from daemonctx.paths import UnsafePathError
from daemonctx.process import change_process_owner


def test_pep_3143_defaults() -> None:
    context = DaemonContext()
    assert context.chroot_directory is None
    assert context.working_directory == "/"
    assert context.umask == 0
    assert context.uid == os.getuid()
    assert context.gid == os.getgid()
    assert context.initgroups is False
    assert context.prevent_core is True
    assert context.detach_process is None
    assert context.files_preserve is None
    assert context.pidfile is None
    assert (context.stdin, context.stdout, context.stderr) == (None, None, None)
    assert context.signal_map == {
        signal.SIGTSTP: None,
        signal.SIGTTIN: None,
        signal.SIGTTOU: None,
        signal.SIGTERM: "terminate",
    }
    assert context.is_open is False


def test_options_can_be_set_as_attributes(tmp_path: Path) -> None:
    context = DaemonContext()
    context.working_directory = tmp_path
    context.umask = 0o022
    context.files_preserve = [3]
    assert context.working_directory == str(tmp_path), "paths are stored as str"
    assert context.umask == 0o022


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("umask", -1, "must be from 0 to 0o777"),
        ("umask", 0o1000, "must be from 0 to 0o777"),
        ("umask", "022", "must be an int"),
        ("uid", -5, "at least 0"),
        ("gid", "root", "must be an int"),
        ("uid", True, "must be an int"),
        ("working_directory", "", "non-empty"),
        ("working_directory", 42, "must be a path"),
        ("chroot_directory", b"/srv", "must be a path"),
        ("prevent_core", "yes", "True or False"),
        ("prevent_core", "no", "True or False"),  # truthy: a likely mistake
        ("prevent_core", 2, "True or False"),
        ("initgroups", 1.0, "True or False"),
        ("detach_process", 2, "must be True, False or None"),
        ("detach_process", "yes", "must be True, False or None"),
        ("detach_process", -1, "must be True, False or None"),
        ("initgroups", None, "True or False"),
        ("stdout", "/var/log/app.log", "file object with fileno"),
        ("pidfile", "/run/app.pid", "must be a context manager"),
        ("ready_timeout", 0, "> 0"),
        ("ready_on_open", None, "True or False"),
        ("uid", 2**32, "from 0 to 4294967294"),
        ("gid", 2**32 - 1, "from 0 to 4294967294"),  # (gid_t)-1: "no change", root's gid
        ("gid", 2**64, "from 0 to 4294967294"),
        # not a map: refused, not taken for "no map" (None is the default map)
        ("signal_map", 0, "must be a dict of signal -> handler"),
        ("signal_map", "", "must be a dict of signal -> handler"),
        ("signal_map", False, "must be a dict of signal -> handler"),
        ("signal_map", [], "must be a dict of signal -> handler"),
        ("signal_map", (), "must be a dict of signal -> handler"),
    ],
)
def test_bad_values_name_the_option_and_the_value(option: str, value: object, reason: str) -> None:
    with pytest.raises(DaemonOptionError, match=reason) as info:
        DaemonContext(**{option: value})
    assert info.value.option == option
    assert info.value.value == value
    shown = f"{value:#o}" if option == "umask" and type(value) is int else repr(value)
    assert f"{option}={shown}" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(DaemonOptionError):
        setattr(DaemonContext(), option, value)


@pytest.mark.parametrize(
    "option", ["initgroups", "prevent_core", "detach_process", "ready_on_open"]
)
def test_the_ints_0_and_1_are_false_and_true(option: str) -> None:
    """As configparser's getint() gives them (python-daemon takes any truthy value):
    stored as the bools they mean, given or assigned."""
    for given, meant in ((0, False), (1, True)):
        context = DaemonContext(**{option: given})
        assert getattr(context, option) is meant
        context = DaemonContext()
        setattr(context, option, given)
        assert getattr(context, option) is meant
    assert DaemonContext(detach_process=None).detach_process is None


def test_no_signal_map_is_the_default_map_given_or_assigned() -> None:
    """signal_map=None, PEP 3143's default, is the default map, whether given to the
    constructor or assigned, as is an empty map."""
    default = DaemonContext().signal_map
    assert DaemonContext(signal_map=None).signal_map == default
    assert DaemonContext(signal_map={}).signal_map == default
    context = DaemonContext(signal_map={signal.SIGHUP: None})
    context.signal_map = None
    assert context.signal_map == default


class _Reopen:
    def __call__(self, signum: int, frame: object) -> None:
        pass


class _NoArguments:
    def __call__(self) -> None:
        pass


def _forgot() -> None:
    pass


def _no_frame(signum: int) -> None:
    pass


def _keyword(signum: int, frame: object, *, how: str) -> None:
    pass


@pytest.mark.parametrize(
    ("handler", "name"),
    [
        (_forgot, "_forgot"),
        (_no_frame, "_no_frame"),
        (_keyword, "_keyword"),
        (lambda: None, "<lambda>"),
        (_NoArguments(), "_NoArguments.__call__"),
    ],
    ids=["none", "no-frame", "keyword-only", "lambda", "object"],
)
def test_a_handler_that_cannot_take_signum_and_frame_is_refused(handler: object, name: str) -> None:
    """The daemon would die of a TypeError at the signal (Python calls a handler
    with two arguments): refused when the map is given, naming the handler."""
    with pytest.raises(DaemonOptionError) as info:
        DaemonContext(signal_map={signal.SIGHUP: handler})
    reason = f"{name} must accept (signum, frame), a signal handler's arguments"
    assert str(info.value) == f"signal_map={{SIGHUP: {handler!r}}}: {reason}"
    with pytest.raises(DaemonOptionError):
        DaemonContext().signal_map = {signal.SIGUSR1: handler}


def test_handlers_that_take_signum_and_frame_one_way_or_another_are_taken() -> None:
    """Defaults, *args, a bound method, a callable object, and what has no code to
    read (a builtin, a functools.partial, a class) pass."""
    import functools

    def defaults(signum: int, frame: object = None, extra: int = 0) -> None:
        pass

    def anything(*args: object, **kwargs: object) -> None:
        pass

    for handler in (
        defaults,
        anything,
        lambda signum, frame, *, how="x": None,
        _Reopen(),
        _Reopen().__call__,
        signal.default_int_handler,
        functools.partial(_no_frame),
        print,
        _Reopen,
    ):
        context = DaemonContext(signal_map={signal.SIGHUP: handler})
        assert context.signal_map[signal.SIGHUP] == handler, "taken as given"


def test_a_context_method_named_in_signal_map_is_checked_before_the_fork() -> None:
    """A name is looked up at open(): a method of a DaemonContext subclass that
    cannot take (signum, frame) fails there, in the foreground."""

    class Context(DaemonContext):
        def reopen(self) -> None:
            pass

        def rotate(self, signum: int, frame: object) -> None:
            pass

    def check() -> None:
        Context(signal_map={signal.SIGUSR1: "rotate"}, detach_process=False).check()
        with pytest.raises(DaemonOptionError) as info:
            Context(signal_map={signal.SIGHUP: "reopen"}, detach_process=False).check()
        assert str(info.value) == (
            "signal_map={SIGHUP: 'reopen'}: test_a_context_method_named_in_signal_map_is_"
            "checked_before_the_fork.<locals>.Context.reopen must accept (signum, frame),"
            " a signal handler's arguments"
        )

    run_in_child(check)


def test_option_errors_are_daemon_errors_and_value_errors() -> None:
    with pytest.raises(DaemonError):
        DaemonContext(umask=-1)
    with pytest.raises(ValueError):
        DaemonContext(umask=-1)


@needs_root
@pytest.mark.parametrize(("owner", "mode", "uid"), [(NOBODY, 0o755, None), (0, 0o1777, NOBODY)])
def test_a_jail_another_user_could_fill_is_refused_in_the_foreground(
    tmp_path: Path, owner: int, mode: int, uid: int | None
) -> None:
    """Root enters the jail, then the daemon runs there: one owned by a user that is
    not the daemon's, or writable by others (sticky or not), is refused, as
    sshd refuses such a ChrootDirectory (``check()`` is ``open()``'s checks)."""
    jail = tmp_path / "jail"
    jail.mkdir()
    os.chown(jail, owner, -1)
    jail.chmod(mode)
    context = DaemonContext(chroot_directory=str(jail), uid=uid, gid=uid)
    with pytest.raises(UnsafePathError) as info:
        context.check()
    reason = f"owned by uid {NOBODY}" if owner else f"writable by others (mode {mode:04o})"
    assert str(info.value) == f"refusing chroot_directory {jail}: {jail} is {reason}"


@needs_root
def test_a_jail_reached_by_dot_dot_after_a_link_is_judged_where_it_leads(tmp_path: Path) -> None:
    """link/.. is the parent of the link's target, as chroot(2) resolves it: here
    bob's directory, though tmp_path (root's) is what folding the text gives."""
    bobs = tmp_path / "bobs"
    (bobs / "sub").mkdir(parents=True)
    os.chown(bobs, NOBODY, -1)
    (tmp_path / "link").symlink_to(bobs / "sub")
    typed = f"{tmp_path}/link/.."
    with pytest.raises(UnsafePathError) as info:
        DaemonContext(chroot_directory=typed).check()
    assert str(info.value) == f"refusing chroot_directory {typed}: {bobs} is owned by uid {NOBODY}"
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(UnsafePathError, match="a link to an open file"):
            DaemonContext(chroot_directory=f"/proc/self/fd/{fd}", files_preserve=[fd]).check()
    finally:
        os.close(fd)


@needs_root  # a chroot: without root it is refused first (CAP_SYS_CHROOT)
def test_a_pidfile_directory_the_jail_lacks_is_said_in_the_foreground(tmp_path: Path) -> None:
    """Through a link to a directory the host has and the jail not: the daemon's
    open would fail after the fork ("cannot create pidfile"); the launcher says so."""
    from daemonctx.pidfile import PIDLockFile

    jail = tmp_path / "jail"
    (jail / "var").mkdir(parents=True)
    (jail / "var" / "hostonly").symlink_to(tmp_path)  # the host's: not in the jail
    context = DaemonContext(chroot_directory=str(jail), pidfile=PIDLockFile("/var/hostonly/x.pid"))
    with pytest.raises(DaemonOptionError) as info:
        context.check()
    assert str(info.value) == (
        "pidfile='/var/hostonly/x.pid': directory '/var/hostonly' does not exist in"
        f" chroot_directory {str(jail)!r}"
    )


@needs_root  # a chroot: without root it is refused first (CAP_SYS_CHROOT)
def test_a_relative_working_directory_is_checked_inside_the_jail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the chroot the daemon's working directory is the jail's root: a relative
    working_directory (and a relative pidfile under it) is checked from there, not
    from the launcher's working directory."""
    from daemonctx.pidfile import PIDLockFile

    jail = tmp_path / "jail"
    (jail / "inner").mkdir(parents=True)  # in the jail only
    (jail / "sub" / "run").mkdir(parents=True)
    (tmp_path / "outside").mkdir()  # in the launcher's working directory only
    (tmp_path / "sub" / "logs").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    DaemonContext(chroot_directory=str(jail), working_directory="inner").check()
    pidfile = PIDLockFile("run/app.pid")
    DaemonContext(chroot_directory=str(jail), working_directory="sub", pidfile=pidfile).check()
    with pytest.raises(DaemonOptionError) as info:
        DaemonContext(chroot_directory=str(jail), working_directory="outside").check()
    assert str(info.value) == (
        f"working_directory='outside': no such directory (inside chroot_directory {str(jail)!r})"
    )
    pidfile = PIDLockFile("logs/app.pid")
    with pytest.raises(DaemonOptionError) as info:
        DaemonContext(chroot_directory=str(jail), working_directory="sub", pidfile=pidfile).check()
    assert str(info.value) == (
        f"pidfile='logs/app.pid': directory 'sub/logs' does not exist in chroot_directory"
        f" {str(jail)!r}"
    )


@needs_root
def test_a_jail_of_the_daemon_s_own_user_is_accepted(tmp_path: Path) -> None:
    """With the user's group (uid alone gives it), not with one the user lacks."""
    jail = tmp_path / "jail"
    jail.mkdir()
    os.chown(jail, NOBODY, -1)
    DaemonContext(chroot_directory=str(jail), uid=NOBODY, gid=NOBODY).check()
    DaemonContext(chroot_directory=str(jail), uid=NOBODY).check()
    with pytest.raises(UnsafePathError, match=f"is owned by uid {NOBODY}"):
        DaemonContext(chroot_directory=str(jail), uid=NOBODY, gid=0).check()


@pytest.mark.forked
@pytest.mark.parametrize(
    ("options", "option", "reason"),
    [
        ({"working_directory": "/no/such/dir"}, "working_directory", "no such directory"),
        ({"chroot_directory": "/no/such/root"}, "chroot_directory", "no such directory"),
        pytest.param(
            {"chroot_directory": "/tmp", "working_directory": "/nope"},
            "working_directory",
            "inside chroot_directory",
            marks=needs_root,  # without root, the chroot itself is refused first
        ),
        ({"files_preserve": [987]}, "files_preserve", "fd 987 is not open"),
    ],
)
def test_system_checks_fail_in_the_foreground(
    options: dict[str, object], option: str, reason: str
) -> None:
    context = DaemonContext(detach_process=False, **options)  # type: ignore[arg-type]
    with pytest.raises(DaemonOptionError, match=reason) as info:
        context.open()
    assert info.value.option == option
    assert not context.is_open


@pytest.fixture
def private_directory() -> Iterator[Path]:
    """Root's, mode 0700, in /tmp (which anyone may search): nobody sees it, and may
    neither enter it nor reach what is inside."""
    path = Path(tempfile.mkdtemp(prefix="dctx-private-", dir="/tmp"))
    try:
        (path / "sub").mkdir()
        yield path
    finally:
        shutil.rmtree(path)


@needs_root
def test_a_directory_the_launcher_may_not_enter_is_refused_in_the_foreground(
    private_directory: Path,
) -> None:
    """The daemon changes directory (and root) before it changes user, with the
    launcher's ids: a directory those may not enter failed after the fork, as
    DaemonStartupError ("cannot change working directory ... Permission denied")."""
    sub = private_directory / "sub"

    def check() -> None:
        change_process_owner(NOBODY, NOGROUP, None)
        denied = f"uid {NOBODY} may not enter it (permission denied)"
        cases = [
            ("working_directory", private_directory, denied),
            ("working_directory", sub, f"uid {NOBODY} may not reach it (permission denied)"),
            ("chroot_directory", private_directory, denied),
            ("chroot_directory", "/", "changing the root directory needs root (CAP_SYS_CHROOT)"),
        ]
        for option, path, reason in cases:
            # check() is open()'s checks before the fork: an open() that went on would
            # close this child's report pipe (and fail after the fork if detached)
            with pytest.raises(DaemonOptionError) as info:
                DaemonContext(**{option: path}).check()
            assert str(info.value) == f"{option}={str(path)!r}: {reason}"

    run_in_child(check)


@needs_root
def test_a_directory_root_enters_before_the_drop_is_accepted(private_directory: Path) -> None:
    """chdir comes before the change of user, as in python-daemon: root enters it."""
    DaemonContext(working_directory=private_directory, uid=NOBODY).check()


@pytest.mark.forked
def test_a_closed_stream_is_refused(tmp_path: Path) -> None:
    stream = open(tmp_path / "out", "w")  # noqa: SIM115
    stream.close()
    with pytest.raises(DaemonOptionError, match="stdout") as info:
        DaemonContext(stdout=stream, detach_process=False).open()
    assert info.value.option == "stdout"


@pytest.mark.forked
def test_pidfile_in_a_missing_directory_is_refused(tmp_path: Path) -> None:
    class Pidfile:
        path = str(tmp_path / "missing" / "app.pid")

        def __enter__(self) -> None: ...
        def __exit__(self, *exc: object) -> None: ...

    with pytest.raises(DaemonOptionError, match="does not exist") as info:
        DaemonContext(pidfile=Pidfile(), detach_process=False).open()
    assert info.value.option == "pidfile"


def test_open_twice_and_close_twice_are_harmless(tmp_path: Path) -> None:
    result = run_script(
        """
from daemonctx import DaemonContext
entered = []
class Pidfile:
    def __enter__(self): entered.append("enter")
    def __exit__(self, *exc): entered.append("exit")
context = DaemonContext(detach_process=False, pidfile=Pidfile(), stderr=sys.stderr)
with context as entered_context:
    assert entered_context is context
    assert context.is_open
    context.open()
    assert entered == ["enter"], entered
assert not context.is_open
context.close()
assert entered == ["enter", "exit"], entered
print("ok", file=sys.stderr)
"""
    )
    assert result.stderr == "ok\n"


def test_options_cannot_change_while_open() -> None:
    result = run_script(
        """
from daemonctx import DaemonContext, DaemonOptionError
context = DaemonContext(detach_process=False, stderr=sys.stderr)
context.open()
try:
    context.umask = 0o077
except DaemonOptionError as exc:
    print(exc, file=sys.stderr)
"""
    )
    assert "umask=0o77: cannot change an option of an open context" in result.stderr


def test_public_api() -> None:
    names = set(daemonctx.__all__)
    assert {
        "DaemonContext",
        "DaemonError",
        "DaemonOSEnvironmentError",
        "DaemonProcessDetachError",
        "DaemonOptionError",
        "Terminated",
    } <= names
    assert daemonctx.__version__
    assert issubclass(daemonctx.DaemonOSEnvironmentError, OSError)
    assert issubclass(daemonctx.DaemonProcessDetachError, OSError)
