"""The supervisor's per-program state machine: events in, actions out, with the
clock passed in and a seeded random source, so each rule is checked in microseconds."""

from __future__ import annotations

import errno
import os
import random
import signal
from dataclasses import replace

import pytest

from daemonctx.supervisor.state import (
    DEFAULT_START_TIMEOUT,
    KILL_GRACE,
    Action,
    ArmTimer,
    CancelTimer,
    DefaultPolicy,
    ExitStatus,
    Report,
    SignalGroup,
    Spawn,
    State,
    StateMachine,
    check_policy,
    format_seconds,
    start_timeout,
)

EXIT_0 = ExitStatus(code=0)
EXIT_1 = ExitStatus(code=1)
SEGV = ExitStatus(signal=signal.SIGSEGV)
TERM = ExitStatus(signal=signal.SIGTERM)
NO_LIMIT = DefaultPolicy(restart="always", start_limit=0)


def machine(policy: DefaultPolicy | None = None, seed: int = 0, **settings: object) -> StateMachine:
    """A machine for ``policy`` (or the defaults with ``settings``) and a seeded RNG."""
    chosen = replace(policy or DefaultPolicy(), **settings)  # type: ignore[arg-type]
    return StateMachine(chosen, random.Random(seed))


def running(m: StateMachine, now: float = 0.0, pid: int = 1234) -> None:
    """Start ``m`` and let its process come up as ``pid``."""
    assert m.start(now)[0] == Spawn()
    m.spawned(now, pid)


def without_reports(actions: list[Action]) -> list[Action]:
    return [action for action in actions if not isinstance(action, Report)]


def armed(actions: list[Action]) -> float:
    """The deadline of the one ArmTimer in ``actions``."""
    deadlines = [a.deadline for a in actions if isinstance(a, ArmTimer)]
    assert len(deadlines) == 1, actions
    return deadlines[0]


def crash_loop(
    m: StateMachine,
    crashes: int,
    run_for: float = 1.5,
    start_at: float = 0.0,
    status: ExitStatus = EXIT_1,
) -> list[float]:
    """Start ``m``, let every run crash ``run_for`` seconds after spawn, and return
    the delay before each restart (0.0: restarted at once) until it gives up."""
    now, pid = start_at, 100
    actions = m.start(now)
    delays: list[float] = []
    for _ in range(crashes):
        assert Spawn() in actions, (m.state, actions)
        pid += 1
        m.spawned(now, pid)
        now += run_for
        actions = m.exited(now, status)
        if m.state is State.FAILED:
            break
        if Spawn() in actions:
            delays.append(0.0)
            continue
        assert m.state is State.BACKOFF, m.describe(now)
        deadline = armed(actions)
        assert m.next_start == deadline == m.deadline
        delays.append(deadline - now)
        now = deadline
        actions = m.timer(now)
    return delays


def nominal(n: int) -> float:
    """The unjittered delay before the ``n``-th restart (0-based) of a crash streak."""
    return 0.0 if n == 0 else min(0.1 * 2 ** (n - 1), 30.0)


# -- exit statuses -------------------------------------------------------------------


def test_exit_status_describes_code_signal_and_core() -> None:
    assert EXIT_1.describe() == "exited 1"
    assert ExitStatus(signal=signal.SIGKILL).describe() == "killed by SIGKILL"
    assert ExitStatus(signal=signal.SIGSEGV, core=True).describe() == (
        "killed by SIGSEGV (core dumped)"
    )
    assert ExitStatus(signal=77).describe() == "killed by signal 77"
    assert EXIT_0.success and not EXIT_1.success and not TERM.success
    with pytest.raises(ValueError):
        ExitStatus()
    with pytest.raises(ValueError):
        ExitStatus(code=1, signal=9)


def test_exit_status_from_wait_status_and_returncode() -> None:
    # Linux wait status words: code << 8; signal number, 0x80 if it dumped core.
    assert ExitStatus.from_wait_status(3 << 8) == ExitStatus(code=3)
    assert ExitStatus.from_wait_status(signal.SIGKILL) == ExitStatus(signal=signal.SIGKILL)
    core = ExitStatus.from_wait_status(signal.SIGSEGV | 0x80)
    assert core == ExitStatus(signal=signal.SIGSEGV, core=True)
    assert os.WIFSIGNALED(signal.SIGSEGV | 0x80)
    assert ExitStatus.from_returncode(-9) == ExitStatus(signal=9)
    assert ExitStatus.from_returncode(2) == ExitStatus(code=2)


# -- backoff -------------------------------------------------------------------------


def test_backoff_doubles_from_zero_to_the_cap_with_bounded_jitter() -> None:
    delays = crash_loop(machine(NO_LIMIT), 40)
    assert delays[0] == 0.0  # the first crash restarts at once
    for n, delay in enumerate(delays[1:], start=1):
        assert 0.85 * nominal(n) <= delay <= 1.15 * nominal(n), (n, delay)
        assert delay <= 30.0 * 1.15
    # ~0.1, 0.2, 0.4, 0.8 ... then 30 s (jittered) for good
    assert [round(nominal(n), 1) for n in range(1, 5)] == [0.1, 0.2, 0.4, 0.8]
    assert all(25.5 <= d <= 34.5 for d in delays[12:])
    ratios = {round(delay / nominal(n), 6) for n, delay in enumerate(delays[1:], start=1)}
    assert len(ratios) > 30, "the jitter varies from one restart to the next"
    assert min(ratios) < 0.95 and max(ratios) > 1.05, "and uses the whole +-15 %"


def test_jitter_differs_between_machines_so_they_do_not_retry_in_lock_step() -> None:
    one = crash_loop(machine(NO_LIMIT, seed=1), 12)
    two = crash_loop(machine(NO_LIMIT, seed=2), 12)
    assert one[0] == two[0] == 0.0
    assert all(a != b for a, b in zip(one[1:], two[1:]))
    assert crash_loop(machine(NO_LIMIT, seed=1), 12) == one, "a seed gives a repeatable run"


@pytest.mark.parametrize("u", [0.0, 0.5, 0.999999, -3.0, 7.0])
def test_jitter_stays_within_bounds_whatever_the_random_source_says(u: float) -> None:
    m = StateMachine(NO_LIMIT, lambda: u)
    delays = crash_loop(m, 20)
    for n, delay in enumerate(delays[1:], start=1):
        assert 0.85 * nominal(n) - 1e-12 <= delay <= 1.15 * nominal(n) + 1e-12


def test_a_crash_loop_at_1_5_s_never_restarts_at_once_twice_in_a_row() -> None:
    """supervisord's worst habit: a program crashing 1.5 s after start must not
    restart forever at full speed."""
    delays = crash_loop(machine(NO_LIMIT), 30, run_for=1.5)
    assert delays.count(0.0) == 1
    assert all(a > 0 or b > 0 for a, b in zip(delays, delays[1:]))
    assert all(b > a for a, b in zip(delays[1:9], delays[2:10])), "still growing"


def test_backoff_resets_only_after_a_stable_run() -> None:
    m = machine(NO_LIMIT)
    crash_loop(m, 5)  # a streak: 0, 0.1, 0.2, 0.4, 0.8; the next delay would be ~1.6 s
    assert m.state is State.STARTING and m.attempt == 6
    now = m.since
    m.spawned(now, 7)
    # 29 s ready is not stable: the streak goes on
    actions = m.exited(now + 29, EXIT_1)
    assert m.state is State.BACKOFF and armed(actions) - (now + 29) >= 0.85 * 1.6
    now = m.next_start
    assert now is not None
    m.timer(now)
    m.spawned(now, 8)
    # 30 s ready is: this crash restarts at once, the next one waits ~0.1 s again
    actions = m.exited(now + 30.01, EXIT_1)
    assert Spawn() in actions and m.state is State.STARTING and m.attempt == 2
    m.spawned(now + 31, 9)
    actions = m.exited(now + 32, EXIT_1)
    assert 0.085 <= armed(actions) - (now + 32) <= 0.115


def test_stable_means_ready_for_stable_seconds_not_merely_alive() -> None:
    m = machine(NO_LIMIT, ready="notify")
    m.start(0)
    m.spawned(0, 5)
    m.exited(1, EXIT_1)  # failed start: restarted at once
    m.spawned(1, 6)
    m.ready(50)  # up 49 s, but ready only now
    actions = m.exited(60, EXIT_1)  # 10 s after ready: not stable
    assert m.state is State.BACKOFF and Spawn() not in actions
    assert m.describe(60).endswith("(attempt 3, exited 1 10 s after ready)")


# -- start limit ---------------------------------------------------------------------


def test_five_starts_within_sixty_seconds_fail_until_the_operator_starts_again() -> None:
    m = machine(restart="always")
    delays = crash_loop(m, 10, run_for=0.5)
    assert len(delays) == 4 and m.restarts == 4, "5 starts, then it gives up"
    assert m.state is State.FAILED and m.pid is None and m.deadline is None
    assert m.describe(100) == "failed: 5 starts within 60 s (last: exited 1)"
    assert m.stop(100) == [] and m.timer(1000) == [], "it stays failed"
    # ctl start: a fresh count, and the same limit again
    assert len(crash_loop(m, 10, run_for=0.5, start_at=100, status=SEGV)) == 4
    assert m.describe(111) == "failed: 5 starts within 60 s (last: killed by SIGSEGV)"


def test_starts_spread_over_more_than_the_interval_never_fail() -> None:
    # each run crashes 25 s after start (never stable): at most 3 starts a minute
    delays = crash_loop(machine(restart="always"), 40, run_for=25)
    assert len(delays) == 40
    # and with a stable run between crashes, each restart is immediate and allowed
    m = machine(restart="always")
    delays = crash_loop(m, 40, run_for=31)
    assert delays == [0.0] * 40 and m.restarts == 40


def test_start_limit_zero_never_gives_up() -> None:
    m = machine(NO_LIMIT)
    delays = crash_loop(m, 300, run_for=0.01)
    assert len(delays) == 300 and m.restarts == 300 and m.state is State.STARTING


def test_a_start_that_would_fall_outside_the_window_is_allowed() -> None:
    """The limit looks at when the next start would happen: a backoff that ends
    after the window has moved on is no reason to give up."""
    m = machine(restart="always", start_limit=3, start_limit_interval=1.0, restart_delay=0.4)
    m.start(0)
    m.spawned(0, 1)
    m.exited(0.1, EXIT_1)  # start 2 at once
    m.spawned(0.1, 2)
    actions = m.exited(0.2, EXIT_1)  # start 3 after ~0.4 s: 3 starts within 1 s, allowed
    assert m.state is State.BACKOFF
    now = armed(actions)
    m.timer(now)
    m.spawned(now, 3)
    # start 4 due ~0.8 s later: 3 starts within the last second *then*, so allowed
    actions = m.exited(now + 0.05, EXIT_1)
    assert m.state is State.BACKOFF and armed(actions) >= 1.0


# -- restart policies ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "status", "restarted", "end"),
    [
        ("on-failure", EXIT_0, False, "exited 0 (5 s ago, ran 10 s)"),
        ("on-failure", EXIT_1, True, None),
        ("on-failure", SEGV, True, None),
        ("always", EXIT_0, True, None),
        ("always", EXIT_1, True, None),
        ("always", SEGV, True, None),
        ("never", EXIT_0, False, "exited 0 (5 s ago, ran 10 s)"),
        ("never", EXIT_1, False, "exited 1 (5 s ago, ran 10 s)"),
        ("never", SEGV, False, "exited: killed by SIGSEGV (5 s ago, ran 10 s)"),
    ],
)
def test_restart_policy_after_an_exit(
    restart: str, status: ExitStatus, restarted: bool, end: str | None
) -> None:
    m = machine(restart=restart)
    running(m)
    actions = m.exited(10, status)
    assert (Spawn() in actions) is restarted
    if restarted:
        assert m.state is State.STARTING and m.restarts == 1
    else:
        assert m.state is State.EXITED and without_reports(actions) == []
        assert m.last_exit == status and m.last_exit_at == 10
        assert m.describe(15) == end


@pytest.mark.parametrize(
    ("status", "restarted"),
    [(EXIT_0, True), (ExitStatus(code=2), False), (ExitStatus(code=3), False), (EXIT_1, True),
     (ExitStatus(code=255), True), (TERM, True)],
)  # fmt: skip
def test_on_failure_restarts_after_any_status_but_the_success_codes(
    status: ExitStatus, restarted: bool
) -> None:
    """supervisord's exitcodes: with success_codes = (2, 3), an exit 0 is a failure."""
    m = machine(restart="on-failure", success_codes=(2, 3))
    running(m)
    actions = m.exited(10, status)
    assert (Spawn() in actions) is restarted
    assert m.state is (State.STARTING if restarted else State.EXITED)


def test_a_success_code_before_ready_is_still_a_failed_start() -> None:
    m = machine(restart="on-failure", success_codes=(0, 2), ready=5.0)
    running(m)
    actions = m.exited(1, ExitStatus(code=2))
    assert m.state is State.BACKOFF or Spawn() in actions, m.state


@pytest.mark.parametrize("restart", ["always", "on-failure", "never"])
@pytest.mark.parametrize("status", [EXIT_0, EXIT_1, TERM])
def test_a_requested_stop_is_never_followed_by_a_restart(restart: str, status: ExitStatus) -> None:
    m = machine(restart=restart)
    running(m)
    m.stop(10)
    actions = m.exited(11, status)
    assert without_reports(actions) == [CancelTimer()]
    assert m.state is State.STOPPED
    assert m.describe(12) == f"stopped ({status.describe()} 1 s ago)"


def test_an_exit_before_ready_is_a_failed_start_even_with_status_0() -> None:
    m = machine(restart="on-failure", ready=5.0)
    running(m)
    actions = m.exited(2, EXIT_0)
    assert Spawn() in actions and m.reason == "exited 0 2 s after start, before ready"
    m = machine(restart="never", ready="notify")
    running(m)
    m.exited(2, EXIT_0)
    assert m.state is State.FAILED
    assert m.describe(3) == "failed: exited 0 2 s after start, before ready"


# -- readiness -----------------------------------------------------------------------


def test_started_readiness_is_running_at_spawn() -> None:
    m = machine()
    assert without_reports(m.start(0)) == [Spawn()] and m.state is State.STARTING
    actions = m.spawned(0.01, 42)
    assert actions == [Report(State.RUNNING, "running (pid 42)")]
    assert m.state is State.RUNNING and m.ready_at == m.started_at == 0.01


def test_notify_readiness_waits_for_ready_within_start_timeout() -> None:
    m = machine(ready="notify")
    m.start(0)
    assert m.spawned(0, 42) == [ArmTimer(60.0)]
    assert m.state is State.STARTING
    assert m.describe(2) == "starting (pid 42, waiting for READY=1 2 s of 60 s)"
    assert m.timer(59.9) == [] and m.deadline == 60.0  # early: nothing yet
    actions = m.ready(3)
    assert without_reports(actions) == [CancelTimer()]
    assert m.state is State.RUNNING and m.ready_at == 3 and m.deadline is None
    assert m.ready(4) == [], "a second READY=1 changes nothing"


def test_notify_start_timeout_stops_the_program_and_counts_a_failed_start() -> None:
    m = machine(ready="notify")
    m.start(0)
    m.spawned(0, 42)
    actions = m.timer(60)
    assert without_reports(actions) == [SignalGroup(signal.SIGTERM), ArmTimer(70.0)]
    assert m.state is State.STOPPING
    assert m.describe(61) == ("stopping (pid 42, SIGTERM sent 1 s ago, no READY=1 within 60 s)")
    # the stop ladder applies
    assert without_reports(m.timer(70)) == [SignalGroup(signal.SIGKILL), ArmTimer(75.0)]
    actions = m.exited(71, ExitStatus(signal=signal.SIGKILL))
    assert without_reports(actions) == [CancelTimer(), Spawn()]  # first failure: at once
    assert m.attempt == 2 and m.reason == "no READY=1 within 60 s"
    assert m.describe(71) == "starting (attempt 2, last: no READY=1 within 60 s)"


def test_notify_start_timeout_with_restart_never_fails() -> None:
    m = machine(ready="notify", restart="never", start_timeout=5)
    m.start(0)
    m.spawned(0, 42)
    m.timer(5)
    m.exited(5.1, TERM)
    assert m.state is State.FAILED
    assert m.describe(6) == "failed: no READY=1 within 5 s"


def test_a_stop_during_a_start_timeout_stop_is_a_plain_stop() -> None:
    m = machine(ready="notify")
    m.start(0)
    m.spawned(0, 42)
    m.timer(60)
    assert m.stop(61) == []  # already stopping: the ladder goes on
    m.exited(62, TERM)
    assert m.state is State.STOPPED


def test_ready_after_seconds() -> None:
    m = machine(ready=5.0)
    m.start(10)
    assert m.spawned(10, 42) == [ArmTimer(15.0)]
    assert m.describe(12) == "starting (pid 42, up 2 s of 5 s)"
    assert m.ready(12) == [], "READY=1 means nothing here"
    actions = m.timer(15)
    assert actions == [Report(State.RUNNING, "running (pid 42, up 5 s)")]
    assert m.ready_at == 15
    actions = m.exited(16, EXIT_1)  # first crash of a streak: at once
    m.spawned(16, 43)
    m.timer(21)
    # up 34 s but ready only 29 s: not stable, so the streak goes on
    actions = m.exited(50, EXIT_1)
    assert m.state is State.BACKOFF and m.reason == "exited 1 29 s after ready"


# -- stopping ------------------------------------------------------------------------


def test_stop_ladder_term_then_kill_then_stuck() -> None:
    m = machine(stop_timeout=10)
    running(m)
    actions = m.stop(100)
    assert without_reports(actions) == [SignalGroup(signal.SIGTERM), ArmTimer(110.0)]
    assert m.state is State.STOPPING and m.since == 100
    assert m.describe(103) == "stopping (pid 1234, SIGTERM sent 3 s ago)"
    actions = m.timer(110)
    assert without_reports(actions) == [SignalGroup(signal.SIGKILL), ArmTimer(110 + KILL_GRACE)]
    assert actions[-1] == Report(
        State.STOPPING, "stopping (pid 1234, SIGKILL sent just now, SIGTERM ignored for 10 s)"
    )
    actions = m.timer(115)
    assert actions == [
        Report(State.STOPPING, "stopping (pid 1234, stuck: alive 5 s after SIGKILL)")
    ]
    assert m.state is State.STOPPING and m.deadline is None, "it keeps waiting, no more timers"
    assert m.describe(130) == "stopping (pid 1234, stuck: alive 20 s after SIGKILL)"
    assert m.exited(131, ExitStatus(signal=signal.SIGKILL)) == [
        Report(State.STOPPED, "stopped (killed by SIGKILL just now)")
    ]


def test_killed_tells_once_the_stop_has_sent_sigkill_until_it_is_over() -> None:
    """What the supervisor asks before it SIGKILLs a process of the program found
    after the ladder's last step (no step is left to send it one)."""
    m = machine(stop=(signal.SIGTERM, 10.0, signal.SIGQUIT, 2.0))
    running(m)
    assert not m.killed
    m.stop(100)
    assert not m.killed, "SIGTERM sent"
    m.timer(110)
    assert not m.killed, "SIGQUIT sent"
    m.timer(112)
    assert m.killed, "SIGKILL sent"
    m.timer(112 + KILL_GRACE)
    assert m.killed, "stuck: SIGKILL was sent"
    m.exited(120, ExitStatus(signal=signal.SIGKILL))
    assert not m.killed, "stopped"


def test_a_declared_stop_ladder_sends_each_signal_in_turn() -> None:
    """stop = ["TERM", 10, "QUIT", 2, "KILL"]: a thread dump before the kill."""
    m = machine(stop=(signal.SIGTERM, 10.0, signal.SIGQUIT, 2.0, signal.SIGKILL))
    running(m)
    assert without_reports(m.stop(100)) == [SignalGroup(signal.SIGTERM), ArmTimer(110.0)]
    actions = m.timer(110)
    assert without_reports(actions) == [SignalGroup(signal.SIGQUIT), ArmTimer(112.0)]
    assert actions[-1] == Report(
        State.STOPPING, "stopping (pid 1234, SIGQUIT sent just now, SIGTERM ignored for 10 s)"
    )
    actions = m.timer(112)
    assert without_reports(actions) == [SignalGroup(signal.SIGKILL), ArmTimer(112 + KILL_GRACE)]
    assert "SIGKILL sent just now, SIGQUIT ignored for 2 s" in m.describe(112)
    assert m.timer(112 + KILL_GRACE)[-1].text.endswith("stuck: alive 5 s after SIGKILL)")


def test_a_ladder_without_a_final_kill_gets_one_stop_timeout_later() -> None:
    m = machine(stop=(signal.SIGINT, 1.0, signal.SIGTERM), stop_timeout=3)
    assert m.ladder() == [
        (signal.SIGINT, 1.0),
        (signal.SIGTERM, 3.0),
        (signal.SIGKILL, KILL_GRACE),
    ]
    running(m)
    assert without_reports(m.stop(0)) == [SignalGroup(signal.SIGINT), ArmTimer(1.0)]
    assert without_reports(m.timer(1)) == [SignalGroup(signal.SIGTERM), ArmTimer(4.0)]
    assert without_reports(m.timer(4)) == [SignalGroup(signal.SIGKILL), ArmTimer(4 + KILL_GRACE)]
    assert m.exited(5, ExitStatus(signal=signal.SIGKILL))[-1].state is State.STOPPED


def test_a_stop_is_described_only_when_its_report_is_read() -> None:
    """The supervisor sends the stop's signal, then reads the report: describing
    the stop (the ladder, the signal's name, the durations) is not on the way to
    the signal."""
    m = machine(stop_timeout=10.0)
    for action in m.start(0.0) + m.spawned(0.0, 1234):  # the supervisor logs each report
        if isinstance(action, Report):
            assert action.text
    described: list[float] = []
    describe = m.describe

    def counted(now: float) -> str:
        described.append(now)
        return describe(now)

    m.describe = counted  # type: ignore[method-assign]
    actions = m.stop(5.0)
    assert actions[0] == SignalGroup(signal.SIGTERM)
    assert described == []
    report = actions[-1]
    assert isinstance(report, Report)
    assert report.text == "stopping (pid 1234, SIGTERM sent just now)"
    assert described == [5.0]


def test_a_report_read_after_the_next_event_tells_its_own_moment() -> None:
    m = machine()
    starting = m.start(0.0)[-1]
    m.spawned(2.0, 42)
    stopping = m.stop(3.0)[-1]
    m.exited(4.0, TERM)
    assert starting == Report(State.STARTING, "starting")
    assert stopping == Report(State.STOPPING, "stopping (pid 42, SIGTERM sent just now)")


def test_stop_uses_the_policys_signal() -> None:
    m = machine(stop_signal=signal.SIGINT)
    running(m)
    assert without_reports(m.stop(1))[0] == SignalGroup(signal.SIGINT)


def test_stop_while_starting_replaces_the_readiness_timer() -> None:
    m = machine(ready="notify")
    m.start(0)
    m.spawned(0, 42)
    actions = m.stop(1)
    assert without_reports(actions) == [SignalGroup(signal.SIGTERM), ArmTimer(11.0)]
    assert m.ready(2) == [] and m.state is State.STOPPING


def test_stop_before_the_pid_is_known_signals_once_it_is() -> None:
    m = machine()
    m.start(0)
    actions = m.stop(0)
    assert without_reports(actions) == [ArmTimer(10.0)]
    assert m.describe(0) == "stopping (not spawned yet)"
    actions = m.spawned(0.01, 42)
    assert without_reports(actions) == [SignalGroup(signal.SIGTERM), ArmTimer(10.01)]
    m.exited(0.02, TERM)
    assert m.state is State.STOPPED


def in_backoff() -> StateMachine:
    """A machine whose program crashed twice: the second crash waits in backoff."""
    m = machine()
    running(m)
    m.exited(1, EXIT_1)
    m.spawned(1, 43)
    m.exited(2, EXIT_1)
    assert m.state is State.BACKOFF
    return m


def test_stop_during_backoff_stops_at_once() -> None:
    m = in_backoff()
    actions = m.stop(2.05)
    assert without_reports(actions) == [CancelTimer()]
    assert m.state is State.STOPPED and m.next_start is None and m.deadline is None
    assert m.timer(10) == [], "a stale timer starts nothing"


@pytest.mark.parametrize("end", ["stopped", "exited", "failed"])
def test_stop_when_not_running_does_nothing(end: str) -> None:
    m = machine(restart="never")
    if end != "stopped":
        m.start(0)
        if end == "exited":
            m.spawned(0, 42)
            m.exited(1, EXIT_0)
        else:
            m.spawn_failed(0, errno.ENOENT, "/srv/x: No such file or directory")
    assert m.state.value == end
    assert m.stop(2) == []
    assert m.state.value == end


# -- starting ------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["stopped", "exited", "failed"])
def test_start_from_an_end_state_spawns(end: str) -> None:
    m = machine(restart="never")
    if end == "exited":
        running(m)
        m.exited(2, EXIT_1)
    elif end == "failed":
        m.start(0)
        m.spawn_failed(0, errno.ENOENT, "/srv/x: No such file or directory")
    assert m.state.value == end
    actions = m.start(10)
    assert actions == [Spawn(), Report(State.STARTING, "starting")]
    assert m.state is State.STARTING and m.since == 10


def test_start_while_running_or_starting_does_nothing() -> None:
    m = machine(ready="notify")
    m.start(0)
    assert m.start(0) == []
    m.spawned(0, 42)
    assert m.start(1) == []
    m.ready(1)
    assert m.start(2) == [] and m.state is State.RUNNING


def test_start_during_backoff_spawns_now() -> None:
    m = in_backoff()
    actions = m.start(2.01)
    assert without_reports(actions) == [CancelTimer(), Spawn()]
    assert m.state is State.STARTING and m.attempt == 1 and m.restarts == 0


def test_start_during_a_stop_starts_again_once_stopped() -> None:
    m = machine()
    running(m)
    m.stop(1)
    assert m.start(2) == []
    actions = m.exited(3, TERM)
    assert without_reports(actions) == [CancelTimer(), Spawn()]
    assert m.state is State.STARTING


# -- spawn failures ------------------------------------------------------------------


@pytest.mark.parametrize("number", [errno.ENOENT, errno.EACCES, errno.ENOEXEC])
def test_a_program_that_cannot_be_executed_fails_at_once(number: int) -> None:
    m = machine(restart="always")
    m.start(0)
    message = f"/srv/x: {os.strerror(number)}"
    actions = m.spawn_failed(0, number, message)
    assert actions == [Report(State.FAILED, f"failed: cannot execute {message}")]
    assert m.state is State.FAILED and m.deadline is None
    assert m.status(1).text == f"failed: cannot execute {message}"


def test_other_spawn_errors_go_through_backoff() -> None:
    m = machine(restart="always")
    m.start(0)
    message = f"/srv/x: {os.strerror(errno.EAGAIN)}"
    assert Spawn() in m.spawn_failed(0, errno.EAGAIN, message)  # first: at once
    actions = m.spawn_failed(0, errno.EAGAIN, message)
    assert m.state is State.BACKOFF
    assert (
        m.describe(0)
        == f"backoff {format_seconds(armed(actions))} (attempt 3, cannot execute {message})"
    )


def test_a_spawn_error_with_restart_never_fails() -> None:
    m = machine(restart="never")
    m.start(0)
    m.spawn_failed(0, errno.EAGAIN, "/srv/x: Resource temporarily unavailable")
    assert m.describe(0) == "failed: cannot execute /srv/x: Resource temporarily unavailable"


def test_spawn_errors_count_towards_the_start_limit() -> None:
    m = machine(restart="on-failure", start_limit=2)
    m.start(0)
    m.spawn_failed(0, errno.EAGAIN, "/srv/x: Resource temporarily unavailable")
    m.spawn_failed(0, errno.EAGAIN, "/srv/x: Resource temporarily unavailable")
    last = "cannot execute /srv/x: Resource temporarily unavailable"
    assert m.describe(1) == f"failed: 2 starts within 60 s (last: {last})"


# -- describe() and status() ---------------------------------------------------------


def test_describe_texts() -> None:
    m = machine(ready="notify")
    assert m.describe(0) == "stopped"
    m.start(0)
    assert m.describe(0) == "starting"
    m.spawned(0, 1234)
    m.ready(0.5)
    assert m.describe(5) == "running (pid 1234, up 5 s)"
    assert m.describe(7325) == "running (pid 1234, up 2 h 2 min)"
    m.status_text = "Accepting connections"
    assert m.describe(5) == "running (pid 1234, up 5 s): Accepting connections"
    # three crashes 1.5 s after ready: the fourth start waits in backoff
    now = 0.5
    for pid in (1235, 1236):
        m.exited(now + 1.5, EXIT_1)
        now += 1.5
        if m.state is State.BACKOFF:
            assert m.next_start is not None
            now = m.next_start
            m.timer(now)
        assert m.status_text == "", "STATUS= belongs to the process that sent it"
        m.spawned(now, pid)
        m.ready(now)
    m.exited(now + 1.5, EXIT_1)
    assert m.state is State.BACKOFF and m.next_start is not None
    assert m.describe(m.next_start - 3.2) == "backoff 3.2 s (attempt 4, exited 1 1.5 s after ready)"


def test_status_snapshot_has_what_a_status_api_needs() -> None:
    m = machine()
    running(m, now=0, pid=7)
    m.exited(1, SEGV)
    m.spawned(1, 8)
    actions = m.exited(2, SEGV)
    status = m.status(2.05)
    assert status.state is State.BACKOFF and status.pid is None and status.since == 2
    assert status.restarts == 1 and status.attempt == 3
    assert status.last_exit == SEGV and status.last_exit_at == 2
    assert status.next_start == armed(actions) and status.status_text == ""
    assert status.text == m.describe(2.05)
    m.timer(armed(actions))
    assert m.status(3).restarts == 2 and m.status(3).next_start is None


def test_every_state_change_is_reported_with_its_description() -> None:
    m = machine(ready="notify")
    reports = [*m.start(0), *m.spawned(0, 9), *m.ready(1), *m.stop(5), *m.exited(6, TERM)]
    texts = [(a.state.value, a.text) for a in reports if isinstance(a, Report)]
    assert texts == [
        ("starting", "starting"),
        ("running", "running (pid 9, up 1 s)"),
        ("stopping", "stopping (pid 9, SIGTERM sent just now)"),
        ("stopped", "stopped (killed by SIGTERM just now)"),
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (0.25, "0.25 s"),
        (1.5, "1.5 s"),
        (5, "5 s"),
        (42.4, "42 s"),
        (60, "60 s"),
        (125, "2 min 5 s"),
        (7260, "2 h 1 min"),
        (180000, "2 d 2 h"),
        (float("inf"), "forever"),
    ],
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


# -- robustness ----------------------------------------------------------------------


def test_events_out_of_place_are_ignored() -> None:
    m = machine(ready="notify")
    assert m.exited(0, EXIT_1) == [] and m.ready(0) == [] and m.timer(0) == []
    assert m.spawned(0, 5) == [] and m.spawn_failed(0, errno.ENOENT, "x") == []
    assert m.state is State.STOPPED
    running(m, pid=5)
    assert m.spawned(0, 6) == [] and m.pid == 5


@pytest.mark.parametrize(
    "settings",
    [{"restart": "sometimes"}, {"ready": "listening"}, {"ready": -1.0}, {"ready": True}],
)
def test_bad_policies_are_refused(settings: dict[str, object]) -> None:
    policy = replace(DefaultPolicy(), **settings)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        check_policy(policy)
    with pytest.raises(ValueError):
        StateMachine(policy)


def fire(m: StateMachine, event: str, now: float, pid: int, rng: random.Random) -> list[Action]:
    """Send ``event`` to ``m``, with a random status or errno where it takes one."""
    if event == "start":
        return m.start(now)
    if event == "stop":
        return m.stop(now)
    if event == "spawned":
        return m.spawned(now, pid)
    if event == "failed":
        return m.spawn_failed(now, rng.choice([errno.ENOENT, errno.EAGAIN]), "/srv/x: ...")
    if event == "ready":
        return m.ready(now)
    if event == "exited":
        return m.exited(now, rng.choice([EXIT_0, EXIT_1, SEGV]))
    if event == "reload":
        policy = replace(
            m.policy,  # type: ignore[type-var]
            restart=rng.choice(["always", "on-failure", "never"]),
            ready=rng.choice(["started", "notify", 2.0]),
            stop=rng.choice([None, (signal.SIGTERM, 1.0, signal.SIGQUIT), (signal.SIGKILL,)]),
            watchdog=rng.choice([None, 1.0]),
        )
        return m.reconfigure(policy, now)
    return m.timer(now)


@pytest.mark.parametrize("restart", ["always", "on-failure", "never"])
@pytest.mark.parametrize("ready", ["started", "notify", 2.0])
def test_random_event_sequences_keep_the_invariants(restart: str, ready: str | float) -> None:
    """Any order of events, reloads among them: at most one timer, the one the
    actions say; a pid exactly while a process runs; backoff always has its timer
    at next_start; a run has a watchdog timer only if it started with a watchdog."""
    seed = len(restart) * 10 + len(str(ready))
    rng = random.Random(seed)
    policy = DefaultPolicy(
        restart=restart,
        ready=ready,
        stop_timeout=3.0,
        start_timeout=4.0,
        start_limit=seed % 2 * 3,  # 0 (never give up) or 3
    )
    m = StateMachine(policy, random.Random(seed))
    timer: float | None = None
    watchdog: float | None = None
    now, pid = 0.0, 100
    for _ in range(1500):
        now += rng.choice([0.0, 0.05, 0.5, 5.0])
        events = ["start", "stop", "spawned", "failed", "ready", "exited", "timer", "reload"]
        event = rng.choice(events)
        if event == "timer" and timer is not None:
            now = max(now, timer)
        pid += 1
        actions = fire(m, event, now, pid, rng)
        if event == "timer":
            timer = None  # the loop's timer fired
        timers = [a for a in actions if isinstance(a, (ArmTimer, CancelTimer))]
        assert len(timers) <= 1, actions
        for action in timers:
            if isinstance(action, CancelTimer):
                assert timer is not None, "cancels only an armed timer"
                timer = None
            else:
                assert action.deadline >= now
                timer = action.deadline
        assert m.deadline == timer
        if m.state is State.RUNNING:
            assert m.pid is not None
        if m.state in (State.STOPPED, State.EXITED, State.FAILED, State.BACKOFF):
            assert m.pid is None
        if m.state is State.BACKOFF:
            assert m.next_start is not None and m.deadline == m.next_start
        else:
            assert m.next_start is None
        if Spawn() in actions:
            watchdog = m.policy.watchdog  # the run's, whatever a reload sets meanwhile
        if m.state in (State.STOPPED, State.EXITED, State.FAILED):
            assert m.deadline is None
        if m.state is State.RUNNING and watchdog is None:
            assert m.deadline is None
        assert m.describe(now).startswith(m.state.value)


# -- a reload: the next start, stop and exit get the new policy; what is under way keeps its own


def test_a_reload_during_a_stop_keeps_the_ladder_the_stop_began_with() -> None:
    """An operator simplifies ``stop = TERM, 2, QUIT, 2, KILL`` to ``stop_timeout = 5``
    while its stop has sent SIGQUIT: SIGKILL still comes 2 s later (it came never:
    step 2 read against the new, two-step ladder was "stuck after SIGKILL"), status
    names the signals sent; the next stop is the new ladder."""
    m = machine(stop=(signal.SIGTERM, 2.0, signal.SIGQUIT, 2.0, signal.SIGKILL))
    running(m)
    m.stop(100)
    assert without_reports(m.timer(102)) == [SignalGroup(signal.SIGQUIT), ArmTimer(104.0)]
    assert m.reconfigure(replace(m.policy, stop=None, stop_timeout=5.0), 102.5) == []  # type: ignore[type-var]
    assert m.describe(102.5) == (
        "stopping (pid 1234, SIGQUIT sent 0.5 s ago, SIGTERM ignored for 2 s)"
    )
    assert m.step_signal == signal.SIGQUIT and not m.killed
    actions = m.timer(104)
    assert without_reports(actions) == [SignalGroup(signal.SIGKILL), ArmTimer(104 + KILL_GRACE)]
    assert m.describe(104) == "stopping (pid 1234, SIGKILL sent just now, SIGQUIT ignored for 2 s)"
    assert m.killed
    m.exited(104.1, ExitStatus(signal=signal.SIGKILL))
    running(m, 110, 1235)
    assert without_reports(m.stop(110)) == [SignalGroup(signal.SIGTERM), ArmTimer(115.0)]
    assert without_reports(m.timer(115)) == [SignalGroup(signal.SIGKILL), ArmTimer(120.0)]


def test_a_reload_to_stop_kill_during_a_default_stop_still_ends_with_sigkill() -> None:
    m = machine(stop_timeout=3.0)
    running(m)
    m.stop(0)
    m.reconfigure(replace(m.policy, stop=(signal.SIGKILL,)), 1)  # type: ignore[type-var]
    assert m.describe(2) == "stopping (pid 1234, SIGTERM sent 2 s ago)"
    assert without_reports(m.timer(3)) == [SignalGroup(signal.SIGKILL), ArmTimer(3 + KILL_GRACE)]
    assert "SIGKILL sent just now, SIGTERM ignored for 3 s" in m.describe(3)


def test_a_reload_of_watchdog_applies_from_the_next_start() -> None:
    """The process was told WATCHDOG_USEC=9000000 and pings every 3 s: a reload's
    ``watchdog = 1`` does not make it hung; its next run is held to 1 s."""
    m = machine(watchdog=9.0)
    running(m)
    m.reconfigure(replace(m.policy, watchdog=1.0), 1)  # type: ignore[type-var]
    for ping in (3.0, 6.0, 9.0):
        m.keepalive(ping)
    assert without_reports(m.timer(9.0)) == [ArmTimer(18.0)]  # 9 s after the last ping
    assert m.state is State.RUNNING
    m.stop(13)
    m.exited(13.5, TERM)
    m.start(20)
    assert ArmTimer(21.0) in m.spawned(20, 1235)  # the new run: 1 s
    # and from none to one: not for the run that was given no WATCHDOG_USEC
    n = machine()
    running(n)
    n.reconfigure(replace(n.policy, watchdog=1.0), 1)  # type: ignore[type-var]
    assert n.hung(2, "it sent WATCHDOG=trigger") == [] and n.state is State.RUNNING


def test_a_reload_of_ready_applies_from_the_next_start() -> None:
    """A start with ``ready = 4`` (no NOTIFY_SOCKET given) that a reload sets to
    "notify" is ready at 4 s, not stopped as "no READY=1 within 60 s"; and the
    reverse: a start waiting for READY=1 still takes it, within its own timeout."""
    m = machine(ready=4.0)
    m.start(0)
    assert without_reports(m.spawned(0, 42)) == [ArmTimer(4.0)]
    m.reconfigure(replace(m.policy, ready="notify", start_timeout=60.0), 1)  # type: ignore[type-var]
    assert m.describe(1) == "starting (pid 42, up 1 s of 4 s)"
    assert m.ready(2) == []  # READY=1 is not what this run waits for
    actions = m.timer(4.0)
    assert SignalGroup(signal.SIGTERM) not in actions and m.state is State.RUNNING
    n = machine(ready="notify", start_timeout=10.0)
    n.start(0)
    n.spawned(0, 42)
    n.reconfigure(replace(n.policy, ready=3.0, start_timeout=1.0), 0.5)  # type: ignore[type-var]
    assert n.describe(2) == "starting (pid 42, waiting for READY=1 2 s of 10 s)"
    assert n.timer(3.0) == [] and n.state is State.STARTING  # no 3 s timer was armed
    assert n.ready(5)[-1].state is State.RUNNING
    n.stop(6)
    n.exited(6.1, TERM)
    n.start(7)
    assert without_reports(n.spawned(7, 43)) == [ArmTimer(10.0)]  # the next: ready = 3


def backoff(m: StateMachine, status: ExitStatus = EXIT_1) -> None:
    """Crash ``m`` twice: the second crash waits in backoff."""
    running(m, 0.0, 100)
    m.exited(1.0, status)
    m.spawned(1.0, 101)
    m.exited(2.0, status)
    assert m.state is State.BACKOFF


@pytest.mark.parametrize(
    ("before", "status", "after", "state"),
    [
        ("on-failure", EXIT_1, "never", State.EXITED),
        ("always", EXIT_0, "on-failure", State.EXITED),
        ("always", EXIT_0, "never", State.EXITED),
        ("always", EXIT_1, "on-failure", State.BACKOFF),
        ("on-failure", EXIT_1, "always", State.BACKOFF),
    ],
)
def test_a_reload_ends_a_backoff_its_new_restart_would_not_have_begun(
    before: str, status: ExitStatus, after: str, state: State
) -> None:
    m = machine(NO_LIMIT, restart=before, restart_delay=3.0)
    backoff(m, status)
    deadline = m.deadline
    assert deadline is not None
    actions = m.reconfigure(replace(m.policy, restart=after), 2.5)  # type: ignore[type-var]
    assert m.state is state
    if state is State.EXITED:
        assert without_reports(actions) == [CancelTimer()]
        assert m.next_start is None and m.deadline is None
        assert m.describe(2.5) == f"{status.describe()} (0.5 s ago, ran 1 s)"
        assert m.timer(deadline) == [] and m.state is State.EXITED  # the loop's entry: stale
    else:
        assert actions == [] and m.deadline == deadline


def test_a_reload_that_makes_the_exit_a_success_ends_an_on_failure_backoff() -> None:
    m = machine(NO_LIMIT, restart="on-failure", restart_delay=3.0)
    backoff(m, ExitStatus(code=3))
    m.reconfigure(replace(m.policy, success_codes=(0, 3)), 2.5)  # type: ignore[type-var]
    assert m.state is State.EXITED and m.deadline is None
    n = machine(NO_LIMIT, restart="on-failure", restart_delay=3.0, watchdog=1.0)
    running(n, 0.0, 100)  # hung: a failure whatever the exit status
    n.timer(1.0)
    n.exited(1.1, EXIT_0)
    n.spawned(1.1, 101)
    n.timer(2.1)
    n.exited(2.2, EXIT_0)
    assert n.state is State.BACKOFF
    n.reconfigure(replace(n.policy, success_codes=(0, 3)), 2.5)  # type: ignore[type-var]
    assert n.state is State.BACKOFF


def test_a_reload_to_restart_never_during_a_backoff_after_a_failed_start_fails() -> None:
    """As ``restart = "never"`` after a start that never became ready: ``failed``."""
    m = machine(NO_LIMIT, restart="on-failure", ready="notify", start_timeout=30.0)
    backoff(m)  # exits before READY=1: failed starts
    m.reconfigure(replace(m.policy, restart="never"), 2.5)  # type: ignore[type-var]
    assert m.state is State.FAILED and m.deadline is None
    assert m.describe(3) == "failed: exited 1 1 s after start, before ready"


# -- watchdog ----------------------------------------------------------------------------


def test_watchdog_armed_at_ready_kept_by_watchdog_1_and_a_miss_is_a_crash() -> None:
    m = machine(watchdog=1.0)
    assert m.start(0)[0] == Spawn()
    assert ArmTimer(1.0) in m.spawned(0, 42)  # ready at once ("started"): armed
    assert m.keepalive(0.7) == []  # only noted: no timer work per message
    assert without_reports(m.timer(1.0)) == [ArmTimer(1.7)]  # re-armed from the last one
    actions = m.timer(1.7)
    assert SignalGroup(signal.SIGTERM) in actions and m.state is State.STOPPING
    assert m.describe(2) == "stopping (pid 42, SIGTERM sent 0.3 s ago, no WATCHDOG=1 within 1 s)"
    actions = m.exited(2, TERM)  # a crash: the first is restarted at once
    assert Spawn() in actions and m.restarts == 1
    assert m.reason == "no WATCHDOG=1 within 1 s (killed by SIGTERM)"


def test_watchdog_after_ready_1_and_a_stop_or_never_as_after_any_crash() -> None:
    m = machine(watchdog=2.0, ready="notify", start_timeout=30.0, restart="never")
    running(m)
    assert armed(m.ready(5)) == 7.0  # from READY=1, not from the start
    m.timer(7.0)
    m.exited(7.5, TERM)
    assert m.state is State.EXITED  # restart = "never"
    n = machine(watchdog=2.0)
    running(n)
    n.stop(1)
    n.exited(1.5, TERM)
    assert n.state is State.STOPPED and n.timer(3.0) == []  # the operator's stop


def test_watchdog_trigger_only_with_a_watchdog_and_while_running() -> None:
    m = machine()
    running(m)
    assert m.hung(1, "it sent WATCHDOG=trigger") == []
    m = machine(watchdog=60.0)
    running(m)
    assert SignalGroup(signal.SIGTERM) in m.hung(1, "it sent WATCHDOG=trigger")
    m.exited(1.1, TERM)
    assert m.reason == "it sent WATCHDOG=trigger (killed by SIGTERM)"
    assert m.state is State.STARTING  # restarted at once


# -- one-shots: ready = "exited" ---------------------------------------------------------


def test_a_one_shot_is_starting_while_it_runs_and_ready_at_its_successful_exit() -> None:
    m = machine(ready="exited", success_codes=(0, 2))
    assert m.start(0)[0] == Spawn()
    assert without_reports(m.spawned(0, 42)) == []  # no timer: it takes what it takes
    assert m.state is State.STARTING
    assert m.describe(3) == "starting (pid 42, up 3 s, ready once it exits)"
    actions = m.exited(5, ExitStatus(code=2))
    assert without_reports(actions) == [] and m.state is State.EXITED
    assert m.ready_at == 5 and m.restarts == 0


def test_a_one_shot_with_a_start_timeout_is_stopped_when_not_done_by_then() -> None:
    """systemd's TimeoutStartSec= for Type=oneshot: no limit unless given; given,
    a one-shot still running then is stopped, and that run is a failed start,
    even when it exits 0 at the stop signal."""
    m = machine(ready="exited", restart="never", start_timeout=30)
    m.start(0)
    assert without_reports(m.spawned(0, 42)) == [ArmTimer(30.0)]
    assert m.describe(3) == "starting (pid 42, up 3 s of 30 s, ready once it exits)"
    assert without_reports(m.timer(30)) == [SignalGroup(signal.SIGTERM), ArmTimer(40.0)]
    assert m.describe(31) == "stopping (pid 42, SIGTERM sent 1 s ago, not done within 30 s)"
    m.exited(32, EXIT_0)
    assert m.state is State.FAILED and m.ready_at is None
    assert m.describe(33) == "failed: not done within 30 s"
    # Done in time: ready, and the timer goes.
    m.start(40)
    m.spawned(40, 43)
    assert without_reports(m.exited(45, EXIT_0)) == [CancelTimer()]
    assert m.state is State.EXITED and m.ready_at == 45


def test_start_timeout_not_given_is_60_s_for_ready_1_and_none_for_a_one_shot() -> None:
    assert start_timeout(DefaultPolicy(ready="notify")) == DEFAULT_START_TIMEOUT == 60.0
    assert start_timeout(DefaultPolicy(ready="exited")) == float("inf")
    assert start_timeout(DefaultPolicy(ready="exited", start_timeout=5)) == 5


@pytest.mark.parametrize(
    ("restart", "state"), [("on-failure", State.STARTING), ("never", State.FAILED)]
)
def test_a_one_shot_that_fails_is_a_failed_start(restart: str, state: State) -> None:
    m = machine(ready="exited", restart=restart)
    running(m)
    m.exited(1, EXIT_1)
    assert m.state is state and m.ready_at is None  # on-failure: restarted at once


def test_each_failure_is_counted_once_and_a_stop_is_none() -> None:
    """What on_failure runs for: a crash, a failed start, a permanent spawn failure;
    never an operator's stop, nor an exit with a success code."""
    m = machine(success_codes=(0,))
    running(m)
    m.stop(1)
    m.exited(1.1, TERM)
    assert m.failures == 0
    m.start(2)
    m.spawned(2, 43)
    m.exited(3, EXIT_0)  # on-failure, exit 0: the end, no failure
    assert m.failures == 0 and m.state is State.EXITED
    m.start(4)
    m.spawned(4, 44)
    m.exited(5, EXIT_1)
    assert m.failures == 1 and m.failure_status == EXIT_1
    m.spawn_failed(5, errno.ENOENT, "/srv/x: No such file or directory")
    assert m.failures == 2 and m.failure_status is None and m.state is State.FAILED


# -- the supervisor shutting down ------------------------------------------------------------


def test_a_run_that_ends_while_the_supervisor_shuts_down_is_its_last() -> None:
    """``ending``: the supervisor shuts down and this program's stop wave has not
    come yet. A crash (a SIGTERM systemd sent the whole group, a program dying
    meanwhile) is not restarted: stopped, its exit kept. (It was restarted, during
    an orderly stop: a one-shot migration run again.)"""
    m = machine(NO_LIMIT)
    running(m)
    m.ending = True
    actions = m.exited(5.0, TERM)
    assert Spawn() not in actions and m.state is State.STOPPED
    assert m.last_exit == TERM and m.failures == 0
    assert m.reason == "killed by SIGTERM during the shutdown"


def test_a_backoff_gives_up_when_the_supervisor_shuts_down() -> None:
    m = machine(NO_LIMIT, restart_delay=1.0)
    running(m, 0.0, 100)
    assert Spawn() in m.exited(1.0, EXIT_1)  # the first restart: at once
    m.spawned(1.0, 101)
    m.exited(2.0, EXIT_1)  # the second waits in backoff
    assert m.state is State.BACKOFF and m.deadline is not None
    m.ending = True
    actions = m.timer(m.deadline)
    assert Spawn() not in actions and m.state is State.STOPPED and m.next_start is None
