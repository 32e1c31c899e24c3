"""One program's state machine: events in, actions out, no I/O.

The event loop feeds it what happened (``start``, ``spawned``, ``spawn_failed``,
``ready``, ``keepalive``, ``hung``, ``exited``, ``stop``, ``timer``), each with
the current monotonic time, and performs the actions it returns (``Spawn``,
``SignalGroup``, ``ArmTimer``, ``CancelTimer``, ``Report``). The clock and the jitter's
randomness come from outside, so every rule below is a fast unit test:

- readiness: ``"started"`` at spawn, ``"notify"`` on READY=1 (stopped and
  counted as a failed start if ``start_timeout`` passes first), ``"exited"``
  (a one-shot) at an exit with a success code, which then ends it, or after
  the program has run a number of seconds; an exit before ready is a failed start;
- backoff that cannot loop: the first crash after a stable run (ready for
  ``stable_seconds``) restarts at once, each further one waits twice as long
  (``restart_delay`` up to ``restart_delay_max``) with +-15 % jitter;
- start limit: ``start_limit`` starts within ``start_limit_interval`` seconds
  and the program is ``failed`` until the next ``start()``;
- the watchdog: once ready, a ``watchdog`` interval without ``keepalive``
  (WATCHDOG=1), or ``hung`` (WATCHDOG=trigger), stops the program, and its
  exit is a crash (``restart`` applies);
- exit codes: ``success_codes`` are no failure (``on-failure`` ends there);
- the stop ladder: ``stop_signal``, ``stop_timeout`` later SIGKILL, and
  ``KILL_GRACE`` after that a report that the process is stuck; or the steps
  of ``stop`` (``TERM, 10, QUIT, 2, KILL``), each one reported.

Where the rules leave a choice: every start counts towards the start limit
(the operator's too, and ``start()`` clears the count and the crash streak);
the limit is checked against when the next start would happen, so a long
backoff that ends outside the window is allowed; with ``restart = "never"`` an
exit after ready ends in ``exited`` (whatever the status) and a start that never
became ready ends in ``failed``; an exit 0 before ready is a failed start, so
``"on-failure"`` restarts it; ``start()`` while stopping starts again once the
process is gone; an infinite ``start_timeout`` or ``stop_timeout`` arms no timer;
a reload (``reconfigure``) rules the next start, stop and exit, not the run or the
stop under way, and ends a backoff that its ``restart`` would not have begun.

Events that do not apply in the current state (a READY=1 after a stop, a timer
that is no longer armed, ...) are ignored: they race with the machine's own
decisions and are harmless. Every event does a constant amount of work.
"""

from __future__ import annotations

import errno as errnos
import math
import os
from collections import deque
from dataclasses import dataclass
from enum import Enum
from signal import SIGKILL, Signals
from typing import TYPE_CHECKING, Protocol, Union

from .record import record
from .results import format_ago, format_seconds

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Sequence

__all__ = [
    "KILL_GRACE",
    "PERMANENT_ERRNOS",
    "Action",
    "ArmTimer",
    "CancelTimer",
    "DefaultPolicy",
    "ExitStatus",
    "Policy",
    "ProgramStatus",
    "Report",
    "SignalGroup",
    "Spawn",
    "State",
    "StateMachine",
    "check_policy",
    "format_seconds",
    "signal_name",
    "succeeded",
]

#: Seconds after SIGKILL before the machine reports the process as stuck (it
#: keeps waiting: a process in uninterruptible sleep may still exit).
KILL_GRACE = 5.0

#: Spawn errors that retrying cannot fix: no such file, no permission, not an
#: executable format. Any other errno (EAGAIN, ENOMEM, ...) goes through backoff.
PERMANENT_ERRNOS = frozenset({errnos.ENOENT, errnos.EACCES, errnos.ENOEXEC})

RESTART_POLICIES = ("always", "on-failure", "never")
READY_WORDS = ("started", "notify", "exited")
JITTER = 0.15
#: How long a program has to send READY=1 when its ``start_timeout`` is not given.
DEFAULT_START_TIMEOUT = 60.0


class Policy(Protocol):
    """The settings the machine reads (a config ``Program`` has them all).

    Read-only properties, so frozen dataclasses and plain objects both match.
    """

    @property
    def restart(self) -> str:
        """``"always"``, ``"on-failure"`` or ``"never"``."""

    @property
    def success_codes(self) -> Sequence[int]:
        """The exit codes that are no failure (``on-failure`` does not restart)."""

    @property
    def ready(self) -> str | float:
        """``"started"``, ``"notify"``, ``"exited"`` (a one-shot), or seconds the
        program must run."""

    @property
    def stop_signal(self) -> int:
        """The first signal of the stop ladder."""

    @property
    def stop_timeout(self) -> float:
        """Seconds from ``stop_signal`` to SIGKILL (infinite: never kill)."""

    @property
    def stop(self) -> Sequence[int | float] | None:
        """A stop ladder, ``(signal, seconds, signal, ..., signal)``, or None for
        ``(stop_signal, stop_timeout, SIGKILL)``."""

    @property
    def restart_delay(self) -> float:
        """The first non-zero backoff delay."""

    @property
    def restart_delay_max(self) -> float:
        """The longest nominal backoff delay."""

    @property
    def stable_seconds(self) -> float:
        """How long a run must stay ready for the backoff to reset."""

    @property
    def start_limit(self) -> int:
        """Starts allowed within ``start_limit_interval`` (0: never give up)."""

    @property
    def start_limit_interval(self) -> float:
        """The start limit's window, in seconds."""

    @property
    def start_timeout(self) -> float | None:
        """Seconds to wait for READY=1 with ``ready = "notify"``, or for a one-shot's
        exit (``ready = "exited"``); infinite: forever. None: the default,
        ``DEFAULT_START_TIMEOUT`` for READY=1, no limit for a one-shot (systemd's
        ``TimeoutStartSec=`` defaults)."""

    @property
    def watchdog(self) -> float | None:
        """Once ready, the longest time between two ``WATCHDOG=1`` (None: no watchdog)."""


@dataclass(frozen=True)  # dataclasses.replace() makes variants of it
class DefaultPolicy:
    """A ``Policy`` with the documented defaults, for tests and callers."""

    restart: str = "on-failure"
    success_codes: Sequence[int] = (0,)
    ready: str | float = "started"
    stop_signal: int = 15  # SIGTERM
    stop_timeout: float = 10.0
    stop: Sequence[int | float] | None = None
    restart_delay: float = 0.1
    restart_delay_max: float = 30.0
    stable_seconds: float = 30.0
    start_limit: int = 5
    start_limit_interval: float = 60.0
    start_timeout: float | None = None
    watchdog: float | None = None


def start_timeout(policy: Policy) -> float:
    """``policy``'s start timeout, its default filled in (``Policy.start_timeout``)."""
    timeout = policy.start_timeout
    if timeout is not None:
        return timeout
    return math.inf if policy.ready == "exited" else DEFAULT_START_TIMEOUT


def check_policy(policy: Policy) -> None:
    """Raise ``ValueError`` for a ``restart`` or ``ready`` the machine cannot follow."""
    if policy.restart not in RESTART_POLICIES:
        raise ValueError(f"restart={policy.restart!r}: expected one of {RESTART_POLICIES}")
    ready = policy.ready
    if isinstance(ready, str):
        if ready not in READY_WORDS:
            raise ValueError(f"ready={ready!r}: expected 'started', 'notify', 'exited' or seconds")
    elif isinstance(ready, bool) or not isinstance(ready, (int, float)) or not ready >= 0:
        raise ValueError(f"ready={ready!r}: expected 'started', 'notify' or seconds >= 0")


def succeeded(status: ExitStatus, policy: Policy) -> bool:
    """Whether ``status`` is a success by ``policy``: an exit code it lists."""
    return status.code is not None and status.code in policy.success_codes


def signal_name(number: int) -> str:
    """``SIGTERM`` for 15; ``signal 77`` for a number without a name."""
    try:
        return Signals(number).name
    except ValueError:
        return f"signal {number}"


@record(frozen=True)
class ExitStatus:
    """How a process ended: an exit ``code``, or the ``signal`` that killed it."""

    code: int | None = None
    signal: int | None = None
    core: bool = False

    def __post_init__(self) -> None:
        if (self.code is None) == (self.signal is None):
            raise ValueError("an exit status has either a code or a signal")

    @classmethod
    def from_wait_status(cls, status: int) -> ExitStatus:
        """From ``os.waitpid``'s status word."""
        if os.WIFSIGNALED(status):
            return cls(signal=os.WTERMSIG(status), core=os.WCOREDUMP(status))
        return cls(code=os.WEXITSTATUS(status))

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        """From ``subprocess.Popen.returncode`` (negative: killed by that signal)."""
        return cls(signal=-returncode) if returncode < 0 else cls(code=returncode)

    @property
    def success(self) -> bool:
        """Exit code 0."""
        return self.code == 0

    def describe(self) -> str:
        """``exited 1``, ``killed by SIGKILL``, ``killed by SIGSEGV (core dumped)``."""
        if self.signal is None:
            return f"exited {self.code}"
        core = " (core dumped)" if self.core else ""
        return f"killed by {signal_name(self.signal)}{core}"


class State(Enum):
    """A program's state; the values are the words ``ctl status`` shows."""

    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    EXITED = "exited"  # ended as its restart policy allows
    FAILED = "failed"  # gave up (start limit) or cannot be executed


@record(frozen=True)
class Spawn:  # the actions and results are records: a dataclass costs ~1 ms at import
    """Start the program; answer with ``spawned`` or ``spawn_failed``."""


@record(frozen=True)
class SignalGroup:
    """Send ``signal`` to the program's process group."""

    signal: int


@record(frozen=True)
class ArmTimer:
    """Call ``timer`` at ``deadline``; replaces any timer armed before."""

    deadline: float


@record(frozen=True)
class CancelTimer:
    """Forget the armed timer."""


class Report:
    """Something to log: a state change (``text`` is the machine's ``describe(now)``
    at that moment) or a stuck stop.

    A machine's report makes its text when it is first read, and at the latest
    when the machine takes its next event, so that the text still tells that
    moment: the supervisor reads it after sending a stop's signal (describing a
    stop costs more than deciding it, and the signal should not wait)."""

    __slots__ = ("_machine", "_now", "_text", "state")

    def __init__(self, state: State, text: str) -> None:
        self.state = state
        self._text: str | None = text
        self._machine: StateMachine | None = None
        self._now = 0.0

    @classmethod
    def _later(cls, state: State, machine: StateMachine, now: float) -> Report:
        report = cls.__new__(cls)
        report.state, report._text, report._machine, report._now = state, None, machine, now
        return report

    @property
    def text(self) -> str:
        text = self._text
        if text is None:
            machine = self._machine
            assert machine is not None
            text = self._text = machine.describe(self._now)
            self._machine = None
        return text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Report):
            return NotImplemented
        return self.state is other.state and self.text == other.text

    def __hash__(self) -> int:
        return hash((self.state, self.text))

    def __repr__(self) -> str:
        return f"Report(state={self.state!r}, text={self.text!r})"


Action = Union[Spawn, SignalGroup, ArmTimer, CancelTimer, Report]


@record(frozen=True)
class ProgramStatus:
    """What a status API shows about one program, at one moment."""

    state: State
    text: str  # describe(now)
    pid: int | None
    since: float  # time of the last state change
    restarts: int  # automatic restarts since the last start()
    attempt: int  # starts in the current crash streak, the next or current one included
    last_exit: ExitStatus | None
    last_exit_at: float | None
    next_start: float | None  # in backoff: when the next start is due
    status_text: str  # the program's last STATUS=


def _jitter() -> float:
    """A float in [0, 1) for the backoff jitter, from getrandom(2): no ``random``
    module to load (memory), and no file to open (a supervisor out of
    descriptors still computes its backoff)."""
    return int.from_bytes(os.urandom(7), "big") / (1 << 56)


class StateMachine:
    """One program's supervision: call an event method, perform the actions it returns.

    Starts ``stopped``; the supervisor calls ``start(now)`` for programs that
    start at boot. ``rng`` is a ``random.Random`` or a callable returning a
    float in [0, 1) for the backoff jitter (default: from getrandom(2), which
    needs no file descriptor).
    ``policy`` is read at each event; a reload replaces it with ``reconfigure``.
    What is under way keeps what it began with: a run its readiness and watchdog
    (the process knows only the NOTIFY_SOCKET and WATCHDOG_USEC it got), a stop
    its ladder (as systemd applies a new ``TimeoutStopSec=`` to the next stop).
    """

    def __init__(
        self,
        policy: Policy,
        rng: random.Random | Callable[[], float] | None = None,
        *,
        now: float = 0.0,
    ) -> None:
        check_policy(policy)
        self.policy = policy
        self._random: Callable[[], float] = (
            _jitter if rng is None else rng if callable(rng) else rng.random
        )
        self.state = State.STOPPED
        self.since = now
        self.pid: int | None = None
        self.restarts = 0
        self.last_exit: ExitStatus | None = None
        self.last_exit_at: float | None = None
        self.next_start: float | None = None
        self.status_text = ""  # the program's STATUS=, set by the event loop
        # set by the event loop while the process in charge is not known (a forking
        # program's leader exited, its daemon's pid awaited): said instead of a pid
        self.awaited: str | None = None
        self.reason: str | None = None  # why the last run ended, or why we gave up
        self.failures = 0  # failures so far (crashes, failed starts): each one counted once
        self.failure_status: ExitStatus | None = None  # the exit of the last one, if any
        self._deadline: float | None = None
        self._spawned_at: float | None = None
        self._ready_at: float | None = None
        self._alive_at = now  # the last WATCHDOG=1 (or ready)
        self._ran = 0.0  # how long the last run lasted
        self._streak = 0  # restarts since the last stable run or start()
        self._starts: deque[float] = deque()  # recent start times, for the start limit
        self._stop_cause: str | None = None  # None: the operator's stop; else a failed start
        self._run: Policy = policy  # the policy the current (or last) run started with
        self._ladder = self.ladder()  # the stop under way's steps, as it began
        self._stop_phase = 0  # the ladder's step whose signal was sent; past its end: stuck
        # how the run before a backoff ended, for a reload's new ``restart``: a
        # failure (None: as its exit status says), a failed start
        self._backoff_failure: bool | None = True
        self._backoff_failed_start = False
        self._signalled_at = now
        # when the step's signal last went out: to a process found late (sent_late),
        # which had it for less than the step's wait; and how long the last step's
        # signal was ignored by the process that had it last
        self._last_sent_at = now
        self._ignored_for = 0.0
        self._start_pending = False  # start() while stopping: start again once stopped
        self._unread: list[Report] = []  # reports whose text is not made yet
        # The supervisor shuts down: no automatic start from now on (a run that ends
        # before its stop wave is its last, a backoff gives up), as after stop().
        self.ending = False
        # The boot waits for this start: a failed one fails the boot, so it is not
        # tried again (the program is failed, rather than "starting" a retry that
        # never comes). Set by the event loop before each event.
        self.booting = False

    # -- what the loop and the status API read ------------------------------------

    @property
    def deadline(self) -> float | None:
        """The armed timer's deadline, or None."""
        return self._deadline

    @property
    def attempt(self) -> int:
        """The number of the current (or, in backoff, next) start in this crash streak."""
        return self._streak + 1

    @property
    def stop_cause(self) -> str | None:
        """Why the supervisor itself is stopping the program (a start timeout, a
        watchdog), or None."""
        return self._stop_cause if self.state is State.STOPPING else None

    @property
    def killed(self) -> bool:
        """Whether the stop under way has sent SIGKILL (the ladder's last step, or
        an earlier one). No step after it signals a process of the program found
        only since, such as one that SIGKILL's death of its parent reparented to
        the supervisor: that one gets SIGKILL at once."""
        if self.state is not State.STOPPING or self.pid is None:
            return False
        sent = self._ladder[: self._stop_phase + 1]
        return any(signum == SIGKILL for signum, _wait in sent)

    @property
    def started_at(self) -> float | None:
        """When the current (or the last) process was spawned."""
        return self._spawned_at

    @property
    def run_policy(self) -> Policy:
        """The policy the current (or last) run started with: a reload's new
        ``ready``, ``watchdog`` and ``start_timeout`` wait for the next start."""
        return self._run

    @property
    def step_signal(self) -> int | None:
        """The signal of the stop's current step (SIGKILL once stuck), or None when
        no stop of a process is under way."""
        if self.state is not State.STOPPING or self.pid is None:
            return None
        ladder = self._ladder
        return ladder[min(self._stop_phase, len(ladder) - 1)][0]

    def sent_late(self, now: float) -> None:
        """The current step's signal went to a process found only now (one that
        left the group, adopted when its parent died): the next step's report says
        how long that one ignored it, not the whole wait."""
        if self.state is State.STOPPING and self.pid is not None:
            self._last_sent_at = max(self._last_sent_at, now)

    @property
    def ready_at(self) -> float | None:
        """When the current (or the last) process became ready."""
        return self._ready_at

    def status(self, now: float) -> ProgramStatus:
        """A snapshot for the status API."""
        return ProgramStatus(
            state=self.state,
            text=self.describe(now),
            pid=self.shown_pid,
            since=self.since,
            restarts=self.restarts,
            attempt=self.attempt,
            last_exit=self.last_exit,
            last_exit_at=self.last_exit_at,
            next_start=self.next_start,
            status_text=self.status_text,
        )

    # -- events -------------------------------------------------------------------

    def reconfigure(self, policy: Policy, now: float) -> list[Action]:
        """A reload's new settings: for the next start, the next stop and the next
        exit; what is under way keeps its own (see the class). A backoff whose new
        ``restart`` would not have restarted its exit ends at once: ``exited``
        (``failed`` after a failed start), as that exit would have."""
        check_policy(policy)
        self._settle()
        self.policy = policy
        failure = self._backoff_failure
        if failure is None:  # judged by the new success_codes
            failure = self.last_exit is None or not succeeded(self.last_exit, policy)
        if self.state is not State.BACKOFF or self._restarts(failure):
            return []
        self.next_start = None
        cancel = self._cancel()
        if self._backoff_failed_start:
            return cancel + self._fail(now, self.reason or "")
        return cancel + self._enter(now, State.EXITED)

    def start(self, now: float) -> list[Action]:
        """A start requested (operator or boot): spawn now, with a fresh start count."""
        self._settle()
        if self.state in (State.STOPPED, State.EXITED, State.FAILED, State.BACKOFF):
            return self._cancel() + self._fresh_start(now)
        if self.state is State.STOPPING:
            self._start_pending = True
        return []

    def spawned(self, now: float, pid: int) -> list[Action]:
        """The program runs as ``pid`` (its process group leader)."""
        self._settle()
        if self.pid is not None or self.state not in (State.STARTING, State.STOPPING):
            return []
        self.pid = pid
        self._spawned_at = now
        if self.state is State.STOPPING:  # stop() came before the pid: stop it now
            return self._begin_stop(now)
        ready = self._run.ready
        if ready in ("notify", "exited"):  # READY=1, or a one-shot's successful exit
            timeout = start_timeout(self._run)
            return [self._arm(now + timeout)] if math.isfinite(timeout) else []
        if ready == "started" or float(ready) <= 0:
            return self._become_ready(now)
        seconds = float(ready)
        return [self._arm(now + seconds)] if math.isfinite(seconds) else []

    def spawn_failed(
        self, now: float, errno: int, message: str, *, doing: str = "execute"
    ) -> list[Action]:
        """The program could not be started; ``message`` names the file and the
        reason, e.g. ``/srv/x: No such file or directory``; ``doing`` what failed
        ("cannot execute /srv/x: ...", "cannot open web's stdout ...: ...")."""
        self._settle()
        if self.pid is not None or self.state not in (State.STARTING, State.STOPPING):
            return []
        cause = f"cannot {doing} {message}"
        if self.state is State.STOPPING:
            return self._cancel() + self._after_stop(now)
        self.failure_status = None
        if errno in PERMANENT_ERRNOS:
            self.failures += 1
            return self._fail(now, cause)
        return self._failed_start(now, cause, cause)

    def ready(self, now: float) -> list[Action]:
        """READY=1 from the program's notify socket."""
        self._settle()
        if self.state is State.STARTING and self.pid is not None and self._run.ready == "notify":
            after = self._become_ready(now)
            if any(isinstance(action, ArmTimer) for action in after):
                return after  # the watchdog's: arming replaces the start timeout's
            return self._cancel() + after
        return []

    def keepalive(self, now: float) -> list[Action]:
        """``WATCHDOG=1`` from the program: it is not hung. Only noted: the armed
        timer checks it when it fires (no timer work per message)."""
        self._alive_at = now
        return []

    def hung(self, now: float, cause: str) -> list[Action]:
        """The program says it is hung (``WATCHDOG=trigger``): as a missed
        ``WATCHDOG=1``, with ``cause`` as the reason. Needs a ``watchdog``."""
        self._settle()
        if self.state is not State.RUNNING or self.pid is None or self._run.watchdog is None:
            return []
        self._stop_cause = cause
        return self._begin_stop(now)

    def exited(self, now: float, status: ExitStatus) -> list[Action]:
        """The program's process ended with ``status``."""
        self._settle()
        if self.pid is None or self.state not in (State.STARTING, State.RUNNING, State.STOPPING):
            return []
        cancel = self._cancel()
        spawned_at = self._spawned_at if self._spawned_at is not None else now
        self._ran = now - spawned_at
        self.pid = None
        self.awaited = None
        self.last_exit, self.last_exit_at = status, now
        self.failure_status = status
        described = status.describe()
        ready_at = self._ready_at
        if self.state is State.STOPPING:
            cause = self._stop_cause
            if cause is None or self._start_pending:
                after = self._after_stop(now)
            elif ready_at is None:  # no READY=1 in time
                after = self._failed_start(now, cause, cause)
            else:  # hung: a crash
                after = self._after_run(
                    now,
                    failure=True,
                    failed_start=False,
                    stable=now - ready_at >= self.policy.stable_seconds,
                    cause=f"{cause} ({described})",
                    last=cause,
                )
        elif self.ending:  # ended before its stop wave came: stopped, never restarted
            self.reason = f"{described} during the shutdown"
            after = self._enter(now, State.STOPPED)
        elif ready_at is None and self._run.ready == "exited" and succeeded(status, self.policy):
            self._ready_at = now  # a one-shot done: ready, and ended
            after = self._after_run(
                now,
                failure=False,
                failed_start=False,
                stable=False,
                cause=f"{described} after {format_seconds(self._ran)}",
                last=described,
            )
        elif ready_at is None:
            when = f"{format_seconds(self._ran)} after start, before ready"
            after = self._failed_start(now, f"{described} {when}", described)
        else:
            since = "start" if self._run.ready == "started" else "ready"
            after = self._after_run(
                now,
                failure=not succeeded(status, self.policy),
                by_status=True,
                failed_start=False,
                stable=now - ready_at >= self.policy.stable_seconds,
                cause=f"{described} {format_seconds(now - ready_at)} after {since}",
                last=described,
            )
        if any(isinstance(action, ArmTimer) for action in after):
            return after  # arming replaces the old timer: no CancelTimer first
        return cancel + after

    def stop(self, now: float) -> list[Action]:
        """A stop requested: signal the group (running, starting) or give up the wait
        (backoff). A stop is never followed by a restart."""
        self._settle()
        if self.state in (State.STARTING, State.RUNNING):
            self._stop_cause = None
            return self._begin_stop(now)
        if self.state is State.BACKOFF:
            self.next_start = None
            return self._cancel() + self._enter(now, State.STOPPED)
        if self.state is State.STOPPING:  # a start timeout's stop becomes the operator's
            self._stop_cause = None
            self._start_pending = False
        return []

    def timer(self, now: float) -> list[Action]:
        """The armed deadline passed. A call before it (a stale heap entry) does
        nothing and leaves the timer armed."""
        self._settle()
        deadline = self._deadline
        if deadline is None or now < deadline:
            return []
        self._deadline = None
        if self.state is State.BACKOFF:
            if self.ending:
                self.next_start = None
                return self._enter(now, State.STOPPED)
            return self._spawn(now, automatic=True)
        if self.state is State.STARTING:
            ready = self._run.ready
            if ready in ("notify", "exited"):
                timeout = format_seconds(start_timeout(self._run))
                missed = "no READY=1" if ready == "notify" else "not done"
                self._stop_cause = f"{missed} within {timeout}"
                return self._begin_stop(now)
            return self._become_ready(now)
        watchdog = self._run.watchdog
        if self.state is State.RUNNING and self.pid is not None and watchdog is not None:
            due = self._alive_at + watchdog
            if now < due:  # WATCHDOG=1 came since the timer was armed
                return [self._arm(due)]
            self._stop_cause = f"no WATCHDOG=1 within {format_seconds(watchdog)}"
            return self._begin_stop(now)
        if self.state is State.STOPPING and self.pid is not None:
            ladder = self._ladder
            self._stop_phase += 1
            if self._stop_phase >= len(ladder):  # SIGKILL did not end it: stuck
                return [self._report(now, State.STOPPING)]
            wait = ladder[self._stop_phase - 1][1]
            self._ignored_for = wait - (self._last_sent_at - self._signalled_at)
            self._signalled_at = self._last_sent_at = now
            signum, wait = ladder[self._stop_phase]
            actions: list[Action] = [SignalGroup(signum)]
            if math.isfinite(wait):
                actions.append(self._arm(now + wait))
            return [*actions, self._report(now, State.STOPPING)]
        return []

    def ladder(self) -> list[tuple[int, float]]:
        """The next stop's steps (a stop under way keeps its own): each signal and
        how long to wait after it, ending with SIGKILL and ``KILL_GRACE``. ``stop``
        may leave out the final SIGKILL: it comes ``stop_timeout`` after the last
        signal."""
        steps = self.policy.stop
        if not steps:
            pairs = [(self.policy.stop_signal, self.policy.stop_timeout)]
        else:
            signals = [int(step) for step in steps[0::2]]
            waits = [float(step) for step in steps[1::2]] + [self.policy.stop_timeout]
            pairs = list(zip(signals, waits))
        if pairs[-1][0] == SIGKILL:
            pairs[-1] = (SIGKILL, KILL_GRACE)
        else:
            pairs.append((SIGKILL, KILL_GRACE))
        return pairs

    # -- the decision text ----------------------------------------------------------

    def describe(self, now: float) -> str:
        """The one line ``ctl status`` shows, e.g. ``running (pid 1234, up 5 s)``."""
        state = self.state
        if state is State.STARTING:
            text = "starting" + _parens(self._starting_details(now))
        elif state is State.RUNNING:
            up = now - (now if self._spawned_at is None else self._spawned_at)
            if up < 0.0005:  # the report of its start: "up 0 s" says nothing
                text = f"running ({self._pid_text()})"
            else:
                text = f"running ({self._pid_text()}, up {format_seconds(up)})"
        elif state is State.BACKOFF:
            wait = format_seconds((now if self.next_start is None else self.next_start) - now)
            text = f"backoff {wait} (attempt {self.attempt}, {self.reason})"
        elif state is State.STOPPING:
            text = "stopping" + _parens(self._stopping_details(now))
        elif state is State.FAILED:
            return f"failed: {self.reason}"
        elif self.last_exit is None or self.last_exit_at is None:
            return str(state.value)
        else:
            ago = format_ago(now - self.last_exit_at)
            described = self.last_exit.describe()
            if state is State.STOPPED:
                return f"stopped ({described} {ago})"
            head = described if self.last_exit.code is not None else f"exited: {described}"
            return f"{head} ({ago}, ran {format_seconds(self._ran)})"
        return f"{text}: {self.status_text}" if self.status_text else text

    @property
    def shown_pid(self) -> int | None:
        """The pid status shows: none while the process in charge is awaited
        (``pid`` is then the exited leader's, whose number may be anyone's now)."""
        return None if self.awaited is not None else self.pid

    def _pid_text(self) -> str:
        return f"pid {self.pid}" if self.awaited is None else self.awaited

    def _starting_details(self, now: float) -> list[str]:
        parts = [self._pid_text()] if self.pid is not None else []
        if self.attempt > 1:
            parts.append(f"attempt {self.attempt}")
        if self._spawned_at is not None:
            up = format_seconds(now - self._spawned_at)
            ready = self._run.ready
            limit = start_timeout(self._run)
            of = f" of {format_seconds(limit)}" if math.isfinite(limit) else ""
            if ready == "notify":
                parts.append(f"waiting for READY=1 {up}{of}")
            elif ready == "exited":
                parts.append(f"up {up}{of}, ready once it exits")
            elif not isinstance(ready, str):
                parts.append(f"up {up} of {format_seconds(float(ready))}")
        if self.attempt > 1 and self.reason:
            parts.append(f"last: {self.reason}")
        return parts

    def _stopping_details(self, now: float) -> list[str]:
        if self.pid is None:
            return ["not spawned yet"]
        since = now - self._signalled_at
        ago = format_seconds(since)
        ladder = self._ladder
        phase = self._stop_phase
        if phase >= len(ladder):
            sent = f"stuck: alive {ago} after SIGKILL"
        else:
            sent = f"{signal_name(ladder[phase][0])} sent {format_ago(since)}"
            if phase > 0:
                ignored = ladder[phase - 1][0]
                sent += f", {signal_name(ignored)} ignored for {format_seconds(self._ignored_for)}"
        parts = [self._pid_text(), sent]
        if self._stop_cause is not None:
            parts.append(self._stop_cause)
        return parts

    # -- transitions ------------------------------------------------------------------

    def _enter(self, now: float, state: State) -> list[Action]:
        self.state = state
        self.since = now
        return [self._report(now, state)]

    def _report(self, now: float, state: State) -> Report:
        """A report of this moment, its text made when read (``Report``)."""
        report = Report._later(state, self, now)
        self._unread.append(report)
        return report

    def _settle(self) -> None:
        """Make the text of the reports not read yet, before anything changes."""
        unread = self._unread
        if unread:
            for report in unread:
                _ = report.text
            unread.clear()

    def _arm(self, deadline: float) -> ArmTimer:
        self._deadline = deadline
        return ArmTimer(deadline)

    def _cancel(self) -> list[Action]:
        if self._deadline is None:
            return []
        self._deadline = None
        return [CancelTimer()]

    def _fresh_start(self, now: float) -> list[Action]:
        """An operator's start: forget the crash streak and the start count."""
        self._streak = 0
        self._starts.clear()
        self.restarts = 0
        return self._spawn(now, automatic=False)

    def _spawn(self, now: float, *, automatic: bool) -> list[Action]:
        self._starts.append(now)
        limit = self.policy.start_limit
        while len(self._starts) > max(limit, 1):
            self._starts.popleft()
        if automatic:
            self.restarts += 1
        else:
            self.reason = None
        self.pid = self.awaited = None
        self.next_start = None
        self._spawned_at = self._ready_at = None
        self._stop_cause = None
        self._start_pending = False
        self._run = self.policy  # the loop spawns by it now: its NOTIFY_SOCKET, WATCHDOG_USEC
        self.status_text = ""
        return [Spawn(), *self._enter(now, State.STARTING)]

    def _become_ready(self, now: float) -> list[Action]:
        self._ready_at = self._alive_at = now
        watchdog = self._run.watchdog
        if watchdog is None or self.pid is None:
            return self._enter(now, State.RUNNING)
        return [self._arm(now + watchdog), *self._enter(now, State.RUNNING)]

    def _begin_stop(self, now: float) -> list[Action]:
        self._ladder = self.ladder()  # kept to its end, whatever a reload changes
        self._stop_phase = 0
        self._signalled_at = self._last_sent_at = now
        actions: list[Action] = []
        signum, timeout = self._ladder[0]
        if self.pid is not None:
            actions.append(SignalGroup(signum))
        actions += [self._arm(now + timeout)] if math.isfinite(timeout) else self._cancel()
        return actions + self._enter(now, State.STOPPING)

    def _after_stop(self, now: float) -> list[Action]:
        """The process is gone after a stop: stopped, or started again if asked meanwhile."""
        if self._start_pending:
            return self._fresh_start(now)
        return self._enter(now, State.STOPPED)

    def _failed_start(self, now: float, cause: str, last: str) -> list[Action]:
        """The start did not reach ready: a failure whatever the exit status."""
        return self._after_run(
            now, failure=True, failed_start=True, stable=False, cause=cause, last=last
        )

    def _after_run(
        self,
        now: float,
        *,
        failure: bool,
        by_status: bool = False,
        failed_start: bool,
        stable: bool,
        cause: str,
        last: str,
    ) -> list[Action]:
        """A run (or a start) ended without a stop request: restart, back off, or end.
        ``cause`` is the long story (backoff text), ``last`` the short one (start limit);
        ``by_status``: ``failure`` is its exit status judged by ``success_codes``."""
        self.reason = cause
        if failure:
            self.failures += 1
        if failed_start and self.booting:  # it fails the boot: no retry to announce
            return self._fail(now, cause)
        if not self._restarts(failure):
            if failed_start:  # it never became ready: a failure, not an end
                return self._fail(now, cause)
            return self._enter(now, State.EXITED)
        if stable:
            self._streak = 0
        self._backoff_failure = None if by_status else failure
        self._backoff_failed_start = failed_start
        self._streak += 1
        delay = self._delay(self._streak)
        at = now + delay
        limit, window = self.policy.start_limit, self.policy.start_limit_interval
        if limit > 0 and len(self._starts) >= limit and at - self._starts[-limit] < window:
            return self._fail(now, f"{limit} starts within {format_seconds(window)} (last: {last})")
        if delay <= 0:
            return self._spawn(now, automatic=True)
        self.next_start = at
        return [self._arm(at), *self._enter(now, State.BACKOFF)]

    def _restarts(self, failure: bool) -> bool:
        """Whether ``restart`` restarts after an exit (``failure``: not a success)."""
        restart = self.policy.restart
        return restart == "always" or (restart == "on-failure" and failure)

    def _delay(self, streak: int) -> float:
        """The wait before restart number ``streak`` of a crash streak: 0 for the
        first, then ``restart_delay`` doubling up to ``restart_delay_max``, jittered."""
        if streak <= 1:
            return 0.0
        policy = self.policy
        nominal = min(policy.restart_delay * 2.0 ** min(streak - 2, 64), policy.restart_delay_max)
        u = min(max(self._random(), 0.0), 1.0)
        return nominal * (1.0 - JITTER + 2.0 * JITTER * u)

    def _fail(self, now: float, reason: str) -> list[Action]:
        self.reason = reason
        self.next_start = None
        return self._enter(now, State.FAILED)


def _parens(parts: list[str]) -> str:
    return f" ({', '.join(parts)})" if parts else ""
