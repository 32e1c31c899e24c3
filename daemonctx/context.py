"""``DaemonContext``: PEP 3143's daemon context, with a start-up handoff.

``open()`` checks every option in the foreground, then (when detaching)
forks twice. The launching process waits on a pipe until the daemon reports
ready, then exits 0, or raises the daemon's error. Every step that changes
process state runs in the daemon, after the forks, so a launcher that raises
is left exactly as it was.
"""

from __future__ import annotations

import atexit  # builtin; imported here, since an import after the fork is slow
import os
import signal
import sys

# Everything the daemon may need is imported here, in the foreground: after
# chroot or a privilege drop the package's files may be out of reach.
from . import options, process
from .errors import DaemonOptionError, DaemonOSEnvironmentError, Interrupted, Terminated
from .handoff import Handoff
from .options import OPTIONS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import FrameType, TracebackType
    from typing import Any, NoReturn

    from .process import Handler
    from .types import FilePreserved, Pidfile, SignalHandler, SupportsFileno

# Signals a terminal sends to its foreground group, and the others a person or a
# tool sends to end a process. They are blocked across the first fork: until
# setsid() the child is still in that group, and a SIGHUP there (a launching
# ssh -t session ending) would kill it; the launcher takes them only inside its
# wait, where a Ctrl-C (or any of these but SIGTSTP) stops the daemon, not in
# between, where it would leave one running.
_LAUNCHER_SIGNALS = {
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTSTP,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
}
# Those whose default action ends the launcher: the daemon would come up all the same.
_ENDING_SIGNALS = sorted(_LAUNCHER_SIGNALS - {signal.SIGTSTP})


class _SignalsStopTheStart:
    """While the launcher waits, each of ``_ENDING_SIGNALS`` left at its default
    action raises ``Interrupted`` instead, as Ctrl-C raises ``KeyboardInterrupt``:
    ``timeout``, a lost ssh session or a service manager's start timeout then stop
    the starting daemon, and ``restore()`` ends the launcher by that signal, as
    the default action would have. Installed while they are blocked since the
    fork. A handler of the caller's (``start``'s, Ctrl-C's) and an ignored signal
    (``nohup``) are left as they are."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.taken: list[int] = []
        for number in _ENDING_SIGNALS:
            if signal.getsignal(number) is not signal.SIG_DFL:
                continue
            try:
                signal.signal(number, self._interrupt)
            except ValueError:  # open() outside the main thread: no handlers there
                break
            self.taken.append(number)

    def _interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:  # once: a second one must not cut the clean-up short
            self.signum = signum
            raise Interrupted(signum)

    def restore(self) -> None:
        """The default actions back; once one of them came, the launcher ends by it."""
        for number in self.taken:
            signal.signal(number, signal.SIG_DFL)
        if self.signum is not None:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {self.signum})
            signal.raise_signal(self.signum)


# The contexts open in this process. A context opened inside one of them (a library
# that daemonizes again, say) keeps their pidfiles' locks open: closing an fd that
# holds a flock drops the lock, and the outer daemon would look stopped.
_OPEN_CONTEXTS: list[DaemonContext] = []


def _pidfile_fds_of_open_contexts() -> set[int]:
    """The fds holding the pidfiles of the contexts open in this process (``fileno()``
    of ours; lockfile's and python-daemon's pidfiles hold none)."""
    fds: set[int] = set()
    for context in _OPEN_CONTEXTS:
        fileno = getattr(context._pidfile_entered, "fileno", None)
        if not callable(fileno):
            continue
        try:
            fd = fileno()
        except Exception:  # not held by this process (a forked child's copy)
            continue
        if isinstance(fd, int) and not isinstance(fd, bool) and fd > 2:
            fds.add(fd)
    return fds


def _connected_notify_fd() -> int | None:
    """The socket a chroot made notify() send through (``systemd.connect_notify_socket``),
    if one was made; without importing systemd, when nothing loaded it."""
    systemd = sys.modules.get(f"{__package__}.systemd")
    fd: int | None = None if systemd is None else systemd.connected_fd()
    return fd


def _notify(*lines: str) -> None:
    """Tell the service manager in NOTIFY_SOCKET, if any. An unusable NOTIFY_SOCKET
    (garbage, too long; ``notify()`` itself warns of a manager gone) is a warning on
    stderr, never a failed start: the daemon runs either way, and a start that
    reports failure must not leave it running."""
    from .systemd import notify  # imported only under a service manager

    try:
        notify(*lines)
    except DaemonOSEnvironmentError as exc:
        try:
            sys.stderr.write(f"daemonctx: warning: {exc.strerror}\n")
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass


def _stop_started_daemon(first_child: int) -> None:
    """Stop what a start that failed in the launcher left: the first child (it may be
    stalled before its fork), then, SIGTERM first, every process of the session it
    created: the daemon, whether or not its pid reached us, and whatever it forked
    (workers). The first child is not reaped yet, so its pid, which is the session's
    id, cannot be reused (``pidfd.pin_session``)."""
    from .pidfd import stop_session  # a failed start only

    try:
        os.kill(first_child, signal.SIGKILL)  # our own unreaped child: no pid reuse
    except ProcessLookupError:
        pass
    stop_session(first_child)


def _reap(child: int) -> None:
    """Reap the first child (it exits right after the second fork), unless the
    caller's ``launcher_ready`` did (``os.wait()``)."""
    try:
        os.waitpid(child, 0)
    except ChildProcessError:
        pass


def _to_the_end(clean_up: Callable[[], None]) -> None:
    """Run a failed start's ``clean_up`` again when a Ctrl-C (or ``start``'s SIGTERM)
    cuts it short: one can land as it begins, before it can block them, and the
    daemon would be left running."""
    while True:
        try:
            clean_up()
            return
        except KeyboardInterrupt:
            continue


class _Plan:
    """What ``open()`` resolved in the foreground, for the daemon to apply."""

    __slots__ = (
        "close_gaps",
        "gid",
        "groups",
        "handlers",
        "keep_fds",
        "leave_terminal",
        "pidfile_step",
        "root",
        "stream_fds",
        "uid",
        "user_name",
    )

    def __init__(self) -> None:
        self.handlers: dict[int, Handler] = {}
        self.keep_fds: set[int] = set()
        self.close_gaps: list[tuple[int, int]] = []
        self.stream_fds: list[int | None] = [None, None, None]
        self.uid = 0
        self.gid = 0
        self.user_name: str | None = None
        self.groups: list[int] | None = None  # user_name's, looked up before any chroot
        self.pidfile_step = b""
        self.root: str | None = None  # chroot_directory as checked: absolute, no link
        self.leave_terminal = False  # give up the controlling terminal (another user's)


class DaemonContext:
    """Context for turning the current program into a daemon process.

    Every option may be given to the constructor or set as an attribute
    before ``open()``; a bad value raises ``DaemonOptionError`` at once.
    See the Options section of docs/index.md for each option.
    """

    # Stored types. Each option is declared once, in ``options.OPTIONS``, whose
    # check runs on every assignment and normalises (paths become str, the
    # signal map a new dict); tests/test_options.py holds this signature to it.
    chroot_directory: str | None
    working_directory: str
    umask: int
    uid: int
    gid: int
    initgroups: bool
    prevent_core: bool
    detach_process: bool | None
    files_preserve: Sequence[FilePreserved] | None
    pidfile: Pidfile | None
    stdin: SupportsFileno | None
    stdout: SupportsFileno | None
    stderr: SupportsFileno | None
    signal_map: dict[int, SignalHandler]
    ready_on_open: bool
    ready_timeout: float | None
    _gid_given: bool  # False while gid follows uid (options.default_gid)

    def __init__(
        self,
        chroot_directory: str | os.PathLike[str] | None = None,
        working_directory: str | os.PathLike[str] = "/",
        umask: int = 0,
        uid: int | None = None,
        gid: int | None = None,
        initgroups: bool = False,
        prevent_core: bool = True,
        detach_process: bool | None = None,
        files_preserve: Sequence[FilePreserved] | None = None,
        pidfile: Pidfile | None = None,
        stdin: SupportsFileno | None = None,
        stdout: SupportsFileno | None = None,
        stderr: SupportsFileno | None = None,
        signal_map: Mapping[int, SignalHandler] | None = None,
        ready_on_open: bool = True,
        ready_timeout: float | None = None,
    ) -> None:
        self.chroot_directory = chroot_directory  # type: ignore[assignment] # made a str
        self.working_directory = working_directory  # type: ignore[assignment]
        self.umask = umask
        # Without a gid, the gid follows uid (options.default_gid): set with uid, and
        # again at every assignment of uid, until a gid is assigned.
        object.__setattr__(self, "_gid_given", gid is not None)
        self.uid = os.getuid() if uid is None else uid
        if gid is not None:
            self.gid = gid
        self.initgroups = initgroups
        self.prevent_core = prevent_core
        self.detach_process = detach_process
        self.files_preserve = files_preserve
        self.pidfile = pidfile
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        # Laid over the defaults (by the option's check), so adding SIGHUP keeps SIGTERM;
        # None is the default map, here and when assigned.
        self.signal_map = signal_map  # type: ignore[assignment]
        self.ready_on_open = ready_on_open
        self.ready_timeout = ready_timeout
        self._is_open = False
        self._handoff: Handoff | None = None
        self._ready = False
        self._stopping = False  # STOPPING=1 sent: close() does not send it again
        self._pidfile_entered: Any = None
        self._opener: int | None = None  # the pid that opened it: close() is that process's
        # In the daemon: WATCHDOG_PID's (launcher's, daemon's) when open() moved it.
        self._moved_watchdog: tuple[str, str] | None = None
        # In the launcher, during launcher_ready(): a pidfd on the daemon.
        self.daemon_pidfd: int | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        option = OPTIONS.get(name)
        if option is not None:
            if self.__dict__.get("_is_open"):
                raise DaemonOptionError(name, value, "cannot change an option of an open context")
            value = option.check(name, value)
            if name == "gid":
                object.__setattr__(self, "_gid_given", True)
            elif name == "uid" and not self.__dict__.get("_gid_given", True):
                object.__setattr__(self, "gid", options.default_gid(value))
        object.__setattr__(self, name, value)

    @property
    def is_open(self) -> bool:
        """True once ``open()`` has completed, until ``close()``."""
        return self._is_open

    def __enter__(self) -> DaemonContext:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_value is not None and self.launcher_waiting:
            self._abort_start(exc_value)  # the launcher raises this error instead
        self.close()

    # -- open ----------------------------------------------------------------

    def open(self) -> None:
        """Become a daemon. Does nothing if this context is already open.

        In the launching process (when detaching) this returns only by
        raising ``DaemonStartupError``; on success the launcher exits 0.
        """
        if self._is_open:
            return
        self._ready = False  # opened again after close(): a new start, to report again
        self._stopping = False
        self._handoff = None
        plan = self._preflight()
        detach = self.detach_process
        if detach is None:
            detach = process.detach_required()
        process.flush_standard_streams()
        keep = plan.keep_fds | set(process.STANDARD_FDS)  # 0-2 are replaced, not closed
        if _OPEN_CONTEXTS:  # opened inside another context: its pidfile stays locked
            keep |= _pidfile_fds_of_open_contexts()
        notify_fd = _connected_notify_fd()
        if notify_fd is not None:  # connected before a chroot: kept, as notify() uses it
            keep.add(notify_fd)
        if detach:
            process.warn_if_threads_alive()
            try:
                handoff = self._handoff = Handoff()
            except OSError as exc:  # EMFILE under a tiny fd limit, say
                raise DaemonOSEnvironmentError(
                    exc.errno, f"cannot create the start-up pipe: {exc.strerror}"
                ) from exc
            assert handoff.write_fd is not None  # the daemon's end, open until ready
            keep.add(handoff.write_fd)
        # Listed here, before the fork: the daemon only calls closerange.
        plan.close_gaps = process.fd_gaps(keep)
        if detach:
            self._detach()
        else:  # a detached daemon has no terminal: setsid() left it
            plan.leave_terminal = process.changes_user(plan.uid)
        try:
            self._become_daemon(plan)
        except BaseException as exc:
            self._abort_start(exc)
            raise
        self._is_open = True
        self._opener = os.getpid()
        _OPEN_CONTEXTS.append(self)
        atexit.register(self.close)
        if self.ready_on_open:
            self.notify_ready()

    @property
    def launcher_waiting(self) -> bool:
        """True in a detached daemon until it is ready or has failed: a launcher
        waits for the outcome, and an exception leaving the ``with`` block is
        the error its ``open()`` raises (exit 1 for the command line)."""
        return self._handoff is not None and self._handoff.write_fd is not None

    def _abort_start(self, exc: BaseException) -> None:
        """A failure before ready: release the pidfile; when a launcher waits,
        report ``exc`` to it and end this process at once (``os._exit``), so no
        cleanup of the user's runs here: the user's code goes on in the launcher."""
        self._release_pidfile()
        handoff = self._handoff
        if handoff is not None and handoff.write_fd is not None:
            handoff.fail_and_exit(exc)

    def notify_ready(self) -> None:
        """Report that the daemon is up. Harmless when called again.

        When detached, the launcher exits 0 now (and, under systemd, sends
        ``MAINPID=<daemon>`` and ``READY=1`` for it, as the process systemd
        started). Otherwise ``READY=1`` goes straight to ``NOTIFY_SOCKET``.
        """
        if self._ready:
            return
        self._ready = True
        if self._handoff is not None:
            self._handoff.send_ready()
        elif "NOTIFY_SOCKET" in os.environ:
            _notify("READY=1")

    def notify_step(self, what: str) -> None:
        """Say what the daemon does now, before it is ready, for the launcher to tell
        the user if it takes long: ``"load the model"`` makes ``still waiting for
        the daemon (pid 4242) to load the model (3 s so far; ...)``; ``""`` says that
        step is done (``to report ready`` again). Harmless when not detached, or once
        ready."""
        handoff = self._handoff
        if handoff is not None and not self._ready and handoff.write_fd is not None:
            handoff.send_step(what.encode("utf-8", "surrogateescape"))

    def notify_stopping(self) -> None:
        """Tell the service manager the daemon begins its shutdown (``STOPPING=1``),
        for a shutdown that takes a while; ``close()`` then does not say it again.
        Harmless without ``NOTIFY_SOCKET``, when called again, or in a forked worker."""
        if self._stopping or not self._is_open or os.getpid() != self._opener:
            return
        self._stopping = True
        if "NOTIFY_SOCKET" in os.environ:
            _notify("STOPPING=1")

    def notify_ready_on_exec(self) -> None:
        """Make a successful ``os.exec*()`` from the daemon count as ready.

        For a daemon that replaces itself with another program (what
        ``daemonctx start -- COMMAND`` does): the launcher exits 0 once the
        exec has happened, and if the exec fails its error reaches the
        launcher as usual. Call it with ``ready_on_open=False``, just before exec.
        A worker the daemon forked before does not delay it: forked processes
        close their copy of the start-up pipe.
        """
        if self._handoff is not None and not self._ready:
            self._handoff.send_exec()

    def launcher_ready(self, daemon_pid: int) -> None:
        """Called in the launcher once the daemon is ready, just before it exits 0.

        Under systemd it sends ``MAINPID=`` and ``READY=1`` for the daemon.
        Override it (calling ``super()``) to print a message or to wait for
        more; an exception raised here is raised by ``open()`` in the launcher,
        and the daemon keeps running (but for Ctrl-C and the launcher's stop
        signals, which stop it, as they do while the launcher waits).
        """
        if "NOTIFY_SOCKET" in os.environ:
            _notify(f"MAINPID={daemon_pid}", "READY=1")

    def check(self, *, pidfile_held_ok: bool = False) -> None:
        """Run every check ``open()`` runs before it forks, and nothing else: a bad
        directory, user or fd raises here. ``pidfile_held_ok`` leaves out "the pidfile
        is held", for a restart that checks its new context before stopping the old
        daemon (``Service.restart``)."""
        self._preflight(pidfile_held_ok)

    def _preflight(self, pidfile_held_ok: bool = False) -> _Plan:
        """Check everything that can be checked before forking; resolve the options."""
        plan = _Plan()
        drops = os.geteuid() == 0 and (self.uid, self.gid) != (os.getuid(), os.getgid())
        options.preload(self.prevent_core, self.chroot_directory, self.pidfile, drops)
        options.check_directories(self.chroot_directory, self.working_directory)
        for index, name in enumerate(("stdin", "stdout", "stderr")):
            plan.stream_fds[index] = options.stream_fd(name, getattr(self, name))
        plan.keep_fds = options.resolve_files_preserve(self.files_preserve, plan.stream_fds)
        plan.keep_fds.update(fd for fd in plan.stream_fds if fd is not None)
        plan.uid, plan.gid, plan.user_name = options.check_owner(
            self.uid, self.gid if self._gid_given else None, self.initgroups
        )
        plan.root = options.check_root(self.chroot_directory, plan.uid, plan.gid)
        if plan.user_name is not None:  # the host's groups: a chroot may have its own file
            plan.groups = options.groups_of(plan.user_name, plan.gid)
        plan.handlers = options.resolve_signal_map(self.signal_map, self)
        options.check_pidfile(
            self.pidfile, plan.root, self.working_directory, pidfile_held_ok, plan.uid
        )
        if self.pidfile is not None:  # what the launcher says if the daemon stalls there
            where = getattr(self.pidfile, "path", None)
            kind = type(self.pidfile).__name__
            step = f"take its pidfile {where or ''} ({kind})"  # a path may be any bytes
            plan.pidfile_step = step.encode("utf-8", "surrogateescape")
        return plan

    def _detach(self) -> None:
        """Fork twice with setsid between; return in the daemon only."""
        handoff = self._handoff
        assert handoff is not None
        launcher = os.getpid()
        mask = process.block_signals(_LAUNCHER_SIGNALS)
        try:
            child = process.fork("first fork")
        except BaseException:
            process.set_signal_mask(mask)
            raise
        if child:
            self._wait_in_launcher(handoff, child, mask)
        try:
            handoff.in_daemon()
            process.start_new_session()
            daemon = process.fork("second fork")
            if daemon:
                handoff.send_pid(daemon)
                os._exit(0)  # the session leader leaves: the daemon can never get a tty
            handoff.keep_from_children()
        except BaseException as exc:
            handoff.fail_and_exit(exc)
        # systemd's WatchdogSec= names the process it started, the launcher, in
        # WATCHDOG_PID: the watchdog is the daemon's now (systemd learns its pid from
        # MAINPID= or the pidfile), for watchdog_seconds() or the program it execs.
        if os.environ.get("WATCHDOG_PID") == str(launcher):
            self._moved_watchdog = (str(launcher), str(os.getpid()))
            os.environ["WATCHDOG_PID"] = self._moved_watchdog[1]

    def _wait_in_launcher(self, handoff: Handoff, child: int, mask: set[int]) -> NoReturn:
        """Wait for the daemon's word, then exit 0; or raise its error here.

        When the wait ends without ready (the daemon's error, its death, a
        timeout, Ctrl-C in the terminal) the daemon and every process of the
        session our first child created are stopped: a start that the user saw
        fail must not leave a daemon, or a worker it forked, behind. Each is
        signalled through a pidfd, checked in that session once pinned (that
        child is reaped only after every clean-up, so the session id is not reused).

        The signals blocked across the fork are let in (``mask``) only in here.
        Until the launcher exits 0, Ctrl-C, and SIGTERM, SIGHUP and the others left
        at their default action (``_SignalsStopTheStart``), stop the daemon too;
        the launcher then ends by that signal. Any other exception that
        ``launcher_ready`` raises leaves the daemon running.
        """
        handoff.in_launcher()
        signals = _SignalsStopTheStart()
        ready = False
        try:
            process.set_signal_mask(mask)  # one held back since the fork lands here
            try:
                pid = handoff.wait(self.ready_timeout)
            finally:
                self._handoff = None
            ready = True
            self.daemon_pidfd = handoff.daemon_pidfd
            self.launcher_ready(pid)
            _reap(child)
            process.flush_standard_streams()
        except BaseException as exc:
            # The wait failed, or a signal came before the launcher could exit 0.
            if not ready or isinstance(exc, KeyboardInterrupt):
                _to_the_end(lambda: _stop_started_daemon(child))
                _to_the_end(lambda: self._remove_left_pidfile(handoff.daemon_pid))
            _to_the_end(self._launch_failed)
            handoff.close_pidfd()  # daemon_pidfd's, once it is set
            self.daemon_pidfd = None
            _to_the_end(lambda: _reap(child))  # only now: its pid is the session's id
            signals.restore()  # ends the launcher, after one of its signals
            raise  # the failure, not a Ctrl-C that came during its clean-up
        os._exit(0)

    def _remove_left_pidfile(self, daemon_pid: int | None) -> None:
        """After a failed start, the daemon stopped: remove its pidfile if that is
        left, stale and naming it (it was SIGKILLed, or closed the lock's fd itself).
        Ours only: a ``PIDLockFile`` never removes a file a live process holds."""
        from .pidfile import PIDLockFile  # a failed start only

        path = getattr(self.pidfile, "path", None)
        if daemon_pid is None or not isinstance(self.pidfile, PIDLockFile):
            return
        if not isinstance(path, str):
            return
        seen = options.pidfile_seen_from_here(path, self.chroot_directory, self.working_directory)
        if seen is None:
            return
        left = PIDLockFile(seen)
        try:
            if left.read_pid() == daemon_pid:
                left.break_lock()
        except Exception:  # held again (a new start), not ours to remove: leave it
            pass

    def _before_owner_change(self) -> None:
        """In the daemon, once it holds its pidfile, just before it changes user: what
        a subclass must do with the launcher's privileges (``start --limit``)."""

    def _launch_failed(self) -> None:
        """In the launcher, a start that failed (the daemon's error, a timeout, a
        signal, ``launcher_ready`` raising), before the exception leaves ``open()``:
        ``daemon_pidfd`` is still open when the pid was learnt. Nothing to do here."""

    def _become_daemon(self, plan: _Plan) -> None:
        """The daemon's steps, in order; each line says why it is where it is."""
        # A mask inherited from the launcher would hold signals back forever.
        process.reset_signal_mask()
        # Close inherited fds first (the gaps listed before the fork); 0-2
        # stay until they are replaced below.
        process.close_fds(plan.close_gaps)
        # Changing user without detaching: the caller's terminal must not stay
        # ours (TIOCSTI into its shell). Opened before chroot, given up before
        # the user changes.
        terminal = process.open_controlling_terminal() if plan.leave_terminal else None
        try:
            self._take_steps(plan, terminal)
        finally:
            if terminal is not None:
                os.close(terminal)

    def _take_steps(self, plan: _Plan, terminal: int | None) -> None:
        """``_become_daemon``'s steps after the fds are closed."""
        # /dev/null is opened before chroot: an empty chroot has none.
        devnull = process.open_devnull() if None in plan.stream_fds else None
        if self.prevent_core:
            process.prevent_core_dump()
        if plan.root is not None:  # the jail checked, not the path again (a link moved)
            if "NOTIFY_SOCKET" in os.environ:
                # systemd's is a path the jail lacks: connected now, a socket reaches
                # it from inside (READY=1, STOPPING=1, notify())
                from .systemd import connect_notify_socket  # loaded by options.preload

                connect_notify_socket()
            process.change_root_directory(plan.root)
        process.change_working_directory(self.working_directory)
        process.change_file_creation_mask(self.umask)
        sources = [devnull if fd is None else fd for fd in plan.stream_fds]
        process.redirect_standard_streams(sources)  # type: ignore[arg-type]
        process.follow_line_buffering(self.stdout, self.stderr)
        if devnull is not None and devnull > 2:  # below 3 it is a standard fd now
            os.close(devnull)
        # Once the pidfile is held, status, stop and reload find us: what the
        # signal map handles waits for its handler (SIGHUP must not kill us now).
        before = process.hold_signals(plan.handlers)
        try:
            # The pidfile is written before privileges drop, so a root-started
            # daemon can keep it in a root-owned directory such as /run.
            if self.pidfile is not None:
                if self._handoff is not None:
                    self._handoff.send_step(plan.pidfile_step)
                self.pidfile.__enter__()
                self._pidfile_entered = self.pidfile
                if self._handoff is not None:  # taken: the launcher waits for ready again
                    self._handoff.send_step(b"")
            # From here a stop request too waits for its handler (not during a lock
            # wait, above: it stops the daemon there at once).
            process.hold_signals(plan.handlers, stops=True)
            self._before_owner_change()
            if terminal is not None:
                process.give_up_controlling_terminal(terminal)
            process.change_process_owner(plan.uid, plan.gid, plan.user_name, plan.groups)
        except BaseException:
            process.release_signals(before)
            raise
        # Handlers last: nothing above may be interrupted by a user handler.
        process.install_signal_handlers(plan.handlers, before)

    # -- close ---------------------------------------------------------------

    def _release_pidfile(self) -> None:
        pidfile, self._pidfile_entered = self._pidfile_entered, None
        if pidfile is not None:
            pidfile.__exit__(None, None, None)

    def close(self) -> None:
        """Release the pidfile, send ``STOPPING=1`` under a service manager, and mark
        the context closed. Harmless when closed.

        Only in the process that opened it: in a worker forked inside the ``with``
        block (whose exit, SIGTERM handler and atexit hook run this too) it only
        marks the worker's copy closed. The pidfile and the service are the
        daemon's: a worker that ends must not release them nor say it stops."""
        if not self._is_open:
            return
        if os.getpid() == self._opener:
            self.notify_stopping()
            self._release_pidfile()
            if self._handoff is not None:
                self._handoff.send_left()  # closing before ready: the launcher reports it
        else:  # a forked worker's copy: its fd of the pidfile closes as it exits
            self._pidfile_entered = None
        self._is_open = False
        if self in _OPEN_CONTEXTS:
            _OPEN_CONTEXTS.remove(self)

    def terminate(self, signal_number: int, stack_frame: FrameType | None) -> None:
        """Handler for SIGTERM: raise ``Terminated``, a ``SystemExit`` with status 0,
        so ``with`` blocks and ``finally`` clauses unwind and the context closes."""
        raise Terminated(signal_number)
