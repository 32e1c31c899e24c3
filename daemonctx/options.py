"""Checking and resolving ``DaemonContext`` options, all in the foreground.

Two kinds of checks, both before any fork, so a bad value fails in the
terminal with the option and the value in the message:

- at assignment (constructor or attribute), each option's type and value:
  ``OPTIONS`` declares every option once (name, default, check), and its check
  returns the value to store or raises ``DaemonOptionError``;
- in ``open()``, what depends on the system: directories exist, the owner may
  be switched to, fds are open, the pidfile is not held. These also resolve
  the options into what the daemon applies after the fork (fd numbers, ids,
  signal handlers), so the daemon does as little as possible there.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found] # signal's C half, without enums
import os
import signal
import sys

from .errors import DaemonOptionError
from .process import finite_timeout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any, Callable

    from .process import Handler

    SignalMap = dict[int, Any]


# -- the signal map ---------------------------------------------------------
# A value may be a callable handler(signum, frame), None (ignore the signal),
# signal.SIG_IGN/SIG_DFL, or the name of a method of the DaemonContext
# ("terminate").

# Signals a process can never catch or ignore.
_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}
_VALID: set[int] = set()


def _valid_signals() -> set[int]:
    """The valid signal numbers as plain ints (``signal.valid_signals()`` makes ~60 enums)."""
    if not _VALID:
        _VALID.update(_signal.valid_signals())
    return _VALID


def default_signal_map() -> SignalMap:
    """Ignore terminal job-control signals; SIGTERM stops the daemon cleanly."""
    return {
        signal.SIGTSTP: None,
        signal.SIGTTIN: None,
        signal.SIGTTOU: None,
        signal.SIGTERM: "terminate",
    }


def check_signal_number(key: Any) -> int:
    """Return ``key`` as a signal number, or raise naming it."""
    if isinstance(key, bool) or not isinstance(key, int):
        raise DaemonOptionError("signal_map", key, "keys must be signal numbers (signal.SIGHUP)")
    if key not in _valid_signals():
        raise DaemonOptionError("signal_map", key, "unknown signal number")
    if key in _UNCATCHABLE:
        name = signal.Signals(key).name
        raise DaemonOptionError("signal_map", key, f"{name} cannot be caught or ignored")
    return int(key)


def check_signal_map(value: Any) -> SignalMap:
    """Validate a whole map's keys and value types (names are checked at open())."""
    if not callable(getattr(value, "items", None)):
        raise DaemonOptionError("signal_map", value, "must be a dict of signal -> handler")
    checked: SignalMap = {}
    for key, handler in value.items():
        number = check_signal_number(key)
        if isinstance(handler, bool) or not (
            handler is None or isinstance(handler, (str, int)) or callable(handler)
        ):
            raise DaemonOptionError(
                "signal_map",
                {key: handler},
                "a handler must be a callable, None, SIG_IGN, SIG_DFL or a method name",
            )
        if callable(handler):
            check_handler(number, handler)
        checked[number] = handler
    return checked


def check_handler(number: int, handler: Any, shown: Any = None) -> None:
    """Raise ``DaemonOptionError`` when ``handler`` cannot be called as a signal
    handler, ``handler(signum, frame)`` (``def reload(self):`` would raise a
    TypeError in the daemon, at its first signal), naming it as ``shown``."""
    if _takes_signum_frame(handler):
        return
    name = getattr(handler, "__qualname__", None) or f"{type(handler).__qualname__}.__call__"
    raise DaemonOptionError(
        "signal_map",
        {number: handler if shown is None else shown},
        f"{name} must accept (signum, frame), a signal handler's arguments",
    )


def _takes_signum_frame(handler: Any) -> bool:
    """Whether ``handler(signum, frame)`` binds to a Python function's (or bound
    method's, or callable object's) parameters, read from its code object, as
    ``inspect`` would (not imported: the start-up path stays lean). True when
    there is none to read: a builtin, a ``functools.partial``."""
    function = handler
    skipped = 0  # a bound method's self
    try:
        if getattr(function, "__code__", None) is None:
            function = type(handler).__call__  # a callable object's
            skipped = 1
        elif getattr(function, "__self__", None) is not None:
            function = getattr(function, "__func__", function)
            skipped = 1
        code = function.__code__
        positional = code.co_argcount - skipped
        defaults = len(function.__defaults__ or ())
        kwonly = code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]
        kwdefaults = function.__kwdefaults__ or {}
        varargs = code.co_flags & 0x04  # CO_VARARGS
    except (AttributeError, TypeError):
        return True
    if not isinstance(positional, int):
        return True
    return (
        (positional >= 2 or bool(varargs))
        and positional - defaults <= 2
        and all(name in kwdefaults for name in kwonly)
    )


def resolve_signal_map(signal_map: Mapping[int, Any], context: object) -> dict[int, Handler]:
    """Turn map values into what ``_signal.signal`` takes (a callable, or the
    plain ints SIG_IGN and SIG_DFL); method names are looked up on ``context``.
    Raises ``DaemonOptionError`` for a name it lacks."""
    resolved: dict[int, Handler] = {}
    for number, handler in check_signal_map(signal_map).items():  # it may have been edited
        if handler is None:
            handler = _signal.SIG_IGN
        elif isinstance(handler, str):
            method = getattr(context, handler, None)
            if not callable(method):
                raise DaemonOptionError(
                    "signal_map", {number: handler}, f"the context has no method {handler!r}"
                )
            check_handler(number, method, handler)
            handler = method
        elif isinstance(handler, int):
            if handler not in (_signal.SIG_IGN, _signal.SIG_DFL):
                raise DaemonOptionError(
                    "signal_map", {number: handler}, "an int handler must be SIG_IGN or SIG_DFL"
                )
            handler = int(handler)
        resolved[int(number)] = handler
    return resolved


# -- files_preserve ----------------------------------------------------------


def fd_of(obj: Any) -> int | None:
    """Return the fd behind ``obj``: an int, anything with ``fileno()``, or a
    ``logging.Handler`` (its stream, or the socket of a socket-based handler).

    Returns None where there is nothing to keep: None (python-daemon's "omit it"), a
    handler with nothing open yet (``FileHandler(delay=True)``), and a closed file,
    socket or handler (a ``SysLogHandler`` whose ``/dev/log`` was missing keeps a
    closed socket). An int is returned as it is: checked by the caller.
    """
    if obj is None:
        return None
    if isinstance(obj, bool):
        raise TypeError("a bool is not a file descriptor")
    if isinstance(obj, int):
        return obj
    logging = sys.modules.get("logging")  # a Handler can only exist if logging is imported
    if logging is not None and isinstance(obj, logging.Handler):
        for attr in ("stream", "socket", "sock"):
            inner = getattr(obj, attr, None)
            if inner is not None:
                return fd_of(inner)
        return None
    fileno = getattr(obj, "fileno", None)
    if fileno is None:
        raise TypeError(f"{type(obj).__name__} has no fileno()")
    try:
        result = fileno()
    except ValueError:  # a closed file ("I/O operation on closed file"), or none at all
        if getattr(obj, "closed", False) is True:
            return None
        raise  # io.UnsupportedOperation of an open StringIO: not a file
    if isinstance(result, bool) or not isinstance(result, int):
        raise TypeError(f"fileno() returned {result!r}")
    return None if result == -1 else result  # -1: a closed socket


def check_open(fd: int) -> bool:
    """Is ``fd`` an open file descriptor of this process?"""
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


_FD_LIMIT = 2**31  # an fd is a C int


_STREAM_NAMES = ("stdin", "stdout", "stderr")


def _started_open(fd: int) -> bool:
    """Whether standard fd ``fd`` (0-2) was open when Python started: Python made
    ``sys.__stdin__`` (etc.) for it then, and left that None for a closed fd."""
    return getattr(sys, f"__{_STREAM_NAMES[fd]}__", None) is not None


def resolve_files_preserve(
    items: Iterable[Any] | None, stream_fds: Sequence[int | None] = (None, None, None)
) -> set[int]:
    """Turn ``files_preserve`` into a set of open fds, or raise naming the bad item.

    Fds 0-2 are the ``stdin``/``stdout``/``stderr`` options' business (PEP 3143): an
    item on one of them (``sys.stdout``, a handler on it, the int 1) is the standard
    stream, left out as python-daemon leaves it. Unless the process started with that
    fd closed: what is there is then a file opened since, which the standard stream
    would replace, and it is refused (unless it is that stream's option too, in
    ``stream_fds``).

    None and closed objects are skipped (``fd_of``), as python-daemon skips them: a
    ``sys.stdout`` that is None, a log handler whose socket never connected. An int
    that is no open fd is an error: it was typed, and is wrong."""
    result: set[int] = set()
    for number, item in enumerate(items or (), 1):
        try:
            fd = fd_of(item)
        except (TypeError, ValueError, OSError) as exc:
            raise DaemonOptionError(
                "files_preserve",
                item,
                f"not a file descriptor, file, socket or handler: {exc}",
                number,
            ) from exc
        if fd is None or (0 <= fd < 3 and _started_open(fd)):
            continue
        if not 0 <= fd < _FD_LIMIT or not check_open(fd):
            raise DaemonOptionError("files_preserve", item, f"fd {fd} is not open", number)
        if fd < 3 and stream_fds[fd] != fd:
            name = _STREAM_NAMES[fd]
            raise DaemonOptionError(
                "files_preserve",
                item,
                f"fd {fd} is where {name} goes and would be replaced: the process started "
                f"with fd {fd} closed, so this file was opened since; open it after fds 0-2 "
                f"are open, or pass it as {name}=",
                number,
            )
        result.add(fd)
    return result


# -- the options: each declared once ---------------------------------------------
# A check takes (option name, value) and returns the value to store, or raises
# DaemonOptionError naming the option and the value.


def _path(name: str, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise DaemonOptionError(name, value, "must be a path (str or os.PathLike)")
    path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise DaemonOptionError(name, value, "must be a non-empty str path")
    return path


def _optional_path(name: str, value: Any) -> str | None:
    return None if value is None else _path(name, value)


def _int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DaemonOptionError(name, value, "must be an int")
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high:#o}" if high is not None else f"at least {low}"
        raise DaemonOptionError(name, value, f"must be {bound}")
    return value


def _mask(name: str, value: Any) -> int:
    return _int(name, value, 0, 0o777)


def _is_bool(value: Any) -> bool:
    """True, False, or the ints 1 and 0 (``configparser.getint``'s, python-daemon
    takes any truthy value); not other numbers, nor strings ("no" is truthy)."""
    return isinstance(value, int) and value in (0, 1)


def _bool(name: str, value: Any) -> bool:
    if not _is_bool(value):
        raise DaemonOptionError(name, value, "must be True or False (or 1 or 0)")
    return bool(value)


def _optional_bool(name: str, value: Any) -> bool | None:
    if value is None:
        return None
    if not _is_bool(value):
        raise DaemonOptionError(name, value, "must be True, False or None (or 1 or 0)")
    return bool(value)


_ID_MAX = 2**32 - 2  # uid_t/gid_t; 2**32 - 1 is (uid_t)-1, "leave unchanged", for setresuid


def _id(name: str, value: Any) -> int | None:
    # None is resolved by the constructor to the process's real id
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > _ID_MAX:
        raise DaemonOptionError(name, value, f"must be from 0 to {_ID_MAX}")
    return _int(name, value, 0)


def _files_preserve(name: str, value: Any) -> Any:
    """The container and each item's type, when set; whether an fd is open, at
    ``open()`` (a handler's stream may be opened in between)."""
    if value is None:
        return value
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise DaemonOptionError(name, value, "must be a list, tuple or set")
    logging = sys.modules.get("logging")  # a Handler can only exist if logging is imported
    for number, item in enumerate(value, 1):
        if item is None or (isinstance(item, int) and not isinstance(item, bool)):
            continue
        if logging is not None and isinstance(item, logging.Handler):
            continue
        if isinstance(item, bool):
            why = "a bool is not a file descriptor"
        elif not callable(getattr(item, "fileno", None)):
            why = f"{type(item).__name__} has no fileno()"
        else:
            continue
        reason = f"not a file descriptor, file, socket or handler: {why}"
        raise DaemonOptionError(name, item, reason, number)
    return value  # stored as given, never modified: resolved to fds at open()


def _stream(name: str, value: Any) -> Any:
    if value is not None and not callable(getattr(value, "fileno", None)):
        raise DaemonOptionError(name, value, "must be None or a file object with fileno()")
    return value


def _pidfile(name: str, value: Any) -> Any:
    if value is not None and not (hasattr(value, "__enter__") and hasattr(value, "__exit__")):
        raise DaemonOptionError(name, value, "must be a context manager (a PIDLockFile)")
    return value


def _signal_map(name: str, value: Any) -> SignalMap:
    # Laid over the defaults, whether given to the constructor or assigned later:
    # adding SIGHUP must not drop SIGTERM's clean stop. Map a default to SIG_DFL
    # (or anything else) to change it. None (PEP 3143's default) is the default map.
    if value is None:
        return default_signal_map()
    return {**default_signal_map(), **check_signal_map(value)}


def _seconds(name: str, value: Any) -> float | None:
    """A timeout: None, or seconds > 0; infinity (or a wait too long for the kernel's
    calls) is stored as None, "wait forever"."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise DaemonOptionError(name, value, "must be None or a number of seconds > 0")
    return finite_timeout(float(value))


class Option:
    """One ``DaemonContext`` option: its name, its default, its check, and whether a
    ``Service`` takes it (``detach_process`` and ``pidfile`` are the Service's own).
    A plain class: a dataclass would cost every daemon's start-up its import."""

    __slots__ = ("check", "default", "name", "service")

    def __init__(
        self, name: str, default: Any, check: Callable[[str, Any], Any], service: bool = True
    ) -> None:
        self.name = name
        self.default = default
        self.check = check
        self.service = service

    def __repr__(self) -> str:
        return f"Option({self.name!r}, default={self.default!r})"


# Every option, in PEP 3143's order then ours. DaemonContext's signature and
# attributes, Service's options and tests/test_options.py derive from this table.
OPTIONS: dict[str, Option] = {
    option.name: option
    for option in (
        Option("chroot_directory", None, _optional_path),
        Option("working_directory", "/", _path),
        Option("umask", 0, _mask),
        Option("uid", None, _id),
        Option("gid", None, _id),
        Option("initgroups", False, _bool),
        Option("prevent_core", True, _bool),
        Option("detach_process", None, _optional_bool, service=False),
        Option("files_preserve", None, _files_preserve),
        Option("pidfile", None, _pidfile, service=False),
        Option("stdin", None, _stream),
        Option("stdout", None, _stream),
        Option("stderr", None, _stream),
        Option("signal_map", None, _signal_map),
        Option("ready_on_open", True, _bool),
        Option("ready_timeout", None, _seconds),
    )
}


def check(name: str, value: Any) -> Any:
    """Check option ``name``'s ``value``; return what to store."""
    return OPTIONS[name].check(name, value)


# -- system checks, in open() before the fork ---------------------------------


def preload(
    prevent_core: bool, chroot_directory: str | None, pidfile: Any, drops_privileges: bool = False
) -> None:
    """Import now what the daemon will need later.

    ``resource`` costs four times more after the fork (copy-on-write faults).
    Inside a chroot no module file is reachable, so what the error paths use
    is loaded up front there: the error report (json, traceback), for our
    pidfile lockfile, whose exceptions it raises, and under a service manager
    the sd_notify code.
    """
    if prevent_core:
        import resource  # noqa: F401
    if chroot_directory is not None or drops_privileges:
        import json  # noqa: F401
        import tokenize  # noqa: F401 # 3.13's linecache imports it on first use (format_tb)
        import traceback  # noqa: F401

        if callable(getattr(pidfile, "fail_if_held", None)):
            import lockfile  # type: ignore[import-untyped] # noqa: F401
        if "NOTIFY_SOCKET" in os.environ:  # an @abstract socket is reachable from a chroot
            import socket  # noqa: F401

            from . import systemd  # noqa: F401


_CAP_SYS_CHROOT = 18  # capabilities(7): what chroot(2) takes


def _directory_problem(path: str) -> str | None:
    """Why this process could not chdir or chroot to ``path``, or None. The daemon
    takes both steps before it changes user, with the launcher's ids, so they are
    what is checked (effective ids, as the kernel's; ACLs and LSMs included)."""
    if not os.path.isdir(path):
        if not os.path.lexists(path) and _denied(os.path.dirname(path) or "."):
            return f"uid {os.geteuid()} may not reach it (permission denied)"
        return "no such directory"
    if not _may_enter(path):
        return f"uid {os.geteuid()} may not enter it (permission denied)"
    return None


def _may_enter(path: str) -> bool:
    effective = os.access in os.supports_effective_ids
    return os.access(path, os.X_OK, effective_ids=effective)


def _denied(directory: str) -> bool:
    """Whether ``directory`` or one above it exists and may not be searched:
    ``os.path.isdir`` says "no such directory" for a path it may not look into."""
    while True:
        if os.path.isdir(directory):
            return not _may_enter(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            return False
        directory = parent


def check_directories(chroot_directory: str | None, working_directory: str) -> None:
    """The directories exist and this process may enter them: a chroot also takes
    CAP_SYS_CHROOT. What the daemon's ``chroot`` and ``chdir`` would fail on."""
    if chroot_directory is not None:
        problem = _directory_problem(chroot_directory)
        if problem is None:
            from .limits import capable

            if not capable(_CAP_SYS_CHROOT):
                problem = "changing the root directory needs root (CAP_SYS_CHROOT)"
        if problem is not None:
            raise DaemonOptionError("chroot_directory", chroot_directory, problem)
    seen_from_here: str | None = working_directory
    if chroot_directory is not None:
        # After the chroot the daemon's working directory is the jail's root, so a
        # relative path starts there too; links are followed inside the jail.
        from .executable import resolve_in_root

        seen_from_here = resolve_in_root(chroot_directory, working_directory)
    problem = "no such directory" if seen_from_here is None else _directory_problem(seen_from_here)
    if problem is not None:
        where = f" (inside chroot_directory {chroot_directory!r})" if chroot_directory else ""
        raise DaemonOptionError("working_directory", working_directory, f"{problem}{where}")


def check_root(chroot_directory: str | None, uid: int, gid: int) -> str | None:
    """``chroot_directory`` resolved (absolute, no link, no ".."), the path the
    daemon chroots to: a jail only root, we and the daemon's user ``uid`` (when
    ``gid`` is one of that user's groups: ``paths.jail_owner``) could fill
    (``paths.check_root``). Another user's is ``paths.UnsafePathError``, naming
    ``chroot_directory``; None without one."""
    if chroot_directory is None:
        return None
    import errno

    from .paths import UnsafePathError, check_root, jail_owner

    try:
        return check_root(chroot_directory, "chroot_directory", jail_owner(uid, gid))
    except UnsafePathError:
        raise
    except OSError as exc:  # missing, not a directory, a directory that cannot be read
        reasons = {errno.ENOENT: "no such directory", errno.ENOTDIR: "not a directory"}
        reason = reasons.get(exc.errno or 0) or (os.strerror(exc.errno) if exc.errno else str(exc))
        raise DaemonOptionError("chroot_directory", chroot_directory, reason) from None


def stream_fd(name: str, stream: Any) -> int | None:
    """The fd a ``stdin``/``stdout``/``stderr`` option will be bound from."""
    if stream is None:
        return None
    try:
        fd = stream.fileno()
    except (OSError, ValueError) as exc:  # closed file, or io.UnsupportedOperation
        raise DaemonOptionError(name, stream, f"has no usable file descriptor: {exc}") from exc
    if not isinstance(fd, int) or not check_open(fd):
        raise DaemonOptionError(name, stream, f"fd {fd!r} is not open")
    return fd


def primary_gid(uid: int) -> int | None:
    """The primary group of ``uid`` in the passwd database; None without an entry."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_gid
    except (KeyError, OverflowError):
        return None


def _takes_the_users_group(uid: int) -> bool:
    """Whether a context given ``uid`` and no gid takes the user's primary group:
    when root changes user. Another process may only switch between the ids it
    holds (a setuid program's), and keeps its gid, as python-daemon does."""
    return uid != os.getuid() and os.geteuid() == 0


def default_gid(uid: int) -> int:
    """The gid a context runs as when it was given no ``gid``: when root changes
    user, ``uid``'s primary group, as ``su``, systemd's ``User=`` and ``daemonctx
    start --user`` give it (python-daemon keeps root's group 0, in a daemon that
    believes it dropped root); otherwise ours. Ours too when ``uid`` has no passwd
    entry: ``check_owner`` refuses that at ``open()``."""
    found = primary_gid(uid) if _takes_the_users_group(uid) else None
    return os.getgid() if found is None else found


def check_owner(uid: int | None, gid: int | None, initgroups: bool) -> tuple[int, int, str | None]:
    """Resolve ``uid``/``gid`` and check that this process may switch to them.
    ``gid`` None (not given): ``default_gid``; when root changes to a ``uid`` with no
    passwd entry there is no group to take, and keeping ours would keep root's
    group 0 in a daemon that dropped root: ``DaemonOptionError``, "pass gid too".

    Returns (uid, gid, user name for initgroups or None).
    """
    uid = os.getuid() if uid is None else uid
    if gid is None:
        if _takes_the_users_group(uid) and primary_gid(uid) is None:
            raise DaemonOptionError(
                "uid", uid, "no passwd entry to take the daemon's group from: pass gid too"
            )
        gid = default_gid(uid)
    if os.geteuid() != 0:
        held_uids, held_gids = _held_ids()
        if uid not in held_uids:
            raise DaemonOptionError(
                "uid", uid, f"cannot switch to it as uid {os.geteuid()} (not root)"
            )
        if gid not in held_gids:
            raise DaemonOptionError(
                "gid", gid, f"cannot switch to it as uid {os.geteuid()} (not root)"
            )
        if initgroups:
            raise DaemonOptionError("initgroups", True, "setting groups needs root")
    user_name = None
    if initgroups:
        import pwd

        try:
            user_name = pwd.getpwuid(uid).pw_name
        except KeyError:
            raise DaemonOptionError(
                "uid", uid, "initgroups=True needs a user name and this uid has no passwd entry"
            ) from None
    return uid, gid, user_name


def groups_of(user_name: str, gid: int) -> list[int] | None:
    """The groups ``initgroups`` would give ``user_name``, looked up here, before
    the daemon's chroot (inside it, ``/etc/group`` is the jail's or missing); None
    when the lookup fails (the daemon's ``initgroups`` tries again)."""
    try:
        return os.getgrouplist(user_name, gid)
    except (OSError, AttributeError):  # AttributeError: no getgrouplist on this system
        return None


def _held_ids() -> tuple[set[int], set[int]]:
    if hasattr(os, "getresuid"):
        return set(os.getresuid()), set(os.getresgid())
    return {os.getuid(), os.geteuid()}, {os.getgid(), os.getegid()}


def pidfile_seen_from_here(
    path: str, chroot_directory: str | None, working_directory: str
) -> str | None:
    """The daemon's pidfile ``path`` as this process (the launcher) sees it: the
    daemon opens it after chroot and chdir. None when its directory is not in the jail."""
    seen_from_here = os.path.join(working_directory, path)
    if chroot_directory is None:
        return seen_from_here
    # Its directory as the jail resolves it (J/var/run -> /run is J/run, not the
    # host's /run), from the jail's root when relative (the daemon's working
    # directory starts there); the file itself is never a link (O_NOFOLLOW)
    from .executable import resolve_in_root

    head, name = os.path.split(seen_from_here)
    directory_in_root = resolve_in_root(chroot_directory, head)
    return None if directory_in_root is None else os.path.join(directory_in_root, name)


def check_pidfile(
    pidfile: Any,
    chroot_directory: str | None,
    working_directory: str,
    held_ok: bool = False,
    uid: int | None = None,
) -> None:
    """For a pidfile with a ``path`` (ours, lockfile's): its directory must exist,
    and for ours, it must be trusted and no running process may hold it (unless it
    was given a timeout to wait for one, or ``held_ok``).

    The daemon opens the path after chroot and chdir, so that is where it is
    resolved here too. ``uid``, the user the daemon switches to, is trusted as
    the owner of its pidfile's directory (``RuntimeDirectory=`` with ``User=``),
    as of its chroot.
    """
    path = getattr(pidfile, "path", None)
    if not isinstance(path, str):
        return
    seen_from_here = pidfile_seen_from_here(path, chroot_directory, working_directory)
    if chroot_directory is not None and (
        seen_from_here is None or not os.path.isdir(os.path.dirname(seen_from_here))
    ):
        head = os.path.dirname(os.path.join(working_directory, path))
        where = f"directory {head!r} does not exist in chroot_directory {chroot_directory!r}"
        raise DaemonOptionError("pidfile", path, where)
    assert seen_from_here is not None
    directory = os.path.dirname(seen_from_here)
    if not os.path.isdir(directory):
        raise DaemonOptionError("pidfile", path, f"directory {directory!r} does not exist")
    fail_if_held = getattr(pidfile, "fail_if_held", None)
    if callable(fail_if_held):  # ours: a second instance fails here, before forking
        fail_if_held(seen_from_here, held_ok=held_ok, uid=uid)
