"""The supervisor's configuration: one TOML file, and the same model in Python.

Every key of a ``[program.NAME]`` table is declared once, as a field of
``Program``: its name, its type and its default in the field, its check and a
line of documentation in the field's metadata. ``PROGRAM_KEYS`` is derived from
those fields, and from it the TOML loader, ``Program``'s own checks (so
``Program("web", ["x"], restart="sometimes")`` fails as the file does) and,
later, the documentation and the flags of ``daemonctx supervise -- COMMAND``.
``SupervisorConfig`` and ``SUPERVISOR_KEYS`` do the same for ``[supervisor]``.

Every bad key, type or value is a ``ConfigError`` with a one-line message
naming the file, the table and the key. Nothing here touches the system except
``load`` (it reads the file) and ``check_system`` (users and groups exist, the
files named are safe).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from ..errors import DaemonError
from ..limits import LIMIT_NAMES, PRIORITY, UNLIMITED, UNLIMITED_WORDS, LimitError, check
from ..paths import UnsafePathError, check_path, resolved_name
from ..process import FOREVER
from ..signals import parse_signal

if sys.version_info >= (3, 11):
    import tomllib
else:  # the tomli package, a dependency on Python < 3.11
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "DEFAULT_KEYS",
    "PROGRAM_KEYS",
    "READY_CHOICES",
    "RESTART_CHOICES",
    "SUPERVISOR_KEYS",
    "ConfigError",
    "Key",
    "LogFile",
    "Program",
    "SupervisorConfig",
    "UnreadableFileError",
    "UnsafeFileError",
    "check_system",
    "load",
    "load_control",
    "parse",
    "start_order",
    "stop_order",
]

RESTART_CHOICES = ("always", "on-failure", "never")
READY_CHOICES = ("started", "notify", "exited")
# No ':' in a name: "web:0" is instance 0 of program "web".
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
#: The longest program or group name: a name goes in each process's environment
#: (one string of at most 128 KiB) and in every request that names it.
MAX_NAME = 255
# sockaddr_un.sun_path holds 108 bytes, the last one a NUL.
MAX_SOCKET_PATH = 107
#: The largest configuration file read (a mistake such as /dev/zero may be endless).
MAX_CONFIG_BYTES = 16 << 20


class ConfigError(DaemonError, ValueError):
    """A bad configuration, found before anything starts. ``str()`` is one line:

    - from a file: ``shop.toml: [program.web] restart: expected one of always,
      on-failure, never, got 'sometimes'``; a TOML syntax error: ``shop.toml:
      line 3, column 9: Expected '=' after a key in a key/value pair``;
    - from Python (no file): ``program 'web': restart: ...`` for a ``Program``,
      ``supervisor: control: ...`` for a ``SupervisorConfig``.

    ``file`` is the path as the user gave it (None from Python), ``table`` the
    table as its TOML header reads (``"supervisor"``, ``"program.web"``,
    ``'program."a b"'``; None at the top level), ``key`` the key (or None),
    ``reason`` the rest, ``program`` the program's name when the error concerns
    one, ``line`` and ``column`` where a syntax error is.
    """

    def __init__(
        self,
        file: str | None,
        table: str | None,
        key: str | None,
        reason: str,
        program: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.file = file
        self.table = table
        self.key = key
        self.reason = reason
        self.program = program
        self.line = line
        self.column = column
        super().__init__(self._message())

    def _message(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(f"{self.file}:")
            if self.line is not None:
                column = f", column {self.column}" if self.column is not None else ""
                parts.append(f"line {self.line}{column}:")
            if self.table is not None:
                parts.append(f"[{self.table}]")
        elif self.program is not None:
            parts.append(f"program {self.program!r}:")
        elif self.table is not None:
            parts.append(f"{self.table}:")
        if self.key is not None:
            parts.append(f"{_toml_key(self.key)}:")
        parts.append(self.reason)
        return " ".join(parts)

    def located(self, file: str | None) -> ConfigError:
        """The same error, from ``file``."""
        return type(self)(
            file, self.table, self.key, self.reason, self.program, self.line, self.column
        )

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (multiprocessing, pytest-forked)
        args = (self.file, self.table, self.key, self.reason, self.program, self.line, self.column)
        return (type(self), args)


class UnreadableFileError(ConfigError):
    """A configuration file this user may not read (EACCES, EPERM): LSB's
    "insufficient privilege", exit 4 for ``supervise`` and ``ctl --config``."""


class UnsafeFileError(ConfigError):
    """A file the configuration names (an environment file, a program's log file)
    that another user could control: refused as an unsafe configuration file is
    (``supervise`` exits 4, LSB's "insufficient privilege")."""


def _split_words(text: str) -> list[str]:
    """A command given as text, split as a shell would (shlex, loaded when used)."""
    import shlex

    return shlex.split(text)


def _toml_key(key: str) -> str:
    """``key`` as TOML writes it: bare, or quoted (and escaped, so always one line)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _program_table(name: str) -> str:
    return f"program.{_toml_key(name)}"


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ""."""
    import difflib  # on a mistake only

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# What a user coming from supervisord ([program:x], [supervisord]), systemd (a
# unit's [Service]) or zdaemon (<runner>) writes here instead of a key or table
# of theirs: said in the error ("here: ..."; "none here: ..." when there is no
# such thing).
_FOREIGN_PROGRAM_KEYS = {
    "numprocs": ("supervisord", "here: instances = N"),
    "process_name": ("supervisord", "here: instances = N, named NAME:0 to NAME:N-1"),
    "numprocs_start": ("supervisord", "none here: instances are numbered from 0"),
    "serverurl": ("supervisord", "none here: the control socket's path is in DAEMONCTX_SUPERVISOR"),
    "priority": ("supervisord", "here: after = [NAMES] (started once they are ready)"),
    "startsecs": ("supervisord", "here: ready = SECONDS"),
    "startretries": ("supervisord", "here: start_limit and start_limit_interval"),
    "autorestart": ("supervisord", 'here: restart = "always", "on-failure" or "never"'),
    "exitcodes": ("supervisord", "here: success_codes = [0, 2]"),
    "stopsignal": ("supervisord", "here: stop_signal"),
    "stopwaitsecs": ("supervisord", "here: stop_timeout"),
    "stopasgroup": ("supervisord", "none here: always on"),
    "killasgroup": ("supervisord", "none here: always on"),
    "stdout_logfile": ("supervisord", "here: stdout = PATH"),
    "stderr_logfile": ("supervisord", "here: stderr = PATH"),
    "redirect_stderr": ("supervisord", 'here: stderr = "stdout"'),
    "stdout_logfile_maxbytes": ("supervisord", "here: stdout = { path = ..., max_bytes = N }"),
    "stderr_logfile_maxbytes": ("supervisord", "here: stderr = { path = ..., max_bytes = N }"),
    "stdout_logfile_backups": ("supervisord", "here: stdout = { path = ..., backups = N }"),
    "stderr_logfile_backups": ("supervisord", "here: stderr = { path = ..., backups = N }"),
    **{
        f"{stream}_{key}": ("supervisord", "none here")
        for stream in ("stdout", "stderr")
        for key in ("capture_maxbytes", "events_enabled", "syslog")
    },
    "ExecStart": ("systemd", "here: command = [PATH, ARG...]"),
    "Type": ("systemd", 'here: ready = "started" or "notify", or pidfile for forking'),
    "Restart": ("systemd", 'here: restart = "always", "on-failure" or "never"'),
    "RestartSec": ("systemd", "here: restart_delay"),
    "StartLimitBurst": ("systemd", "here: start_limit"),
    "StartLimitIntervalSec": ("systemd", "here: start_limit_interval"),
    "SuccessExitStatus": ("systemd", "here: success_codes = [0, 2]"),
    "TimeoutStartSec": ("systemd", "here: start_timeout"),
    "TimeoutStopSec": ("systemd", "here: stop_timeout"),
    "KillSignal": ("systemd", "here: stop_signal"),
    "WatchdogSec": ("systemd", "here: watchdog"),
    "PIDFile": ("systemd", "here: pidfile"),
    "User": ("systemd", "here: user"),
    "Group": ("systemd", "here: group"),
    "WorkingDirectory": ("systemd", "here: directory"),
    "UMask": ("systemd", "here: umask"),
    "Environment": ("systemd", 'here: environment = { NAME = "value" }'),
    "EnvironmentFile": ("systemd", "here: environment_file"),
    "Nice": ("systemd", "here: nice"),
    "LimitNOFILE": ("systemd", "here: limits = { nofile = N }"),
    "LimitCORE": ("systemd", 'here: limits = { core = "infinity" }'),
    "LimitNPROC": ("systemd", "here: limits = { nproc = N }"),
    "LimitMEMLOCK": ("systemd", "here: limits = { memlock = N }"),
    "StandardOutput": ("systemd", 'here: stdout = "FILE", "null" or "inherit" (the journal)'),
    "StandardError": ("systemd", 'here: stderr = "FILE", "stdout", "null" or "inherit"'),
    "KillMode": ("systemd", "none here: always control-group"),
    "RootDirectory": ("systemd", "none per program: daemonctx run --chroot DIR"),
    "ExecReload": ("systemd", "here: daemonctx ctl signal HUP NAME"),
    "ExecStartPre": (
        "systemd",
        'none here: a program with ready = "exited" that this one is after',
    ),
    "ExecStartPost": ("systemd", "none here"),
    "ExecStop": ("systemd", "none here: stop_signal, or stop = [SIGNAL, SECONDS, ...]"),
    "ExecStopPost": ("systemd", "none here"),
    "OnFailure": ("systemd", "here: on_failure = [PATH, ARG...], a command"),
    "WantedBy": ("systemd", "here: autostart = true, the default"),
    "DefaultTimeoutStopSec": ("systemd", "here: [defaults] stop_timeout"),
    "MemoryMax": ("systemd", "none per program: set it on the supervisor's own unit"),
    "CPUQuota": ("systemd", "none per program: set it on the supervisor's own unit"),
    "env_file": ("compose", "here: environment_file"),
    "After": ("systemd", "here: after = [NAMES]"),
    "Requires": ("systemd", "here: after = [NAMES]"),
    "program": ("zdaemon", "here: command = [PATH, ARG...]"),
    "backoff-limit": ("zdaemon", "here: restart_delay_max, start_limit"),
    "forever": ("zdaemon", "here: start_limit = 0"),
    "exit-codes": ("zdaemon", 'here: success_codes = [0, 2] with restart = "on-failure"'),
    "transcript": ("zdaemon", "here: stdout and stderr"),
    "start-test-program": ("zdaemon", 'here: ready = "notify", or ready = SECONDS'),
    "socket-name": ("zdaemon", "here: [supervisor] control"),
    "hang-around": ("zdaemon", "none here: the supervisor stays until ctl shutdown"),
    "daemon": ("zdaemon", "here: daemonctx supervise detaches by default; --foreground does not"),
    "start-timeout": ("zdaemon", "here: start_timeout"),
    "stop-timeout": ("zdaemon", "here: stop_timeout"),
    "logfile": ("zdaemon", "none needed here: ctl tail NAME reads the output the supervisor keeps"),
    **dict.fromkeys(
        ("python", "zdrun", "default-to-interactive", "prompt"), ("zdaemon", "none here")
    ),
}
_FOREIGN_SUPERVISOR_KEYS = {
    "logfile": ("supervisord", "here: log"),
    "nodaemon": ("supervisord", "here: daemonctx supervise --foreground"),
    "minfds": ("supervisord", "none here: the open-file limit is raised to the hard limit"),
    "file": ("supervisord", "here: control"),
    "chmod": ("supervisord", "here: control_group, observer_group"),
    "chown": ("supervisord", "here: control_group, observer_group"),
    "socket-name": ("zdaemon", "here: control"),
    "hang-around": ("zdaemon", "none here: the supervisor stays until ctl shutdown"),
    "serverurl": ("supervisord", "here: daemonctx ctl --control SOCK"),
    "username": ("supervisord", "none here: the kernel names who connects; see control_group"),
    "password": ("supervisord", "none here: the kernel names who connects; see control_group"),
    # Keys of [program.NAME] too: what supervisord's [supervisord] meant comes first.
    "user": ("supervisord", "none here: run supervise as that user; a program's: its user"),
    "environment": (
        "supervisord",
        "none here: programs inherit the supervisor's environment ([defaults] environment)",
    ),
    **dict.fromkeys(
        (
            "loglevel",
            "logfile_maxbytes",
            "logfile_backups",
            "childlogdir",
            "minprocs",
            "nocleanup",
            "identifier",
            "strip_ansi",
            "silent",
        ),
        ("supervisord", "none here"),
    ),
}
_FOREIGN_TABLES = {
    "unix_http_server": ("supervisord", "here: [supervisor] control"),
    "inet_http_server": ("supervisord", "none here: a local Unix socket only"),
    "supervisorctl": ("supervisord", "here: daemonctx ctl --config FILE"),
    "include": ("supervisord", 'here: [supervisor] include = ["conf.d/*.toml"]'),
    "runner": ("zdaemon", "here: [supervisor] and [program.NAME]"),
    "supervisord": ("supervisord", "here: [supervisor]"),
    "Unit": ("systemd", "here: [program.NAME], its after"),
    "Service": ("systemd", "here: [program.NAME]"),
    "Install": ("systemd", "here: [program.NAME], its autostart"),
}


def _hint(word: str, choices: Iterable[str], foreign: Mapping[str, tuple[str, str]]) -> str:
    """What to write instead of another supervisor's name ("supervisord's; here:
    ..."), else a close match of ours."""
    if word in foreign:
        whose, instead = foreign[word]
        return f" ({whose}'s; {instead})"
    return did_you_mean(word, choices)


# A file another supervisor reads, given as ours: said after the TOML error
# (compiled then: not at every start).
_FOREIGN_FILE = (
    r"^\s*(?:\[(?P<ini>program:|supervisord\]|unix_http_server\]|group:|eventlistener:"
    r"|fcgi-program:|rpcinterface:)"
    r"|(?P<zconfig><runner>)|(?P<unit>\[(?:Unit|Service|Install)\]\s*$))"
)


# "umask = 022", as INI files and zdaemon write it: no leading zero in a TOML number.
_OCTAL_UMASK = re.compile(r"\s*umask\s*=\s*(0[0-7]+)\s*(?:#.*)?")


def _octal_umask(text: str, line: int) -> str:
    """What to write for an octal ``umask = 022`` on ``line`` of ``text``, or ""."""
    lines = text.splitlines()
    match = _OCTAL_UMASK.fullmatch(lines[line - 1]) if 0 < line <= len(lines) else None
    if match is None:
        return ""
    digits = match.group(1)
    return f' (an octal umask: write umask = "{digits}" or umask = 0o{int(digits, 8):03o})'


def _foreign_file(text: str) -> str:
    match = re.search(_FOREIGN_FILE, text, re.MULTILINE)
    if match is None:
        return ""
    whose = "zdaemon's ZConfig"
    if match.group("ini"):
        whose = "supervisord's INI"
    elif match.group("unit"):
        whose = "a systemd unit"
    return f" (this looks like {whose}: daemonctx reads TOML, see 'coming from' in its docs)"


# -- checks: each takes a value, returns what to store or raises ValueError(reason) --


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _no_nul(text: str) -> str:
    if "\0" in text:
        raise ValueError(f"contains a NUL character, got {_got(text)}")
    return text


# supervisord's "%(program_name)s" (Python's %-format): no expansion is done here,
# and a path with one named a file of that literal name. Refused with what to do.
_EXPANSION = re.compile(r"%\(([^()\s]*)\)[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]")
_SUPERVISORD_NAMES = {
    "program_name": "write the program's name itself",
    "group_name": "write the group's name itself",
    "host_node_name": "write the host's name itself",
    "here": "write the configuration file's directory itself",
    "process_num": "each instance finds its name (NAME:0, NAME:1, ...) in $DAEMONCTX_PROGRAM",
    "numprocs": "write the number itself",
}


def _no_expansion(text: str, *, any_name: bool) -> str:
    """``text`` without supervisord's ``%(NAME)s``: any NAME (``any_name``, for a
    path), or supervisord's own (a command's arguments may hold a format string of
    the program's: gunicorn's ``%(h)s``, logging's ``%(message)s``)."""
    for match in _EXPANSION.finditer(text):
        name = match.group(1)
        if name.startswith("ENV_"):
            todo = "write the value itself"
        elif name in _SUPERVISORD_NAMES:
            todo = _SUPERVISORD_NAMES[name]
        elif any_name:
            todo = "write the path itself"
        else:
            continue
        raise ValueError(f"{match.group(0)!r}: supervisord's %(NAME)s is not expanded here: {todo}")
    return text


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {_got(value)}")
    return _no_nul(value)


def _optional_string(value: Any) -> str | None:
    return None if value is None else _string(value)


def _path(value: Any) -> str:
    if isinstance(value, os.PathLike):  # from Python; TOML has only strings
        value = os.fspath(value)
    if isinstance(value, str):
        _no_expansion(value, any_name=True)
    if not isinstance(value, str) or not os.path.isabs(value):
        raise ValueError(f"expected an absolute path, got {_got(value)}")
    return _no_nul(value)


def _optional_path(value: Any) -> str | None:
    return None if value is None else _path(value)


def _paths(value: Any) -> tuple[str, ...]:
    """One absolute path, or a list of them (a tuple either way)."""
    items = [value] if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"expected an absolute path or a list of them, got {_got(value)}")
    return tuple(_path(item) for item in items)


OUTPUT_WORDS = ("inherit", "null")
_LOG_KEYS = ("path", "max_bytes", "backups", "timestamps")
#: The most ``backups`` a log table keeps. Each rotation moves every one kept
#: (``web.log.1`` to ``web.log.2``, ...), in the supervisor's loop: about 10 ms
#: for 1000 of them. Longer histories are logrotate's (it compresses, and runs
#: outside the supervisor), or a larger ``max_bytes``'s.
MAX_BACKUPS = 1000
#: The smallest ``max_bytes`` but 0 (never rotated). Below it, a burst of short lines
#: rotates at nearly each line, each rotation a rename per backup kept: 20,000 lines
#: under ``max_bytes = 10`` froze the loop for minutes. From it on, a 64 KiB read
#: of the program's output rotates 16 times at most.
MIN_MAX_BYTES = 4096


@dataclass(frozen=True)
class LogFile:
    """A file a program's output is appended to, through the supervisor: rotated
    once it would pass ``max_bytes`` (0: never; logrotate and ``ctl reopen`` then),
    keeping ``backups`` old files (``web.log.1`` ...), each line prefixed with its
    time when ``timestamps``. Rotation never splits a line and never applies to
    what is not a regular file (``/dev/stdout``, a pipe, a tty)."""

    path: str
    max_bytes: int = 0
    backups: int = 5
    timestamps: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _path(self.path))
        for name in ("max_bytes", "backups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {_got(value)}")
        if self.backups > MAX_BACKUPS:
            raise ValueError(
                f"backups: expected at most {MAX_BACKUPS} (each rotation moves every file"
                f" kept; keep more with logrotate), got {self.backups}"
            )
        if not isinstance(self.timestamps, bool):
            raise ValueError(f"timestamps: expected true or false, got {_got(self.timestamps)}")


_TABLE_KEYS = ("max_bytes", "backups", "timestamps")  # a log table's, besides its path


def _log_table(table: LogFile) -> tuple[int, int, bool]:
    return table.max_bytes, table.backups, table.timestamps


def _table_clash(file: str, theirs: LogFile, whose: str, ours: LogFile) -> str:
    """Why ``ours`` is refused for ``file``, which ``whose`` writes with ``theirs``."""

    def text(value: int | bool) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    keys = zip(_TABLE_KEYS, _log_table(theirs), _log_table(ours))
    differ = "; ".join(f"{key} {text(a)} there, {text(b)} here" for key, a, b in keys if a != b)
    return (
        f"{file!r} is {whose} too, with another table ({differ}): every writer of"
        " one file shares its rotation: give them the same table"
    )


def _output(value: Any, *, merge: bool = False) -> str | LogFile:
    """Where a program's stdout or stderr goes: inherit, null, a file (an absolute
    path, or a table with path, max_bytes, backups, timestamps); stderr may also
    be "stdout" (the same pipe: one file, lines in the order written)."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(_LOG_KEYS))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}{did_you_mean(unknown[0], _LOG_KEYS)}")
        if "path" not in value:
            raise ValueError("a log table needs a path")
        value = LogFile(**value)
    if isinstance(value, LogFile):
        if 0 < value.max_bytes < MIN_MAX_BYTES:
            raise ValueError(
                f"max_bytes: expected 0 (never rotated) or at least {MIN_MAX_BYTES}"
                f" (each rotation moves every backup), got {value.max_bytes}"
            )
        return value
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    text = _no_expansion(_string(value), any_name=True)
    if text in OUTPUT_WORDS or (merge and text == "stdout"):
        return text
    if not os.path.isabs(text):
        expected = "inherit, null, stdout" if merge else "inherit, null"
        raise ValueError(f"expected {expected}, an absolute path or a log table, got {text!r}")
    return _path(text)


def _stderr_output(value: Any) -> str | LogFile:
    return _output(value, merge=True)


def _stop_ladder(value: Any) -> tuple[int | float, ...] | None:
    """``["TERM", 10, "QUIT", 2, "KILL"]``: signals and the seconds to wait after
    each, in order; it must start and end with a signal. Signals become numbers."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"expected a list such as ['TERM', 10, 'KILL'], got {_got(value)}")
    steps: list[int | float] = []
    for index, item in enumerate(value):
        if index % 2 == 0:
            steps.append(_signal(item))
        else:
            steps.append(_seconds(item))
    if len(steps) % 2 == 0:
        raise ValueError("it must end with a signal")
    return tuple(steps)


# The resource limits a program may set (``limits = { nofile = 65536 }``): the names
# and values ``start --limit`` takes too (``..limits``).
def _limit_value(name: str, value: Any) -> int:
    if isinstance(value, str) and value in UNLIMITED_WORDS:
        return UNLIMITED
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"{name}: expected an integer >= 0, 'infinity' or [soft, hard], got {_got(value)}"
        )
    return int(value)


def _limits(value: Any) -> dict[str, tuple[int, int]]:
    """``{name: (soft, hard)}`` from ``{nofile = 65536, core = "infinity",
    nproc = [512, 1024]}``; a single value is both. Soft at most hard."""
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a table such as {{ nofile = 65536 }}, got {_got(value)}")
    limits = {}
    for name, given in value.items():
        if name not in LIMIT_NAMES:
            raise ValueError(f"unknown limit {name!r}{did_you_mean(str(name), LIMIT_NAMES)}")
        if isinstance(given, (list, tuple)):
            if len(given) != 2:
                raise ValueError(f"{name}: expected [soft, hard], got {_got(given)}")
            soft, hard = (_limit_value(name, part) for part in given)
        else:
            soft = hard = _limit_value(name, given)
        if hard != UNLIMITED and (soft == UNLIMITED or soft > hard):
            raise ValueError(f"{name}: the soft limit is above the hard one, got {_got(given)}")
        limits[name] = (soft, hard)
    return limits


def _nice(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -20 <= value <= 19:
        raise ValueError(f"expected an integer from -20 to 19, got {_got(value)}")
    return int(value)


def _umask(value: Any) -> int:
    """A file creation mask: an integer (TOML ``0o022``) or an octal string (``"022"``)."""
    if isinstance(value, str):
        if not (1 <= len(value) <= 4 and all(char in "01234567" for char in value)):
            raise ValueError(f"expected an octal mask such as '022', got {value!r}")
        value = int(value, 8)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ValueError(f"expected a mask from 0o000 to 0o777, got {_got(value)}")
    return value


def _socket_path(value: Any) -> str:
    path = _path(value)
    if path.endswith("/") or os.path.basename(os.path.normpath(path)) in ("", ".", ".."):
        raise ValueError(f"expected the path of a socket file, not of a directory, got {path!r}")
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        raise ValueError(f"too long for a Unix socket ({size} bytes, at most {MAX_SOCKET_PATH})")
    return path


def _command(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ValueError(f"expected a list of strings (no shell splits it), got {_got(value)}")
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(arg, str) for arg in value)
    ):
        raise ValueError(f"expected a non-empty list of strings, got {_got(value)}")
    if not value[0]:
        raise ValueError("the program to run (the first item) is an empty string")
    return tuple(_no_nul(_no_expansion(arg, any_name=False)) for arg in value)


def _optional_command(value: Any) -> tuple[str, ...] | None:
    return None if value is None else _command(value)


def _environment(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(name, str) and isinstance(text, str) for name, text in value.items()
    ):
        raise ValueError(f'expected a table of strings (NAME = "value"), got {_got(value)}')
    for name, text in value.items():
        if not name or "=" in name:
            raise ValueError(f"invalid variable name {name!r}")
        _no_nul(name)
        _no_nul(_no_expansion(text, any_name=False))
    return dict(value)


def _restart(value: Any) -> str:
    if not isinstance(value, str) or value not in RESTART_CHOICES:
        raise ValueError(f"expected one of {', '.join(RESTART_CHOICES)}, got {_got(value)}")
    return value


def _seconds_or_none(value: Any) -> float | None:
    """``value`` as seconds, None when it is no number > 0. A timer's length must fit
    in poll's int of milliseconds (about 24 days), so the event loop never overflows."""
    if not _is_number(value) or not value > 0:  # NaN too
        return None
    if value >= FOREVER:
        raise ValueError(f"expected less than {FOREVER} seconds (24 days), got {_got(value)}")
    return float(value)


def _seconds(value: Any) -> float:
    seconds = _seconds_or_none(value)
    if seconds is None:
        raise ValueError(f"expected a number of seconds > 0, got {_got(value)}")
    return seconds


def _optional_seconds(value: Any) -> float | None:
    return None if value is None else _seconds(value)


def _seconds_at_least(low: float, why: str) -> Callable[[Any], float]:
    """Seconds, and at least ``low`` of them (``why`` says why, in the error)."""

    def check(value: Any) -> float:
        seconds = _seconds(value)
        if seconds < low:
            raise ValueError(f"expected at least {low:g} s ({why}), got {_got(value)}")
        return seconds

    return check


def _ready(value: Any) -> str | float:
    """A word, or seconds; 0 is "started" (supervisord's ``startsecs = 0``, and
    ``start --ready-after 0``: no wait)."""
    if isinstance(value, str) and value in READY_CHOICES:
        return value
    if _is_number(value) and value == 0:
        return "started"
    seconds = _seconds_or_none(value)
    if seconds is None:
        raise ValueError(
            f"expected 'started', 'notify', 'exited' or a number of seconds >= 0, got {_got(value)}"
        )
    return seconds


def _signal(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a signal name or number, got {_got(value)}")
    return parse_signal(value)  # ValueError: unknown signal 'TERMINATE'


def _int_at_least(low: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"expected an integer >= {low}, got {_got(value)}")
        return int(value)

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_got(value)}")
    return value


def _exit_codes(value: Any) -> tuple[int, ...]:
    if (
        isinstance(value, str)
        or not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(code, int) and not isinstance(code, bool) for code in value)
    ):
        raise ValueError(
            f"expected a non-empty list of exit codes such as [0, 2], got {_got(value)}"
        )
    for index, code in enumerate(value):
        if not 0 <= code <= 255:
            raise ValueError(f"expected exit codes from 0 to 255, got {code}")
        if code in value[:index]:
            raise ValueError(f"names {code} twice")
    return tuple(value)


def _names(value: Any) -> tuple[str, ...]:
    if (
        isinstance(value, str)
        or not isinstance(value, (list, tuple))
        or not all(isinstance(name, str) for name in value)
    ):
        raise ValueError(f"expected a list of program names, got {_got(value)}")
    for index, name in enumerate(value):
        if name in value[:index]:
            raise ValueError(f"names {name!r} twice")
    return tuple(value)


# -- command-line text to a value; what is not understood is passed on to the check,
# which rejects it with the usual message ("expected an integer >= 1, got 'x'").


def _text(text: str) -> Any:
    return text


def _text_int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text


def _text_float(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def _text_ready(text: str) -> Any:
    return text if text in READY_CHOICES else _text_float(text)


def _text_bool(text: str) -> Any:
    words = {"true": True, "yes": True, "on": True, "1": True}
    words.update({"false": False, "no": False, "off": False, "0": False})
    return words.get(text.lower(), text)


def _text_list(text: str) -> Any:
    return [name.strip() for name in text.split(",") if name.strip()]


def _text_codes(text: str) -> Any:
    return [_text_int(code) for code in _text_list(text)]


def _text_environment(text: str) -> Any:
    name, equals, value = text.partition("=")
    return {name: value} if equals else text


class _Type(NamedTuple):
    """What a key's values are: a label for docs and --help, the check, and how to
    read one from command-line text."""

    label: str
    check: Callable[[Any], Any]
    convert: Callable[[str], Any] = _text


_SECONDS = _Type("seconds", _seconds, _text_float)
# The backoff's floors, so that a crash loop cannot spin (s6 and runit wait a second
# before they start a service that ran less than that): a restart's first delay, the
# longest one (a crash loop's pace once start_limit = 0 lets it go on), and the run
# after which a crash restarts at once (a stable one).
MIN_RESTART_DELAY = 0.01
MIN_RESTART_DELAY_MAX = 0.1
MIN_STABLE_SECONDS = 1.0
_RESTART_DELAY = _Type(
    "seconds >= 0.01",
    _seconds_at_least(MIN_RESTART_DELAY, "a crash loop must not spin"),
    _text_float,
)
_RESTART_DELAY_MAX = _Type(
    "seconds >= 0.1",
    _seconds_at_least(MIN_RESTART_DELAY_MAX, "a crash loop must not spin"),
    _text_float,
)
_STABLE_SECONDS = _Type(
    "seconds >= 1",
    _seconds_at_least(MIN_STABLE_SECONDS, "a crash after a stable run restarts at once"),
    _text_float,
)
_PATH = _Type("absolute path", _path)
_OPTIONAL_PATH = _Type("absolute path", _optional_path)
#: The largest user or group id: (uid_t)-1, one more, means "unchanged" to setuid(2).
MAX_ID = 2**32 - 2


def _name_or_id(value: Any) -> str | None:
    """A user or group: a name, or an id in ASCII digits from 0 to ``MAX_ID``; a
    TOML integer (``user = 1000``) is that id, as its digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= MAX_ID:
            raise ValueError(f"expected an id from 0 to {MAX_ID}, got {value}")
        return str(value)
    text = _optional_string(value)
    if text is not None and text.isdigit():
        if not text.isascii():  # "²" and "١٢" are digits to str.isdigit, not to int()
            raise ValueError(f"expected a name or an id in digits 0-9, got {text!r}")
        if int(text) > MAX_ID:
            raise ValueError(f"expected an id from 0 to {MAX_ID}, got {text}")
    return text


_NAME = _Type("name", _name_or_id)

_META = "daemonctx.config"


def _meta(type_: _Type, doc: str) -> dict[str, Any]:
    return {_META: (type_, doc)}


@dataclass(frozen=True)
class Key:
    """One key of a table: ``PROGRAM_KEYS["restart"].default``, ``.doc``, ...

    ``check(value)`` returns the value to store or raises ``ValueError(reason)``;
    ``from_text(text)`` reads a command-line argument into a checked value.
    ``default`` is None for a required key.
    """

    name: str
    type: str
    default: Any
    doc: str
    required: bool
    check: Callable[[Any], Any] = field(repr=False, compare=False)
    convert: Callable[[str], Any] = field(repr=False, compare=False)

    def from_text(self, text: str) -> Any:
        return self.check(self.convert(text))


def _keys(cls: type) -> dict[str, Key]:
    """The keys declared by ``cls``'s fields, in order."""
    keys = {}
    for item in fields(cls):
        if _META not in item.metadata:
            continue
        type_, doc = item.metadata[_META]
        if item.default is not MISSING:
            default: Any = item.default
        elif callable(item.default_factory):
            default = item.default_factory()
        else:
            default = None
        required = item.default is MISSING and item.default_factory is MISSING
        keys[item.name] = Key(
            item.name, type_.label, default, doc, required, type_.check, type_.convert
        )
    return keys


def _check(key: Key, value: Any, file: str | None, table: str, program: str | None) -> Any:
    """``key.check(value)``, its ``ValueError`` made a ``ConfigError``."""
    try:
        return key.check(value)
    except ValueError as exc:
        raise ConfigError(file, table, key.name, str(exc), program) from None


def _checked(
    obj: Any, keys: Mapping[str, Key], file: str | None, table: str, program: str | None
) -> None:
    """Check and normalize ``obj``'s key attributes in place (a frozen dataclass's
    ``__post_init__``), raising ``ConfigError``."""
    for key in keys.values():
        value = _check(key, getattr(obj, key.name), file, table, program)
        object.__setattr__(obj, key.name, value)


# -- the model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    """One program the supervisor keeps running: a ``[program.NAME]`` table.

    Each field after ``name`` is a key of the table, declared here only. Values
    are checked and normalized on creation (lists become tuples, seconds floats,
    ``stop_signal`` an int); a bad one raises ``ConfigError``.
    """

    name: str
    command: Sequence[str] = field(
        metadata=_meta(
            _Type("list of strings", _command, _split_words),
            "the program and its arguments (required); no shell is involved",
        )
    )
    directory: str = field(
        default="/", metadata=_meta(_PATH, "the working directory of the program")
    )
    environment: Mapping[str, str] = field(
        default_factory=dict,
        hash=False,
        metadata=_meta(
            _Type("table of strings", _environment, _text_environment),
            "variables added to the supervisor's environment",
        ),
    )
    environment_file: Sequence[str] = field(
        default=(),
        metadata=_meta(
            _Type("absolute path, or a list", _paths, _text_list),
            "files of NAME=VALUE lines read at each start (systemd's EnvironmentFile),"
            " under environment: its variables win",
        ),
    )
    user: str | None = field(default=None, metadata=_meta(_NAME, "the user (name or id) to run as"))
    umask: int = field(
        default=0o022,
        metadata=_meta(
            _Type("octal mask", _umask), "its file creation mask (0o022, or the string '022')"
        ),
    )
    group: str | None = field(
        default=None, metadata=_meta(_NAME, "the group (name or id) to run as")
    )
    nice: int | None = field(
        default=None,
        metadata=_meta(
            _Type("integer from -20 to 19", _nice, _text_int),
            "its scheduling priority (systemd's Nice=): 19 the lowest, -20 the highest",
        ),
    )
    limits: Mapping[str, tuple[int, int]] = field(
        default_factory=dict,
        hash=False,
        metadata=_meta(
            _Type("table of limits", _limits),
            "its resource limits (systemd's LimitNOFILE= and the like): { nofile = 65536,"
            ' core = "infinity", nproc = [512, 1024] }, set before it becomes user',
        ),
    )
    restart: str = field(
        default="on-failure",
        metadata=_meta(
            _Type(" | ".join(RESTART_CHOICES), _restart),
            "when to start it again after it exits: always, on-failure (exit status"
            " not 0, or killed by a signal) or never",
        ),
    )
    success_codes: Sequence[int] = field(
        default=(0,),
        metadata=_meta(
            _Type("list of exit codes", _exit_codes, _text_codes),
            "the exit codes that mean success (supervisord's exitcodes): on-failure"
            " restarts after any other, and a critical program has not failed",
        ),
    )
    ready: str | float = field(
        default="started",
        metadata=_meta(
            _Type("started | notify | exited | seconds", _ready, _text_ready),
            "when it is ready: once started, when it sends READY=1 to NOTIFY_SOCKET,"
            " once it has exited with a success code (a one-shot), or once it has"
            " run this many seconds (0: once started)",
        ),
    )
    stop_signal: int = field(
        default=int(signal.SIGTERM),
        metadata=_meta(
            _Type("signal", _signal), "the signal that asks it to stop (a name or a number)"
        ),
    )
    stop_timeout: float = field(
        default=10.0, metadata=_meta(_SECONDS, "seconds from stop_signal to SIGKILL")
    )
    instances: int = field(
        default=1,
        metadata=_meta(
            _Type("integer >= 1", _int_at_least(1), _text_int),
            "how many copies to run, named NAME:0 .. NAME:N-1 when more than one",
        ),
    )
    after: Sequence[str] = field(
        default=(),
        metadata=_meta(
            _Type("list of program names", _names, _text_list),
            "programs that must be ready before this one starts",
        ),
    )
    critical: bool = field(
        default=False,
        metadata=_meta(
            _Type("boolean", _bool, _text_bool),
            "when it fails for good, the supervisor stops every program and exits",
        ),
    )
    autostart: bool = field(
        default=True,
        metadata=_meta(
            _Type("boolean", _bool, _text_bool),
            "start it with the supervisor; false: only when asked (ctl start)",
        ),
    )
    restart_delay: float = field(
        default=0.1,
        metadata=_meta(
            _RESTART_DELAY,
            (
                "the first non-zero delay before a restart (the first crash after a stable"
                " run restarts at once); it doubles on each further crash"
            ),
        ),
    )
    restart_delay_max: float = field(
        default=30.0, metadata=_meta(_RESTART_DELAY_MAX, "the longest delay before a restart")
    )
    stable_seconds: float = field(
        default=30.0,
        metadata=_meta(_STABLE_SECONDS, "ready for this long, it is stable: the delay starts over"),
    )
    start_limit: int = field(
        default=5,
        metadata=_meta(
            _Type("integer >= 0", _int_at_least(0), _text_int),
            "give up after this many starts within start_limit_interval (0: never)",
        ),
    )
    start_limit_interval: float = field(
        default=60.0, metadata=_meta(_SECONDS, "the window start_limit counts starts in")
    )
    start_timeout: float | None = field(
        default=None,
        metadata=_meta(
            _Type("seconds", _optional_seconds, _text_float),
            'seconds to send READY=1 (ready = "notify"; 60 when not given), or to be done'
            ' (ready = "exited"; no limit when not given): else the start failed',
        ),
    )
    watchdog: float | None = field(
        default=None,
        metadata=_meta(
            _Type("seconds", _optional_seconds, _text_float),
            "once ready, the program sends WATCHDOG=1 at least this often (systemd's"
            " WatchdogSec), or it is deemed hung: stopped, and restarted as after a crash",
        ),
    )
    on_failure: Sequence[str] | None = field(
        default=None,
        metadata=_meta(
            _Type("list of strings", _optional_command, _split_words),
            "a command run each time it fails (a crash, a failed start, a missed"
            " watchdog, giving up), told how in DAEMONCTX_* variables: an alert",
        ),
    )
    on_failure_timeout: float = field(
        default=60.0,
        metadata=_meta(_SECONDS, "seconds on_failure may run; then it is killed"),
    )
    pidfile: str | None = field(
        default=None,
        metadata=_meta(
            _OPTIONAL_PATH,
            "for a program that forks into the background by itself (systemd"
            " Type=forking): the pidfile it writes",
        ),
    )

    stop: Sequence[int | float] | None = field(
        default=None,
        metadata=_meta(
            _Type("list of signals and seconds", _stop_ladder, _text_list),
            "the stop ladder, e.g. ['TERM', 10, 'QUIT', 2, 'KILL']: each signal, then"
            " how long to wait for the exit; replaces stop_signal; without a final"
            " KILL, SIGKILL comes stop_timeout (10 s in a file) after the last signal",
        ),
    )
    stdout: str | LogFile = field(
        default="inherit",
        hash=False,
        metadata=_meta(
            _Type("inherit | null | absolute path | log table", _output),
            "where its standard output goes, through the supervisor: the supervisor's"
            " own (inherit), nowhere (null), or a file: a path, or a table"
            " {path, max_bytes, backups, timestamps}",
        ),
    )
    stderr: str | LogFile = field(
        default="inherit",
        hash=False,
        metadata=_meta(
            _Type("inherit | null | stdout | absolute path | log table", _stderr_output),
            "where its standard error goes, through the supervisor: as stdout's"
            " values, or stdout (the same pipe and file: lines in the order written)",
        ),
    )
    output_buffer: int = field(
        default=65536,
        metadata=_meta(
            _Type("bytes", _int_at_least(0), _text_int),
            "how much memory the supervisor gives its recent output, for ctl tail"
            " and ctl why (each read counts 180 bytes beside its text; 0: none)",
        ),
    )
    history: int = field(
        default=10,
        metadata=_meta(
            _Type("integer >= 0", _int_at_least(0), _text_int),
            "how many of its runs ctl why shows",
        ),
    )

    if TYPE_CHECKING:
        # What the constructor takes, for type checkers: the forms each key accepts
        # (``stop_signal="INT"``, ``umask="027"``, a log table as a dict), which
        # __post_init__ normalizes into the fields' types above. At run time the
        # dataclass's own __init__; tests/test_supervisor_config.py keeps the two
        # in step.
        def __init__(
            self,
            name: str,
            command: Sequence[str],
            directory: str | os.PathLike[str] = ...,
            environment: Mapping[str, str] = ...,
            environment_file: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] = ...,
            user: str | int | None = ...,
            umask: int | str = ...,
            group: str | int | None = ...,
            nice: int | None = ...,
            limits: Mapping[str, int | str | Sequence[int | str]] = ...,
            restart: str = ...,
            success_codes: Sequence[int] = ...,
            ready: str | float = ...,
            stop_signal: int | str = ...,
            stop_timeout: float = ...,
            instances: int = ...,
            after: Sequence[str] = ...,
            critical: bool = ...,
            autostart: bool = ...,
            restart_delay: float = ...,
            restart_delay_max: float = ...,
            stable_seconds: float = ...,
            start_limit: int = ...,
            start_limit_interval: float = ...,
            start_timeout: float | None = ...,
            watchdog: float | None = ...,
            on_failure: Sequence[str] | None = ...,
            on_failure_timeout: float = ...,
            pidfile: str | os.PathLike[str] | None = ...,
            stop: Sequence[int | float | str] | None = ...,
            stdout: str | os.PathLike[str] | LogFile | Mapping[str, Any] = ...,
            stderr: str | os.PathLike[str] | LogFile | Mapping[str, Any] = ...,
            output_buffer: int = ...,
            history: int = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str):
            raise ConfigError(None, None, "name", f"expected a string, got {_got(name)}")
        table = _program_table(name)
        if not NAME_PATTERN.fullmatch(name) or name in (".", ".."):
            reason = "invalid name: use letters, digits, '_', '.' and '-' (':' marks instances)"
            raise ConfigError(None, table, None, reason, name)
        if len(name) > MAX_NAME:
            reason = f"invalid name: at most {MAX_NAME} characters, not {len(name)}"
            raise ConfigError(None, _program_table(name[:40] + "..."), None, reason, name)
        if name == "all":  # ctl stop all: every program, never this one
            raise ConfigError(None, table, None, "invalid name: 'all' means every program", name)
        if name.startswith("-"):  # ctl stop -web: an option
            reason = "invalid name: it may not start with '-' (ctl would read an option)"
            raise ConfigError(None, table, None, reason, name)
        _checked(self, PROGRAM_KEYS, None, table, name)
        if self.restart_delay_max < self.restart_delay:
            reason = (
                f"expected at least restart_delay ({self.restart_delay}),"
                f" got {self.restart_delay_max}"
            )
            raise ConfigError(None, table, "restart_delay_max", reason, name)
        if name in self.after:
            raise ConfigError(None, table, "after", "a program cannot start after itself", name)
        if self.stop is not None and self.stop_signal != signal.SIGTERM:
            reason = "give either stop or stop_signal, not both"
            raise ConfigError(None, table, "stop", reason, name)
        if self.ready == "exited" and self.restart == "always":
            reason = 'a one-shot (ready = "exited") cannot restart = "always"'
            raise ConfigError(None, table, "restart", reason, name)
        if self.ready == "exited" and self.watchdog is not None:
            reason = 'a one-shot (ready = "exited") is never ready while it runs to watch'
            raise ConfigError(None, table, "watchdog", reason, name)
        if self.ready == "exited" and self.pidfile is not None:
            reason = 'a one-shot (ready = "exited") has no daemon to find in a pidfile'
            raise ConfigError(None, table, "pidfile", reason, name)
        if self.pidfile is not None and self.instances > 1:
            reason = f"{self.instances} instances cannot share one pidfile"
            raise ConfigError(None, table, "pidfile", reason, name)

    def instance_names(self) -> list[str]:
        """``["web"]``, or ``["web:0", "web:1", ...]`` when ``instances`` > 1."""
        if self.instances == 1:
            return [self.name]
        return [f"{self.name}:{index}" for index in range(self.instances)]


PROGRAM_KEYS: dict[str, Key] = _keys(Program)

# Not in [defaults]: what names one program (its command, what it starts after,
# its pidfile, which two programs cannot share), each with the reason said.
_NOT_DEFAULTS = {
    "command": "each program names its own",
    "after": "each program names its own (a program cannot start after itself)",
    "pidfile": "two programs cannot share one pidfile",
}
#: The keys a ``[defaults]`` table may set: every program's, but those above.
DEFAULT_KEYS: dict[str, Key] = {
    name: key for name, key in PROGRAM_KEYS.items() if name not in _NOT_DEFAULTS
}
# A program that sets one of these drops the defaults of the others: a stop ladder, or
# a signal and a timeout (a program's own stop_timeout = 300 wins over a default ladder).
_EXCLUSIVE = {
    "stop": ("stop_signal", "stop_timeout"),
    "stop_signal": ("stop",),
    "stop_timeout": ("stop",),
}


@dataclass(frozen=True)
class SupervisorConfig:
    """The whole configuration: the ``[supervisor]`` table and the programs, in order.

    ``path`` is the file it was read from (shown in errors), None from Python.
    Checked on creation: keys, at least one program, unique names and pidfiles,
    ``after`` naming known programs and no cycle; a bad one raises ``ConfigError``.
    """

    control: str = field(
        metadata=_meta(_Type("absolute path", _socket_path), "the control socket's path (required)")
    )
    programs: tuple[Program, ...]
    pidfile: str | None = field(
        default=None, metadata=_meta(_OPTIONAL_PATH, "the supervisor's own pidfile")
    )
    log: str | None = field(
        default=None,
        metadata=_meta(
            _OPTIONAL_PATH,
            "the supervisor's own log (state changes, control requests); default:"
            " its standard error",
        ),
    )
    control_group: str | None = field(
        default=None,
        metadata=_meta(_Type("group name", _name_or_id), "its members may run every command"),
    )
    observer_group: str | None = field(
        default=None,
        metadata=_meta(_Type("group name", _name_or_id), "its members may run read-only commands"),
    )
    path: str | None = None
    # What ``[supervisor] include`` brought in (``load`` fills these): the files
    # read, and the file of each program that came from one, for errors and the
    # trust check of each file.
    included: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict, hash=False)
    # [group.NAME] tables: names that stand for programs in ctl (supervisord's
    # [group:x]); a program may be in several.
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    # The file of each group that came from an included file (``load`` fills it).
    group_sources: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    # The keys each program took from [defaults] (``load`` fills it): errors say so.
    defaulted: Mapping[str, tuple[str, ...]] = field(
        default_factory=dict, hash=False, compare=False
    )

    if TYPE_CHECKING:
        # The forms the constructor takes (paths as os.PathLike, a group as its id,
        # a list of programs), as Program's: for type checkers only.
        def __init__(
            self,
            control: str | os.PathLike[str],
            programs: Sequence[Program],
            pidfile: str | os.PathLike[str] | None = ...,
            log: str | os.PathLike[str] | None = ...,
            control_group: str | int | None = ...,
            observer_group: str | int | None = ...,
            path: str | os.PathLike[str] | None = ...,
            included: tuple[str, ...] = ...,
            sources: Mapping[str, str] = ...,
            groups: Mapping[str, Sequence[str]] = ...,
            group_sources: Mapping[str, str] = ...,
            defaulted: Mapping[str, tuple[str, ...]] = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        path = os.fspath(self.path) if self.path is not None else None
        object.__setattr__(self, "path", path)
        _checked(self, SUPERVISOR_KEYS, path, "supervisor", None)
        programs = self.programs
        if not isinstance(programs, (list, tuple)) or not all(
            isinstance(program, Program) for program in programs
        ):
            reason = f"expected a list of Program, got {_got(programs)}"
            raise ConfigError(path, None, "programs", reason)
        object.__setattr__(self, "programs", tuple(programs))
        if not self.programs:
            reason = "no programs: add a [program.NAME] table" if path else "no programs"
            raise ConfigError(path, None, None, reason)
        self._check_pidfiles()
        self._check_own_files(path)
        _waves(self.programs, path, self.sources)
        groups = _checked_groups(self.groups, self.programs, path, self.group_sources)
        object.__setattr__(self, "groups", groups)

    def _check_pidfiles(self) -> None:
        """No two pidfiles (the supervisor's, the programs') are one file, however
        spelled (``/run/x.pid``, ``/run/./x.pid``, ``/run//x.pid``, through a
        symlinked directory), and no program's output goes to one, nor to the
        supervisor's log: its program could forge the log's lines. Every output to
        one file has one table (``max_bytes``, ``backups``, ``timestamps``): its
        writers share one rotation."""
        pidfiles = {resolved_name(self.pidfile): "the supervisor"} if self.pidfile else {}
        log = resolved_name(self.log) if self.log else None
        for program in self.programs:
            if program.pidfile is None:
                continue
            key = resolved_name(program.pidfile)
            if key in pidfiles:
                reason = f"{program.pidfile!r} is the pidfile of {pidfiles[key]} too"
                raise self._clash(program, "pidfile", reason)
            pidfiles[key] = f"program {program.name!r}"
        tables: dict[str, tuple[LogFile, str]] = {}  # file -> its first table, and whose
        for program in self.programs:
            for stream in ("stdout", "stderr"):
                spec = getattr(program, stream)
                file = spec.path if isinstance(spec, LogFile) else spec
                if not os.path.isabs(file):
                    continue
                name = resolved_name(file)
                table = spec if isinstance(spec, LogFile) else LogFile(file)
                whose = f"the {stream} of program {program.name!r}"
                first = tables.setdefault(name, (table, whose))
                if _log_table(first[0]) != _log_table(table):
                    raise self._clash(program, stream, _table_clash(file, *first, table))
                if name in pidfiles:
                    reason = f"{file!r} is the pidfile of {pidfiles[name]}"
                    raise self._clash(program, stream, reason)
                if name == log:
                    reason = f"{file!r} is the supervisor's log: no program may write in it"
                    raise self._clash(program, stream, reason)

    def _clash(self, program: Program, key: str, reason: str) -> ConfigError:
        table = _program_table(program.name)
        return ConfigError(self.file_of(program.name), table, key, reason, program.name)

    def _check_own_files(self, path: str | None) -> None:
        """The supervisor's socket, the socket's lock file, its pidfile and its log
        are four files: one path for two of them would break both."""
        taken = {
            resolved_name(self.control): "the control socket",
            resolved_name(self.control + ".lock"): "the control socket's lock file",
        }
        for key in ("pidfile", "log"):
            value = getattr(self, key)
            if value is None:
                continue
            other = taken.get(resolved_name(value))
            if other is not None:
                raise ConfigError(path, "supervisor", key, f"{value!r} is {other} too")
            taken[resolved_name(value)] = f"the {key}"

    def file_of(self, name: str) -> str | None:
        """The file program ``name`` is in: an included one, or ``path``."""
        return self.sources.get(name, self.path)

    def error(
        self, program: Program, key: str, reason: str, kind: type[ConfigError] = ConfigError
    ) -> ConfigError:
        """``ConfigError`` (or ``kind``) for ``program``'s ``key``, saying when the value
        came from ``[defaults]``."""
        file = self.file_of(program.name)
        blame = _blame(key, reason, self.defaulted.get(program.name, ()), file, self.path)
        return kind(file, _program_table(program.name), key, reason + blame, program.name)


SUPERVISOR_KEYS: dict[str, Key] = _keys(SupervisorConfig)


# -- order ---------------------------------------------------------------------------------


def _waves(
    programs: Sequence[Program], path: str | None, sources: Mapping[str, str] | None = None
) -> list[list[str]]:
    """Names in waves, each ready before the next starts; raise on a bad ``after``
    (in ``path``, or in the file ``sources`` gives the program)."""
    files = sources or {}
    by_name: dict[str, Program] = {}
    for program in programs:
        if program.name in by_name:
            table = _program_table(program.name)
            file = files.get(program.name, path)
            raise ConfigError(file, table, None, "two programs have this name", program.name)
        by_name[program.name] = program
    for program in programs:
        file = files.get(program.name, path)
        for name in program.after:
            table = _program_table(program.name)
            if name not in by_name:
                reason = f"unknown program {name!r}{did_you_mean(name, by_name)}"
                raise ConfigError(file, table, "after", reason, program.name)
            if program.autostart and not by_name[name].autostart:
                reason = (
                    f"{name!r} has autostart = false: {program.name!r} would start without"
                    f" it (give {program.name!r} autostart = false too)"
                )
                raise ConfigError(file, table, "after", reason, program.name)
    waves: list[list[str]] = []
    started: set[str] = set()
    waiting = list(programs)
    while waiting:
        wave = [program.name for program in waiting if started.issuperset(program.after)]
        if not wave:
            cycle = _cycle(waiting)
            reason = f"dependency cycle: {' -> '.join(cycle)}"
            file = files.get(cycle[0], path)
            raise ConfigError(file, _program_table(cycle[0]), "after", reason, cycle[0])
        waves.append(wave)
        started.update(wave)
        waiting = [program for program in waiting if program.name not in started]
    return waves


def _cycle(waiting: list[Program]) -> list[str]:
    """A cycle among ``waiting``, each of which waits for another of them:
    follow the first such dependency from the first program until a name repeats."""
    left = {program.name: program for program in waiting}
    path = [waiting[0].name]
    while True:
        after = next(name for name in left[path[-1]].after if name in left)
        if after in path:
            return [*path[path.index(after) :], after]
        path.append(after)


def start_order(programs: Iterable[Program]) -> list[list[str]]:
    """Program names in waves, in file order within each: every program of a wave
    may start once the previous waves are ready. Raises ``ConfigError`` for an
    unknown name in ``after`` or a cycle (``dependency cycle: web -> db -> web``)."""
    return _waves(list(programs), None)


def stop_order(programs: Iterable[Program]) -> list[list[str]]:
    """``start_order`` reversed: a program stops before those it started after."""
    return start_order(programs)[::-1]


# -- reading ---------------------------------------------------------------------------------


def _check_table(
    table: Mapping[str, Any],
    keys: Mapping[str, Key],
    file: str | None,
    where: str,
    program: str | None,
    foreign: Mapping[str, tuple[str, str]] | None = None,
) -> None:
    """No unknown key, no required key missing, each value valid (so that errors
    come in the file's order; the dataclass checks values again, the same way)."""
    for name in table:
        if name not in keys:
            if foreign is None:
                foreign = _FOREIGN_PROGRAM_KEYS if program else _FOREIGN_SUPERVISOR_KEYS
            hint = _hint(name, keys, foreign) if name in foreign else ""
            hint = hint or _elsewhere(name, keys) or _hint(name, keys, foreign)
            raise ConfigError(file, where, name, f"unknown key{hint}", program)
    for key in keys.values():
        if key.required and key.name not in table:
            raise ConfigError(file, where, key.name, "required key is missing", program)
    for name, value in table.items():
        _check(keys[name], value, file, where, program)


_TABLE_HEADERS = {
    "supervisor": "[supervisor]",
    "defaults": "[defaults]",
    "program": "[program.NAME]",
    "group": "[group.NAME]",
}


def _check_top(data: Mapping[str, Any], path: str | None, allowed: tuple[str, ...]) -> None:
    """No key or table at the top of a file but ``allowed`` (an included file:
    programs only), each mistake named with what to write instead."""
    for name, value in data.items():
        if name in allowed:
            continue
        if name in ("supervisor", "defaults", "group"):  # in an included file
            reason = "only [program.NAME] and [group.NAME] tables may be in an included file"
            raise ConfigError(path, name, None, reason)
        if isinstance(value, Mapping):
            hint = _hint(name, allowed, _FOREIGN_TABLES)
            *first, last = [_TABLE_HEADERS[table] for table in allowed]
            expected = f"{', '.join(first)} or {last}" if first else last
            reason = f"unknown table{hint or f': expected {expected}'}"
            raise ConfigError(path, _toml_key(name), None, reason)
        hint = _elsewhere(name, {}) or did_you_mean(name, ("program",))
        raise ConfigError(path, None, name, f"unknown key{hint}")


def _elsewhere(name: str, keys: Mapping[str, Key]) -> str:
    """Where ``name`` belongs when it is a key of another table than the one whose
    ``keys`` it was found among (none: the top of the file), else ""."""
    if name in SUPERVISOR_KEYS and keys is not SUPERVISOR_KEYS:
        if name == "log" and keys:  # in a program's table: its output has keys of its own
            return " (a key of [supervisor]; a program's output: stdout, stderr)"
        return " (a key of [supervisor])"
    if name in PROGRAM_KEYS and keys is not PROGRAM_KEYS and keys is not DEFAULT_KEYS:
        return " (a key of [program.NAME] or [defaults])"
    return ""


def _defaults(data: Mapping[str, Any], path: str | None) -> dict[str, Any]:
    """The ``[defaults]`` table, checked: keys every program gets unless it sets them."""
    table = data.get("defaults", {})
    if not isinstance(table, Mapping):
        raise ConfigError(path, None, "defaults", f"expected a table, got {_got(table)}")
    for name in table:
        if name in _NOT_DEFAULTS:
            reason = f"not in [defaults]: {_NOT_DEFAULTS[name]}"
            raise ConfigError(path, "defaults", name, reason)
    _check_table(table, DEFAULT_KEYS, path, "defaults", None, _FOREIGN_PROGRAM_KEYS)
    _check_ladder(table, path, "defaults", None)
    return dict(table)


def _check_ladder(table: Mapping[str, Any], path: str | None, where: str, name: str | None) -> None:
    """A ``stop`` ladder has its own times: ``stop_timeout`` beside it would be
    ignored, so a table that gives both is refused (as ``stop_signal`` is)."""
    if "stop" in table and "stop_timeout" in table:
        reason = "give either stop (a ladder, with its own times) or stop_timeout, not both"
        raise ConfigError(path, where, "stop_timeout", reason, name)


def _with_defaults(table: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``table`` over ``defaults``: its keys win; ``environment`` tables merge (the
    program's variables win); a ``stop`` or ``stop_signal`` of its own drops the
    default of the other."""
    merged = {**defaults, **table}
    for name, others in _EXCLUSIVE.items():
        if name in table:
            for other in others:
                if other not in table:
                    merged.pop(other, None)
    if "environment" in table and "environment" in defaults:
        merged["environment"] = {**defaults["environment"], **table["environment"]}
    return merged


def _programs(
    tables: Any,
    path: str | None,
    defaults: Mapping[str, Any] | None = None,
    defaulted: dict[str, tuple[str, ...]] | None = None,
    main: str | None = None,
) -> list[Program]:
    """The ``[program.NAME]`` tables of the file at ``path``, checked, each over
    ``defaults`` (the keys each took from them go to ``defaulted``). A mistake
    that comes from a default says so (and names ``main``, the file they are in,
    when it is another)."""
    if not isinstance(tables, Mapping):
        reason = f"expected [program.NAME] tables, got {_got(tables)}"
        raise ConfigError(path, None, "program", reason)
    defaults = defaults or {}
    programs = []
    for name, table in tables.items():
        if not isinstance(table, Mapping):
            reason = f"expected a table [program.{_toml_key(name)}], got {_got(table)}"
            raise ConfigError(path, "program", name, reason)
        _check_table(table, PROGRAM_KEYS, path, _program_table(name), name)
        _check_ladder(table, path, _program_table(name), name)
        merged = _with_defaults(table, defaults)
        taken = tuple(key for key in merged if key not in table)
        try:
            programs.append(Program(name, **merged))
        except ConfigError as exc:
            blame = _blame(exc.key, exc.reason, taken, path, main)
            raise ConfigError(path, exc.table, exc.key, exc.reason + blame, exc.program) from None
        if defaulted is not None and taken:
            defaulted[name] = taken
    return programs


def _blame(
    key: str | None, reason: str, taken: Sequence[str], path: str | None, main: str | None
) -> str:
    """`` (from [defaults])`` when ``key`` came from them, `` (ready from
    [defaults])`` when the reason names keys that did; else ""."""
    where = f" in {main}" if main is not None and main != path else ""
    if key in taken:
        return f" (from [defaults]{where})"
    named = [name for name in taken if name in reason]
    return f" ({', '.join(named)} from [defaults]{where})" if named else ""


def _group_tables(tables: Any, path: str | None) -> dict[str, Any]:
    """``[group.NAME]`` tables: ``programs = [...]`` each, their names as given
    (checked with the programs, in ``SupervisorConfig``)."""
    if not isinstance(tables, Mapping):
        raise ConfigError(path, None, "group", f"expected [group.NAME] tables, got {_got(tables)}")
    groups = {}
    for name, table in tables.items():
        where = f"group.{_toml_key(name)}"
        if not isinstance(table, Mapping):
            reason = f"expected a table [{where}], got {_got(table)}"
            raise ConfigError(path, "group", name, reason)
        for key in table:
            if key != "programs":
                raise ConfigError(path, where, key, f"unknown key{did_you_mean(key, ['programs'])}")
        if "programs" not in table:
            raise ConfigError(path, where, "programs", "required key is missing")
        groups[name] = table["programs"]
    return groups


def _checked_groups(
    groups: Any,
    programs: Sequence[Program],
    main: str | None,
    sources: Mapping[str, str],
) -> dict[str, tuple[str, ...]]:
    """``groups`` checked: a valid name each, no program's, and known programs (of
    any file); an error names the group's file, ``sources``'s or ``main``."""
    if not isinstance(groups, Mapping):
        raise ConfigError(main, None, "groups", f"expected a table of groups, got {_got(groups)}")
    known = {program.name: program for program in programs}
    checked = {}
    for name, members in groups.items():
        where = f"group.{_toml_key(name)}"
        path = sources.get(name, main) if isinstance(name, str) else main
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name in (".", ".."):
            reason = "invalid name: use letters, digits, '_', '.' and '-'"
            raise ConfigError(path, where, None, reason)
        if len(name) > MAX_NAME:
            reason = f"invalid name: at most {MAX_NAME} characters, not {len(name)}"
            raise ConfigError(path, f"group.{name[:40]}...", None, reason)
        if name == "all":
            raise ConfigError(path, where, None, "invalid name: 'all' means every program")
        if name.startswith("-"):
            reason = "invalid name: it may not start with '-' (ctl would read an option)"
            raise ConfigError(path, where, None, reason)
        if name in known:
            raise ConfigError(path, where, None, f"{name!r} is a program's name too")
        try:
            names = _names(members)
        except ValueError as exc:
            raise ConfigError(path, where, "programs", str(exc)) from None
        if not names:
            raise ConfigError(path, where, "programs", "a group of no program")
        for member in names:
            if member not in known:
                reason = f"unknown program {member!r}{did_you_mean(member, known)}"
                raise ConfigError(path, where, "programs", reason)
        checked[name] = names
    return checked


def _patterns(value: Any) -> tuple[str, ...]:
    if (
        isinstance(value, str)
        or not isinstance(value, (list, tuple))
        or not all(isinstance(item, str) and item for item in value)
    ):
        raise ValueError(f"expected a list of paths or patterns, got {_got(value)}")
    return tuple(_no_nul(item) for item in value)


INCLUDE_KEY = Key(
    "include",
    "list of paths or patterns",
    (),
    "more files of [program.NAME] tables: paths or glob patterns (conf.d/*.toml),"
    " relative to this file's directory",
    False,
    _patterns,
    _text_list,
)


def _supervisor_table(
    data: Mapping[str, Any], path: str | None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The ``[supervisor]`` table checked, without ``include``; and its patterns."""
    supervisor = data.get("supervisor", {})
    if not isinstance(supervisor, Mapping):
        raise ConfigError(path, None, "supervisor", f"expected a table, got {_got(supervisor)}")
    supervisor = dict(supervisor)
    patterns = _check(INCLUDE_KEY, supervisor.pop("include", ()), path, "supervisor", None)
    _check_table(supervisor, SUPERVISOR_KEYS, path, "supervisor", None)
    return supervisor, patterns


def _include_directories(patterns: Sequence[str], path: str | None) -> list[str]:
    """The existing directories ``patterns`` look in (those named without a wildcard)."""
    base = os.path.dirname(path) if path is not None else ""
    found = []
    for pattern in patterns:
        directory = os.path.dirname(os.path.join(base, pattern)) or "."
        if not any(char in directory for char in "*?[") and os.path.isdir(directory):
            found.append(directory)
    return list(dict.fromkeys(found))


def _included_files(patterns: Sequence[str], path: str | None) -> list[str]:
    """The files ``patterns`` name, in order (each pattern's matches sorted), each
    once, never the including file itself. A path without a wildcard must exist."""
    import glob  # only with include

    base = os.path.dirname(path) if path is not None else ""
    own = os.path.realpath(path) if path is not None else None
    found: dict[str, str] = {}  # real path -> the path as shown
    for pattern in patterns:
        full = os.path.join(base, pattern)
        if not any(char in pattern for char in "*?["):
            if not os.path.lexists(full):
                raise ConfigError(path, "supervisor", "include", f"{full}: no such file")
            matches = [full]
        else:
            matches = sorted(glob.glob(full))
        for match in matches:
            real = os.path.realpath(match)
            if real != own:
                found.setdefault(real, match)
    return list(found.values())


def parse(
    data: Mapping[str, Any],
    path: str | None = None,
    *,
    trust: Callable[[str], object] | None = None,
) -> SupervisorConfig:
    """The configuration from an already parsed TOML document; ``path`` is shown in
    errors. Raises ``ConfigError`` for anything unknown, missing or invalid. The
    files ``[supervisor] include`` names are read too, each passed to ``trust``
    first (which raises to refuse it: no file another user planted is read)."""
    _check_top(data, path, ("supervisor", "defaults", "program", "group"))
    supervisor, patterns = _supervisor_table(data, path)
    defaults = _defaults(data, path)
    defaulted: dict[str, tuple[str, ...]] = {}
    programs = _programs(data.get("program", {}), path, defaults, defaulted, path)
    groups = _group_tables(data.get("group", {}), path)
    files: list[str] = []
    sources: dict[str, str] = {}
    group_sources: dict[str, str] = {}
    if patterns:
        if trust is not None:  # an empty conf.d that another user may fill is refused too
            for directory in _include_directories(patterns, path):
                trust(directory)
        files = _included_files(patterns, path)
        for file in files:
            if trust is not None:
                trust(file)
            document = _read_toml(file)
            _check_top(document, file, ("program", "group"))
            for program in _programs(document.get("program", {}), file, defaults, defaulted, path):
                if any(other.name == program.name for other in programs):
                    other = sources.get(program.name, path)
                    reason = f"two programs have this name (the other in {other})"
                    table = _program_table(program.name)
                    raise ConfigError(file, table, None, reason, program.name)
                programs.append(program)
                sources[program.name] = file
            for name, members in _group_tables(document.get("group", {}), file).items():
                if name in groups:  # a package's group may name programs of any file
                    other = group_sources.get(name, path)
                    reason = f"two groups have this name (the other in {other})"
                    raise ConfigError(file, f"group.{_toml_key(name)}", None, reason)
                groups[name] = members
                group_sources[name] = file
    return SupervisorConfig(
        programs=tuple(programs),
        path=path,
        included=tuple(files),
        sources=sources,
        groups=groups,
        group_sources=group_sources,
        defaulted=defaulted,
        **supervisor,
    )


_LOCATION = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)\s*$")


def _read_toml(shown: str) -> dict[str, Any]:
    """The TOML document in the file ``shown``; ``ConfigError`` naming it when it
    cannot be read, is not UTF-8 or not TOML."""
    return _parse_toml(_read_text(shown), shown)


def _read_text(shown: str) -> str:
    """The text of the file ``shown``; ``ConfigError`` naming it when it cannot be
    read or is not UTF-8."""
    import stat

    try:
        # Not blocking on a FIFO planted in conf.d; nothing but a regular file read
        fd = os.open(shown, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        kind = UnreadableFileError if isinstance(exc, PermissionError) else ConfigError
        raise kind(shown, None, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(shown, None, None, "not a regular file")
        if st.st_size > MAX_CONFIG_BYTES:
            reason = f"larger than {MAX_CONFIG_BYTES // (1 << 20)} MiB: not a configuration"
            raise ConfigError(shown, None, None, reason)
        with os.fdopen(os.dup(fd), "rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(shown, None, None, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_CONFIG_BYTES:
        reason = f"larger than {MAX_CONFIG_BYTES // (1 << 20)} MiB: not a configuration"
        raise ConfigError(shown, None, None, reason)
    if raw.startswith(b"\xef\xbb\xbf"):  # a byte order mark, as some editors write
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(shown, None, None, "not UTF-8 text", line=line) from None
    return text


def _parse_toml(text: str, shown: str) -> dict[str, Any]:
    """The TOML document ``text`` (of the file ``shown``); ``ConfigError`` naming
    the file, the line and the column when it is not TOML."""
    try:
        document: dict[str, Any] = tomllib.loads(text)
        return document
    except RecursionError:  # [[[[...]]]] a hundred thousand deep
        raise ConfigError(shown, None, None, "not TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _LOCATION.search(message)
        if match is None:
            raise ConfigError(shown, None, None, message + _foreign_file(text)) from None
        if match.group(1):
            line, column = int(match.group(1)), int(match.group(2))
        else:  # at the end of the document: its last line
            line, column = max(1, len(text.splitlines())), None
        reason = message[: match.start()] + _octal_umask(text, line) + _foreign_file(text)
        raise ConfigError(shown, None, None, reason, line=line, column=column) from None


def load(
    path: str | os.PathLike[str], *, trust: Callable[[str], object] | None = None
) -> SupervisorConfig:
    """Read and check the TOML file at ``path`` and the files it includes (each
    passed to ``trust`` before it is read). Raises ``ConfigError`` (one line,
    naming the file as given) when one cannot be read, is not TOML, or is invalid."""
    shown = os.fspath(path)
    return parse(_read_toml(shown), shown, trust=trust)


def load_control(path: str | os.PathLike[str]) -> str:
    """The control socket's path in the file at ``path`` (what ``ctl --config``
    needs): its ``[supervisor]`` table checked, its programs and includes not, so
    that a mistake in a program does not keep ``ctl`` from the running supervisor.
    A file that is not TOML (a program's table half written) still gives it when
    its ``[supervisor]`` table, read alone with what comes before the first
    table, is TOML; otherwise the file's error is raised."""
    shown = os.fspath(path)
    text = _read_text(shown)
    try:
        document = _parse_toml(text, shown)
    except ConfigError:
        # Not TOML: a table being edited ("[program.x" without its "]"), say.
        # Its [supervisor] table, read alone, is enough when it is sound.
        alone = _supervisor_alone(text)
        if alone is None:
            raise
        document = alone
    supervisor, _include = _supervisor_table(document, shown)
    return str(supervisor["control"])


_HEADER = re.compile(r"[ \t]*\[")
_SUPERVISOR_HEADER = re.compile(r"[ \t]*\[[ \t]*supervisor[ \t]*\][ \t]*(#.*)?\r?\n?")


def _supervisor_alone(text: str) -> dict[str, Any] | None:
    """The document made of ``text``'s lines before its first table header and of
    its one ``[supervisor]`` table (up to the next header), every other line
    blanked; None when there is no such table or more than one, or when these
    lines are not TOML either (the mistake is there, or a header was not one:
    a line in a multi-line string or array). A line is a header when it starts
    with "[", as every table's does."""
    kept: list[str] = []
    keep, found = True, 0
    for line in text.splitlines(keepends=True):
        if _HEADER.match(line):
            keep = _SUPERVISOR_HEADER.fullmatch(line) is not None
            found += keep
        kept.append(line if keep else "\n")
    if found != 1:
        return None
    try:
        document = tomllib.loads("".join(kept))
    except (tomllib.TOMLDecodeError, RecursionError):
        return None
    return document if isinstance(document.get("supervisor"), dict) else None


# -- the system -------------------------------------------------------------------------------


def _exists(name: str, lookup: Callable[[str], Any]) -> bool:
    """A name found by ``lookup`` (getpwnam, getgrnam), or a numeric id (ASCII digits)."""
    if name.isascii() and name.isdigit():
        return True
    try:
        lookup(name)
    except KeyError:
        return False
    return True


def _no_passwd_entry(user: str) -> bool:
    """Whether ``user`` is a numeric id with no passwd entry."""
    if not (user.isascii() and user.isdigit()):
        return False
    try:
        pwd.getpwuid(int(user))
    except (KeyError, OverflowError):
        return True
    return False


def check_system(config: SupervisorConfig) -> None:
    """Check what ``config`` names on this system: its users and groups exist, its
    environment files and the paths of its log files are safe.

    Apart from ``load``, so that a file can be checked on another machine (and
    tests need no such users). Numeric ids are taken as they are, but a root
    supervisor needs ``group`` beside a ``user`` id with no passwd entry: it has no
    primary group, and the group of the same number (27, ``sudo``) was never asked
    for (``DaemonContext(uid=...)`` refuses it too). Raises ``ConfigError``
    (``UnsafeFileError`` for a file another user could control).
    """
    for key in ("control_group", "observer_group"):
        name = getattr(config, key)
        if name is not None and not _exists(name, grp.getgrnam):
            raise ConfigError(config.path, "supervisor", key, f"no such group {name!r}")
    for program in config.programs:
        if program.user is not None and not _exists(program.user, pwd.getpwnam):
            raise config.error(program, "user", f"no such user {program.user!r}")
        if program.group is not None and not _exists(program.group, grp.getgrnam):
            raise config.error(program, "group", f"no such group {program.group!r}")
        if (
            program.user is not None
            and program.group is None
            and os.geteuid() == 0
            and _no_passwd_entry(program.user)
        ):
            reason = f"{program.user!r} has no passwd entry to take the group from: set group too"
            raise config.error(program, "user", reason)
        if program.environment_file:
            _check_environment_files(config, program)
        _check_log_paths(config, program)
        if (program.user is not None or program.group is not None) and os.geteuid() != 0:
            _check_own_user(config, program)
        if program.limits or program.nice is not None:
            _check_limits(config, program)


def _check_environment_files(config: SupervisorConfig, program: Program) -> None:
    """Each of ``program``'s environment files can be read, is safe, and valid (it
    is read again at each start)."""
    from .envfile import read

    for path in program.environment_file:
        kind = ConfigError
        try:
            read(path)
        except UnsafePathError as exc:  # its message names the file
            reason, kind = str(exc), UnsafeFileError
        except DaemonError as exc:  # not valid
            reason = str(exc)
        except OSError as exc:
            reason = f"{path}: {exc.strerror or exc}"
        else:
            continue
        raise config.error(program, "environment_file", reason, kind)


def _check_log_paths(config: SupervisorConfig, program: Program) -> None:
    """The paths of ``program``'s log files, as far as they exist: refused here when
    another user controls them (its start would refuse them), not at that start
    with the supervisor up. What is still missing (a directory an earlier program
    makes) is judged when the file is opened."""
    for key in ("stdout", "stderr"):
        spec = getattr(program, key)
        path = spec.path if isinstance(spec, LogFile) else spec
        if not path.startswith("/"):  # "inherit", "null", "stdout"
            continue
        try:
            check_path(path, f"{program.name}'s {key}")
        except UnsafePathError as exc:
            reason = f"refusing {path}: {exc.reason}"
            raise config.error(program, key, reason, UnsafeFileError) from None
        except OSError:
            continue  # a directory still missing (or not one): said at the start


def _check_limits(config: SupervisorConfig, program: Program) -> None:
    """What ``limits`` and ``nice`` ask can be done here (``limits.check``): a limit
    the system has, an open-file limit within the kernel's (``fs.nr_open``); no hard
    limit above the supervisor's without CAP_SYS_RESOURCE (root's, and not in every
    container), no priority above what it may take without CAP_SYS_NICE."""
    try:
        check(program.limits, program.nice, whose="the supervisor's", who="the supervisor")
    except LimitError as exc:
        if exc.name == PRIORITY:
            raise config.error(program, "nice", exc.reason) from None
        raise config.error(program, "limits", f"{exc.name}: {exc.reason}") from None


def _check_own_user(config: SupervisorConfig, program: Program) -> None:
    """Without root, ``user`` and ``group`` may only name the supervisor's own: another
    would fail at every start (setuid(2)), with the spawn's less telling reason."""
    import grp
    import pwd

    def uid(name: str) -> int:
        return pwd.getpwnam(name).pw_uid

    def gid(name: str) -> int:
        return grp.getgrnam(name).gr_gid

    for key, value, ours, lookup in (
        ("user", program.user, os.geteuid(), uid),
        ("group", program.group, os.getegid(), gid),
    ):
        if value is None:
            continue
        try:
            number = int(value) if value.isascii() and value.isdigit() else lookup(value)
        except KeyError:
            continue  # no such one: said above
        if number != ours:
            reason = f"{value!r}: only a supervisor running as root can run a program as another"
            raise config.error(program, key, reason)
