"""What the control commands answer: typed values with their JSON form.

The server builds them (``to_json``), the client reads them back
(``from_json``), so the two agree on every field. Times are relative
(seconds ago, seconds from now) because the two sides share no clock.

Kept light: the client's import path is part of ``ctl``'s speed.
"""

from __future__ import annotations

from .record import record

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ctl milliseconds at run time
    from typing import Any

__all__ = [
    "RUNNING",
    "STOPPED_STATES",
    "CommandInfo",
    "ExitInfo",
    "OutputLine",
    "ProgramInfo",
    "RunInfo",
    "Tail",
    "format_ago",
    "format_seconds",
]

#: The state in which a program counts as up: running and ready.
RUNNING = "running"

#: States in which a program has no process.
STOPPED_STATES = frozenset({"stopped", "exited", "failed"})


_FOREVER = float("inf")


def format_seconds(seconds: float) -> str:
    """A duration the way ``describe`` writes it: ``0.25 s``, ``1.5 s``, ``42 s``,
    ``3 min 5 s``, ``2 h 10 min``, ``3 d 4 h``."""
    seconds = max(0.0, seconds)
    if seconds == _FOREVER:
        return "forever"
    if 0 < seconds < 0.1:  # a start that failed at once: 3 ms, not 0 s
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:  # 0.05 s, 1.5 s, 5 s
        text = f"{seconds:.2f}" if seconds < 0.995 else f"{seconds:.1f}"
        return text.rstrip("0").rstrip(".") + " s"
    whole = round(seconds)
    if whole < 120:
        return f"{whole} s"
    if whole < 2 * 3600:
        (high, low), (high_unit, low_unit) = divmod(whole, 60), ("min", "s")
    elif whole < 2 * 86400:
        (high, low), (high_unit, low_unit) = divmod(whole // 60, 60), ("h", "min")
    else:
        (high, low), (high_unit, low_unit) = divmod(whole // 3600, 24), ("d", "h")
    return f"{high} {high_unit}" + (f" {low} {low_unit}" if low else "")


def format_ago(seconds: float) -> str:
    """``3 s ago``; ``just now`` for what rounds to 0 ms (a state change's own log
    line describes it at the moment it happened)."""
    return "just now" if seconds < 0.0005 else f"{format_seconds(seconds)} ago"


# Readers of an answer's fields: each returns the value as the field's type, or
# raises TypeError (the client's "bad answer") for anything else: an answer it
# cannot read is not to be shown as a program (``5  None``, a healthy-looking state).


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"not an object: {type(value).__name__}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"not a string: {type(value).__name__}")
    return value


def _whole(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"not an integer: {type(value).__name__}")
    return value


def _real(value: Any) -> float:
    if isinstance(value, float):
        return value
    return float(_whole(value))  # OverflowError for a huge one: a bad answer too


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"not a boolean: {type(value).__name__}")
    return value


def _texts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"not a list: {type(value).__name__}")
    return tuple(_text(item) for item in value)


def _maybe_whole(value: Any) -> int | None:
    return None if value is None else _whole(value)


def _maybe_real(value: Any) -> float | None:
    return None if value is None else _real(value)


def _maybe_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _maybe_exit(value: Any) -> ExitInfo | None:
    return None if value is None else ExitInfo.from_json(value)


@record(frozen=True)
class ExitInfo:
    """How a run ended: ``code`` or ``signal`` (a number), ``core`` dumped,
    ``text`` such as ``exited 1`` or ``killed by SIGKILL``, and ``ago`` seconds."""

    code: int | None
    signal: int | None
    core: bool
    text: str
    ago: float

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "signal": self.signal,
            "core": self.core,
            "text": self.text,
            "ago": self.ago,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExitInfo:
        """Raises TypeError (or ValueError) for a field of another type."""
        data = _object(data)
        return cls(
            code=_maybe_whole(data.get("code")),
            signal=_maybe_whole(data.get("signal")),
            core=_flag(data.get("core", False)),
            text=_text(data.get("text", "")),
            ago=_real(data.get("ago", 0.0)),
        )


@record(frozen=True)
class ProgramInfo:
    """One program instance as ``status`` shows it.

    ``name`` is the instance's name (``web`` or ``web:0``), ``program`` the
    ``[program.NAME]`` it comes from; ``state`` one of starting, running,
    backoff, stopping, stopped, exited, failed; ``text`` the one line
    ``ctl status`` prints after the name, e.g. ``running (pid 12, up 5 s)``.
    ``uptime`` is seconds since the current process started (None without
    one), ``since`` seconds since the last state change, ``restarts`` the
    automatic restarts since the last start, ``attempt`` the start number in
    the current crash streak, ``next_start`` seconds until a restart (in
    backoff), ``status_text`` the program's last ``STATUS=``, ``dropped`` the
    bytes of its output that could not be written (a full disk, a slow reader).
    ``healthy``: as it should be, running and ready, or not running on purpose
    (stopped on request or never started, or exited with a success code).
    ``output_error``: why one of its log files could not be rotated (None when
    the last rotation worked); ``text`` shows it too.
    """

    name: str
    program: str
    state: str
    text: str
    pid: int | None
    uptime: float | None
    since: float
    restarts: int
    attempt: int
    last_exit: ExitInfo | None
    next_start: float | None
    status_text: str
    dropped: int = 0  # output bytes its files or terminal could not take
    healthy: bool = False
    output_error: str | None = None

    @property
    def running(self) -> bool:
        """Running and ready (``starting`` and ``backoff`` are not)."""
        return self.state == RUNNING

    @property
    def stopped(self) -> bool:
        """No process: stopped, exited or failed."""
        return self.state in STOPPED_STATES

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "program": self.program,
            "state": self.state,
            "text": self.text,
            "pid": self.pid,
            "uptime": self.uptime,
            "since": self.since,
            "restarts": self.restarts,
            "attempt": self.attempt,
            "last_exit": None if self.last_exit is None else self.last_exit.to_json(),
            "next_start": self.next_start,
            "status_text": self.status_text,
            "dropped": self.dropped,
            "healthy": self.healthy,
            "output_error": self.output_error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProgramInfo:
        """Raises KeyError for a missing name or state, TypeError (or ValueError)
        for a field of another type."""
        # The supervisor's answer as it writes it: every field, each of its own
        # type, checked in one expression (the readers below are a call each).
        if type(data) is dict and data.keys() == _PROGRAM_KEYS:
            pid, uptime, last_exit = data["pid"], data["uptime"], data["last_exit"]
            next_start, output_error = data["next_start"], data["output_error"]
            if (
                type(data["name"]) is str
                and type(data["program"]) is str
                and type(data["state"]) is str
                and type(data["text"]) is str
                and type(data["status_text"]) is str
                and (pid is None or type(pid) is int)
                and (uptime is None or type(uptime) is float)
                and type(data["since"]) is float
                and type(data["restarts"]) is int
                and type(data["attempt"]) is int
                and (next_start is None or type(next_start) is float)
                and type(data["dropped"]) is int
                and type(data["healthy"]) is bool
                and (output_error is None or type(output_error) is str)
            ):
                info = _new(cls)  # its fields are the answer's: copied as they are
                fields = info.__dict__
                fields.update(data)
                if last_exit is not None:
                    fields["last_exit"] = ExitInfo.from_json(last_exit)
                return info
        data = _object(data)
        name = _text(data["name"])
        state = _text(data["state"])
        return cls(
            name=name,
            program=_text(data.get("program", name)),
            state=state,
            text=_text(data.get("text", state)),
            pid=_maybe_whole(data.get("pid")),
            uptime=_maybe_real(data.get("uptime")),
            since=_real(data.get("since", 0.0)),
            restarts=_whole(data.get("restarts", 0)),
            attempt=_whole(data.get("attempt", 1)),
            last_exit=_maybe_exit(data.get("last_exit")),
            next_start=_maybe_real(data.get("next_start")),
            status_text=_text(data.get("status_text", "")),
            dropped=_whole(data.get("dropped", 0)),
            healthy=_flag(data.get("healthy", state == RUNNING)),
            output_error=_maybe_text(data.get("output_error")),
        )


_PROGRAM_KEYS = frozenset(ProgramInfo.FIELDS)  # type: ignore[attr-defined]
_new = object.__new__


@record(frozen=True)
class CommandInfo:
    """A command ``commands`` lists: its ``name``, ``signature`` as Python writes
    it (``(region: str) -> int``), first line of its docstring ``doc``, and
    whether observers may run it (``read_only``); ``builtin`` for the
    supervisor's own commands."""

    name: str
    signature: str
    doc: str
    read_only: bool
    builtin: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "signature": self.signature,
            "doc": self.doc,
            "read_only": self.read_only,
            "builtin": self.builtin,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CommandInfo:
        """Raises KeyError for a missing name, TypeError for a field of another type."""
        data = _object(data)
        return cls(
            name=_text(data["name"]),
            signature=_text(data.get("signature", "()")),
            doc=_text(data.get("doc", "")),
            read_only=_flag(data.get("read_only", False)),
            builtin=_flag(data.get("builtin", False)),
        )


@record(frozen=True)
class RunInfo:
    """One run of a program, as ``why`` shows it. Times are wall-clock
    (``time.time()``); ``ready``/``ended`` None when it never got there.

    ``exit`` is how it ended, ``stopped_by`` who asked it to stop (``uid 0
    (pid 4242) through the control socket``, ``shutdown``, ``reload``, ``no
    READY=1 within 60 s``; None when it ended by itself), ``steps`` the stop
    signals sent (``SIGTERM``, ``SIGQUIT after 10 s``...), ``decision`` what the
    supervisor did next (``restarted at once``, ``backoff 0.4 s (attempt 3,
    ...)``, ``failed: 5 starts within 60 s``...), ``stderr`` its last lines.
    ``error`` is set instead of ``pid`` when it could not be started at all.
    """

    started: float
    pid: int | None
    ready: float | None
    ended: float | None
    exit: ExitInfo | None
    stopped_by: str | None
    steps: tuple[str, ...]
    decision: str | None
    stderr: tuple[str, ...]
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "pid": self.pid,
            "ready": self.ready,
            "ended": self.ended,
            "exit": None if self.exit is None else self.exit.to_json(),
            "stopped_by": self.stopped_by,
            "steps": list(self.steps),
            "decision": self.decision,
            "stderr": list(self.stderr),
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunInfo:
        """Raises KeyError for a missing start time, TypeError (or ValueError)
        for a field of another type."""
        data = _object(data)
        return cls(
            started=_real(data["started"]),
            pid=_maybe_whole(data.get("pid")),
            ready=_maybe_real(data.get("ready")),
            ended=_maybe_real(data.get("ended")),
            exit=_maybe_exit(data.get("exit")),
            stopped_by=_maybe_text(data.get("stopped_by")),
            steps=_texts(data.get("steps", ())),
            decision=_maybe_text(data.get("decision")),
            stderr=_texts(data.get("stderr", ())),
            error=_maybe_text(data.get("error")),
        )


@record(frozen=True)
class OutputLine:
    """A line a program wrote, as ``tail`` shows it: ``stream`` (stdout or
    stderr), ``time`` (wall clock, when the supervisor read it) and ``text``."""

    stream: str
    time: float
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"stream": self.stream, "time": self.time, "text": self.text}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutputLine:
        """Raises KeyError for a missing field, TypeError for one of another type."""
        data = _object(data)
        return cls(_text(data["stream"]), _real(data["time"]), _text(data["text"]))


class Tail(tuple[list[OutputLine], int]):
    """What ``Client.tail`` returns: ``lines, cursor = client.tail("web")``. And
    ``missed``: after a call with ``after``, whether lines written since were lost,
    the supervisor's ``output_buffer`` having moved past them (a follower slower
    than the program's output). ``instance``: which instance of the program the
    lines are from, to pass on as ``of``; ``ended``: why there is no more to
    follow (the instance was removed by a reload), else None."""

    missed: bool
    instance: int | None
    ended: str | None

    def __new__(
        cls,
        lines: list[OutputLine],
        cursor: int,
        missed: bool = False,
        instance: int | None = None,
        ended: str | None = None,
    ) -> Tail:
        tail = super().__new__(cls, (lines, cursor))
        tail.missed = missed
        tail.instance = instance
        tail.ended = ended
        return tail

    def __getnewargs__(
        self,
    ) -> tuple[list[OutputLine], int, bool, int | None, str | None]:
        return self[0], self[1], self.missed, self.instance, self.ended  # pickle, copy

    @property
    def lines(self) -> list[OutputLine]:
        return self[0]

    @property
    def cursor(self) -> int:
        return self[1]
