"""The supervisor's configuration: the TOML file and the Python model agree, and
every bad key, type or value is one exact line naming the file, table and key.

Pure unit tests: no process starts; files are written to tmp_path.
"""

from __future__ import annotations

import grp
import json
import math
import os
import pickle
import pwd
import re
import signal
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from conftest import Supervisors

from daemonctx.errors import DaemonError
from daemonctx.supervisor.config import (
    PROGRAM_KEYS,
    SUPERVISOR_KEYS,
    ConfigError,
    LogFile,
    Program,
    SupervisorConfig,
    check_system,
    load,
    load_control,
    parse,
    start_order,
    stop_order,
)

SUPERVISOR = '[supervisor]\ncontrol = "/run/shop/control.sock"\n'
WEB = '[program.web]\ncommand = ["/srv/web"]\n'


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``shop.toml`` in the current directory, so errors show that relative path."""
    monkeypatch.chdir(tmp_path)
    return Path("shop.toml")


def load_text(path: Path, text: str) -> SupervisorConfig:
    path.write_text(text)
    return load(path)


def error_of(path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(path, text)
    assert "\n" not in str(info.value)
    return info.value


def toml(value: Any) -> str:
    """``value`` written as a TOML value (enough for these tests)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML's
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{ " + ", ".join(f"{toml(k)} = {toml(v)}" for k, v in value.items()) + " }"


# -- a full file ------------------------------------------------------------------------

FULL = """\
[supervisor]
control = "/run/shop/control.sock"
pidfile = "/run/shop/supervisor.pid"
control_group = "shop-admins"
observer_group = "shop-staff"

[program.web]
command = ["/srv/shop/bin/gunicorn", "shop:app", "-b", "127.0.0.1:8000"]
directory = "/srv/shop"
environment = { SHOP_ENV = "prod" }
user = "shop"
group = "shop"
restart = "always"
ready = 2.5
stop_signal = "SIGHUP"
stop_timeout = 20
instances = 2
after = ["db"]
critical = true
restart_delay = 0.5
restart_delay_max = 60
stable_seconds = 10
start_limit = 0
start_limit_interval = 120
start_timeout = 30

[program.db]
command = ["/usr/bin/postgres", "-D", "/var/lib/pg"]
ready = "notify"
stop_signal = 2
pidfile = "/run/pg.pid"
"""


def test_a_full_file(shop: Path) -> None:
    config = load_text(shop, FULL)
    web = Program(
        "web",
        ("/srv/shop/bin/gunicorn", "shop:app", "-b", "127.0.0.1:8000"),
        directory="/srv/shop",
        environment={"SHOP_ENV": "prod"},
        user="shop",
        group="shop",
        restart="always",
        ready=2.5,
        stop_signal=signal.SIGHUP,
        stop_timeout=20.0,
        instances=2,
        after=("db",),
        critical=True,
        restart_delay=0.5,
        restart_delay_max=60.0,
        stable_seconds=10.0,
        start_limit=0,
        start_limit_interval=120.0,
        start_timeout=30.0,
    )
    db = Program(
        "db",
        ["/usr/bin/postgres", "-D", "/var/lib/pg"],
        ready="notify",
        stop_signal=signal.SIGINT,
        pidfile="/run/pg.pid",
    )
    assert config == SupervisorConfig(
        control="/run/shop/control.sock",
        programs=(web, db),
        pidfile="/run/shop/supervisor.pid",
        control_group="shop-admins",
        observer_group="shop-staff",
        path="shop.toml",
    )
    got = config.programs[0]
    # stored types: what the state machine and the spawner read
    assert got.command == ("/srv/shop/bin/gunicorn", "shop:app", "-b", "127.0.0.1:8000")
    assert type(got.stop_signal) is int and got.stop_signal == signal.SIGHUP
    assert type(got.stop_timeout) is float and type(got.ready) is float
    assert got.after == ("db",)
    assert got.instance_names() == ["web:0", "web:1"]
    assert config.programs[1].instance_names() == ["db"]
    assert start_order(config.programs) == [["db"], ["web"]]
    assert hash(got) == hash(web)  # frozen, hashable (environment is left out of the hash)
    assert pickle.loads(pickle.dumps(config)) == config


def test_defaults(shop: Path) -> None:
    config = load_text(shop, SUPERVISOR + WEB)
    assert (config.pidfile, config.control_group, config.observer_group) == (None, None, None)
    (web,) = config.programs
    assert web == Program("web", ["/srv/web"])
    assert web.directory == "/"
    assert web.environment == {}
    assert (web.user, web.group, web.pidfile) == (None, None, None)
    assert web.restart == "on-failure"
    assert web.ready == "started"
    assert web.stop_signal == signal.SIGTERM and type(web.stop_signal) is int
    assert web.stop_timeout == 10.0
    assert web.instances == 1 and web.instance_names() == ["web"]
    assert web.after == ()
    assert web.critical is False
    assert (web.restart_delay, web.restart_delay_max, web.stable_seconds) == (0.1, 30.0, 30.0)
    assert (web.start_limit, web.start_limit_interval, web.start_timeout) == (5, 60.0, None)


def test_each_key_is_declared_once() -> None:
    """Program's fields are the table's keys, in order; defaults pass their own check."""
    assert [item.name for item in fields(Program)] == ["name", *PROGRAM_KEYS]
    assert PROGRAM_KEYS["restart"].default == "on-failure"
    assert PROGRAM_KEYS["command"].required and not PROGRAM_KEYS["directory"].required
    program = Program("web", ["/srv/web"])
    for key in PROGRAM_KEYS.values():
        assert key.doc and "\n" not in key.doc
        if not key.required:
            assert getattr(program, key.name) == key.check(key.default), key.name
    assert list(SUPERVISOR_KEYS) == ["control", "pidfile", "log", "control_group", "observer_group"]


def test_after_a_program_with_autostart_false_needs_autostart_false() -> None:
    """Started by hand, db then web: fine; web started at boot without db: refused."""
    db = Program("db", ["/srv/db"], autostart=False)
    web = Program("web", ["/srv/web"], after=["db"], autostart=False)
    assert start_order(SupervisorConfig("/run/c.sock", (db, web)).programs) == [["db"], ["web"]]
    with pytest.raises(ConfigError, match=r"^program 'web': after: 'db' has autostart = false"):
        SupervisorConfig("/run/c.sock", (db, Program("web", ["/srv/web"], after=["db"])))


def test_ready_0_is_ready_once_started_as_supervisords_startsecs_0(shop: Path) -> None:
    """supervisord's ``startsecs = 0``, translated word for word, means what
    ``start --ready-after 0`` means: no wait, ``ready = "started"``."""
    config = load_text(shop, SUPERVISOR + WEB + "ready = 0\n[program.db]\ncommand = ['/db']\n"
                       "ready = 0.0\n")  # fmt: skip
    assert [program.ready for program in config.programs] == ["started", "started"]
    assert config.programs[0] == Program("web", ["/srv/web"])
    config = load_text(shop, SUPERVISOR + "[defaults]\nready = 0\n" + WEB)
    assert config.programs[0].ready == "started"
    assert PROGRAM_KEYS["ready"].from_text("0") == "started"  # supervise --ready-after 0
    assert Program("web", ["/srv/web"], ready=0).ready == "started"


def test_keys_from_command_line_text() -> None:
    assert PROGRAM_KEYS["restart"].from_text("always") == "always"
    assert PROGRAM_KEYS["ready"].from_text("notify") == "notify"
    assert PROGRAM_KEYS["ready"].from_text("exited") == "exited"
    assert PROGRAM_KEYS["ready"].from_text("2") == 2.0
    assert PROGRAM_KEYS["stop_signal"].from_text("hup") == signal.SIGHUP
    assert PROGRAM_KEYS["instances"].from_text("3") == 3
    assert PROGRAM_KEYS["stop_timeout"].from_text("1.5") == 1.5
    assert PROGRAM_KEYS["critical"].from_text("yes") is True
    assert PROGRAM_KEYS["autostart"].from_text("false") is False
    assert PROGRAM_KEYS["success_codes"].from_text("0, 2") == (0, 2)
    assert PROGRAM_KEYS["after"].from_text("db, cache") == ("db", "cache")
    assert PROGRAM_KEYS["environment"].from_text("A=b=c") == {"A": "b=c"}
    assert PROGRAM_KEYS["command"].from_text("app --flag 'a b'") == ("app", "--flag", "a b")
    with pytest.raises(ValueError, match=r"^expected an integer >= 1, got 'x'$"):
        PROGRAM_KEYS["instances"].from_text("x")
    with pytest.raises(ValueError, match=r"^expected true or false, got 'maybe'$"):
        PROGRAM_KEYS["critical"].from_text("maybe")


# -- bad values: the same reason from the file and from Python ---------------------------

SECONDS = "expected a number of seconds > 0, got"
LIST = "expected a non-empty list of strings, got"
RESTART = "expected one of always, on-failure, never, got"
ENVIRONMENT = 'expected a table of strings (NAME = "value"), got'
READY = "expected 'started', 'notify', 'exited' or a number of seconds >= 0, got"
DELAY = "expected at least restart_delay"
CODES = "expected a non-empty list of exit codes such as [0, 2], got"
MAX_BYTES = (
    "max_bytes: expected 0 (never rotated) or at least 4096 (each rotation moves every backup), got"
)
BACKUPS = (
    "backups: expected at most 1000 (each rotation moves every file kept; keep more with"
    " logrotate), got"
)

BAD_VALUES: list[tuple[dict[str, Any], str, str]] = [
    # (keys of [program.web] besides command, key named, reason)
    ({"restart": "sometimes"}, "restart", f"{RESTART} 'sometimes'"),
    ({"restart": True}, "restart", f"{RESTART} True"),
    ({"command": []}, "command", f"{LIST} []"),
    ({"command": ["/bin/app", 1]}, "command", f"{LIST} ['/bin/app', 1]"),
    ({"command": "gunicorn app"}, "command",
     "expected a list of strings (no shell splits it), got 'gunicorn app'"),
    ({"command": ["", "x"]}, "command", "the program to run (the first item) is an empty string"),
    ({"command": ["/bin/a\0b"]}, "command", "contains a NUL character, got '/bin/a\\x00b'"),
    ({"directory": "srv/shop"}, "directory", "expected an absolute path, got 'srv/shop'"),
    ({"directory": 1}, "directory", "expected an absolute path, got 1"),
    ({"environment": {"A": 1}}, "environment", f"{ENVIRONMENT} {{'A': 1}}"),
    ({"environment": ["A=1"]}, "environment", f"{ENVIRONMENT} ['A=1']"),
    ({"environment": {"A=B": "1"}}, "environment", "invalid variable name 'A=B'"),
    ({"user": True}, "user", "expected a non-empty string, got True"),
    ({"user": 1.5}, "user", "expected a non-empty string, got 1.5"),
    ({"user": -1}, "user", "expected an id from 0 to 4294967294, got -1"),
    ({"group": 4294967295}, "group", "expected an id from 0 to 4294967294, got 4294967295"),
    ({"group": ""}, "group", "expected a non-empty string, got ''"),
    ({"ready": "ready"}, "ready", f"{READY} 'ready'"),
    ({"ready": -1}, "ready", f"{READY} -1"),
    ({"ready": -0.5}, "ready", f"{READY} -0.5"),
    ({"ready": True}, "ready", f"{READY} True"),
    ({"stop_signal": "TERMINATE"}, "stop_signal", "unknown signal 'TERMINATE'"),
    ({"stop_signal": 0}, "stop_signal", "unknown signal number 0"),
    ({"stop_signal": 1.5}, "stop_signal", "expected a signal name or number, got 1.5"),
    ({"stop_signal": False}, "stop_signal", "expected a signal name or number, got False"),
    ({"stop_timeout": True}, "stop_timeout", f"{SECONDS} True"),
    ({"stop_timeout": "10"}, "stop_timeout", f"{SECONDS} '10'"),
    ({"stop_timeout": 0}, "stop_timeout", f"{SECONDS} 0"),
    ({"start_timeout": -1.5}, "start_timeout", f"{SECONDS} -1.5"),
    ({"stable_seconds": math.nan}, "stable_seconds", f"{SECONDS} nan"),
    ({"start_limit_interval": math.inf}, "start_limit_interval",
     "expected less than 2147483.647 seconds (24 days), got inf"),
    ({"instances": 0}, "instances", "expected an integer >= 1, got 0"),
    ({"instances": 2.0}, "instances", "expected an integer >= 1, got 2.0"),
    ({"instances": True}, "instances", "expected an integer >= 1, got True"),
    ({"start_limit": -1}, "start_limit", "expected an integer >= 0, got -1"),
    ({"autostart": "no"}, "autostart", "expected true or false, got 'no'"),
    ({"on_failure": "mail -s down ops"}, "on_failure",
     "expected a list of strings (no shell splits it), got 'mail -s down ops'"),
    ({"on_failure_timeout": 0}, "on_failure_timeout", f"{SECONDS} 0"),
    ({"success_codes": []}, "success_codes", f"{CODES} []"),
    ({"success_codes": "0,2"}, "success_codes", f"{CODES} '0,2'"),
    ({"success_codes": [0, True]}, "success_codes", f"{CODES} [0, True]"),
    ({"success_codes": [0, 2.0]}, "success_codes", f"{CODES} [0, 2.0]"),
    ({"success_codes": [0, 256]}, "success_codes", "expected exit codes from 0 to 255, got 256"),
    ({"success_codes": [-1]}, "success_codes", "expected exit codes from 0 to 255, got -1"),
    ({"success_codes": [2, 2]}, "success_codes", "names 2 twice"),
    ({"critical": "yes"}, "critical", "expected true or false, got 'yes'"),
    ({"critical": 1}, "critical", "expected true or false, got 1"),
    ({"after": "db"}, "after", "expected a list of program names, got 'db'"),
    ({"after": ["web"]}, "after", "a program cannot start after itself"),
    ({"after": ["db", "db"]}, "after", "names 'db' twice"),
    ({"pidfile": "web.pid"}, "pidfile", "expected an absolute path, got 'web.pid'"),
    ({"ready": "exited", "restart": "always"}, "restart",
     'a one-shot (ready = "exited") cannot restart = "always"'),
    ({"ready": "exited", "watchdog": 10}, "watchdog",
     'a one-shot (ready = "exited") is never ready while it runs to watch'),
    ({"ready": "exited", "pidfile": "/run/web.pid"}, "pidfile",
     'a one-shot (ready = "exited") has no daemon to find in a pidfile'),
    ({"pidfile": "/run/web.pid", "instances": 2}, "pidfile",
     "2 instances cannot share one pidfile"),
    ({"restart_delay": 5, "restart_delay_max": 1}, "restart_delay_max", f"{DELAY} (5.0), got 1.0"),
    ({"restart_delay": 60}, "restart_delay_max", f"{DELAY} (60.0), got 30.0"),
    # floors: a crash loop must not spin (2,592 restarts of /bin/false in 5 s)
    ({"restart_delay": 0.001}, "restart_delay",
     "expected at least 0.01 s (a crash loop must not spin), got 0.001"),
    ({"restart_delay": 0.01, "restart_delay_max": 0.05}, "restart_delay_max",
     "expected at least 0.1 s (a crash loop must not spin), got 0.05"),
    ({"stable_seconds": 0.001}, "stable_seconds",
     "expected at least 1 s (a crash after a stable run restarts at once), got 0.001"),
    ({"stable_seconds": 0}, "stable_seconds", f"{SECONDS} 0"),
    ({"umask": " 0o22"}, "umask", "expected an octal mask such as '022', got ' 0o22'"),
    ({"umask": "0_22"}, "umask", "expected an octal mask such as '022', got '0_22'"),
    ({"umask": "\u0660\u0667\u0667"}, "umask",
     "expected an octal mask such as '022', got '\u0660\u0667\u0667'"),
    # (uid_t)-1 means "unchanged" to setuid(2): the program would run as root
    ({"user": "4294967295"}, "user", "expected an id from 0 to 4294967294, got 4294967295"),
    ({"group": "4294967295"}, "group", "expected an id from 0 to 4294967294, got 4294967295"),
    ({"user": "9" * 20}, "user", f"expected an id from 0 to 4294967294, got {'9' * 20}"),
    ({"user": "\u00b2"}, "user", "expected a name or an id in digits 0-9, got '\u00b2'"),
    ({"group": "\u0661\u0662"}, "group",
     "expected a name or an id in digits 0-9, got '\u0661\u0662'"),
    ({"user": "\u0661\u0660\u0660\u0662"}, "user",
     "expected a name or an id in digits 0-9, got '\u0661\u0660\u0660\u0662'"),
    # each rotation moves every backup kept: a bound, not a frozen loop
    ({"stdout": {"path": "/var/log/web.log", "backups": 1001}}, "stdout", f"{BACKUPS} 1001"),
    ({"stderr": {"path": "/var/log/web.log", "max_bytes": 10, "backups": 10**20}}, "stderr",
     f"{BACKUPS} {10**20}"),
    ({"stdout": {"path": "/var/log/web.log", "backups": -1}}, "stdout",
     "backups: expected an integer >= 0, got -1"),
    ({"stdout": {"path": "/var/log/web.log", "max_bytes": -1}}, "stdout",
     "max_bytes: expected an integer >= 0, got -1"),
    # a rotation at each short line, each a rename per backup: refused too
    ({"stdout": {"path": "/var/log/web.log", "max_bytes": 10}}, "stdout", f"{MAX_BYTES} 10"),
    ({"stderr": {"path": "/var/log/web.log", "max_bytes": 4095}}, "stderr", f"{MAX_BYTES} 4095"),
]  # fmt: skip


@pytest.mark.parametrize(("keys", "key", "reason"), BAD_VALUES)
def test_a_bad_value_in_the_file(shop: Path, keys: dict[str, Any], key: str, reason: str) -> None:
    table = {"command": ["/srv/web"], **keys}
    text = SUPERVISOR + "[program.web]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in table.items())
    error = error_of(shop, text)
    assert str(error) == f"shop.toml: [program.web] {key}: {reason}"
    assert (error.file, error.table, error.key, error.program) == (
        "shop.toml",
        "program.web",
        key,
        "web",
    )
    assert error.reason == reason


def test_a_user_or_group_may_be_a_toml_integer(shop: Path) -> None:
    """``user = 1000`` is the id 1000, as ``user = "1000"`` is (the docs type it
    "name or id"); so are a group and the supervisor's groups."""
    text = SUPERVISOR + "control_group = 0\nobserver_group = 4294967294\n"
    text += WEB + "user = 1000\ngroup = 0\n"
    config = load_text(shop, text)
    (web,) = config.programs
    assert (web.user, web.group) == ("1000", "0")
    assert (config.control_group, config.observer_group) == ("0", "4294967294")
    assert Program("web", ["/srv/web"], user=0).user == "0"


def test_the_backoff_floors_are_allowed() -> None:
    program = Program(
        "web", ["/srv/web"], restart_delay=0.01, restart_delay_max=0.1, stable_seconds=1
    )
    assert (program.restart_delay, program.restart_delay_max, program.stable_seconds) == (
        0.01,
        0.1,
        1.0,
    )


def test_a_log_table_keeps_up_to_1000_backups() -> None:
    table = {"path": "/var/log/web.log", "max_bytes": 4096, "backups": 1000}
    program = Program("web", ["/srv/web"], stdout=table)
    assert program.stdout == LogFile("/var/log/web.log", max_bytes=4096, backups=1000)


@pytest.mark.parametrize(("keys", "key", "reason"), BAD_VALUES)
def test_the_same_bad_value_from_python(keys: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        Program(**{"name": "web", "command": ["/srv/web"], **keys})
    assert str(info.value) == f"program 'web': {key}: {reason}"
    assert (info.value.file, info.value.table, info.value.key) == (None, "program.web", key)
    assert info.value.reason == reason


# -- bad files: structure, names, order --------------------------------------------------

BAD_FILES: list[tuple[str, str]] = [
    (SUPERVISOR + WEB + "restrat = 'always'\n",
     "shop.toml: [program.web] restrat: unknown key (did you mean 'restart'?)"),
    (SUPERVISOR + WEB + "name = 'www'\n", "shop.toml: [program.web] name: unknown key"),
    (SUPERVISOR + WEB + "[program.web.logs]\nfile = '/x'\n",
     "shop.toml: [program.web] logs: unknown key"),
    (SUPERVISOR + "[program.web]\ndirectory = '/srv'\n",
     "shop.toml: [program.web] command: required key is missing"),
    (SUPERVISOR + WEB + "[programs.db]\ncommand = ['/x']\n",
     "shop.toml: [programs] unknown table (did you mean 'program'?)"),
    (SUPERVISOR + WEB + "[logging]\nlevel = 'debug'\n",
     "shop.toml: [logging] unknown table: expected [supervisor], [defaults], [program.NAME]"
     " or [group.NAME]"),
    ("debug = true\n" + SUPERVISOR + WEB, "shop.toml: debug: unknown key"),
    # a key of another table: said where it goes
    ("control = '/run/c.sock'\n" + WEB,
     "shop.toml: control: unknown key (a key of [supervisor])"),
    ("command = ['/x']\n" + SUPERVISOR + WEB,
     "shop.toml: command: unknown key (a key of [program.NAME] or [defaults])"),
    (SUPERVISOR + "autostart = false\n" + WEB,
     "shop.toml: [supervisor] autostart: unknown key (a key of [program.NAME] or [defaults])"),
    (SUPERVISOR + WEB + "log = '/var/log/web.log'\n",
     "shop.toml: [program.web] log: unknown key (a key of [supervisor]; a program's output:"
     " stdout, stderr)"),
    (SUPERVISOR + "[defaults]\numask = '022'\ncontrol_group = 'x'\n" + WEB,
     "shop.toml: [defaults] control_group: unknown key (a key of [supervisor])"),
    ("supervisor = 1\n" + WEB, "shop.toml: supervisor: expected a table, got 1"),
    ("program = 1\n" + SUPERVISOR, "shop.toml: program: expected [program.NAME] tables, got 1"),
    ("program = { web = 1 }\n" + SUPERVISOR,
     "shop.toml: [program] web: expected a table [program.web], got 1"),
    (SUPERVISOR, "shop.toml: no programs: add a [program.NAME] table"),
    (WEB, "shop.toml: [supervisor] control: required key is missing"),
    ("[supervisor]\ncontrol = 'run/control.sock'\n" + WEB,
     "shop.toml: [supervisor] control: expected an absolute path, got 'run/control.sock'"),
    ("[supervisor]\ncontrol = '/" + "x" * 107 + "'\n" + WEB,
     "shop.toml: [supervisor] control: too long for a Unix socket (108 bytes, at most 107)"),
    (SUPERVISOR + "pid_file = '/run/s.pid'\n" + WEB,
     "shop.toml: [supervisor] pid_file: unknown key (did you mean 'pidfile'?)"),
    (SUPERVISOR + "pidfile = 'run/s.pid'\n" + WEB,
     "shop.toml: [supervisor] pidfile: expected an absolute path, got 'run/s.pid'"),
    (SUPERVISOR + "control_group = true\n" + WEB,
     "shop.toml: [supervisor] control_group: expected a non-empty string, got True"),
    (SUPERVISOR + "control_group = -5\n" + WEB,
     "shop.toml: [supervisor] control_group: expected an id from 0 to 4294967294, got -5"),
    (SUPERVISOR + "control_group = '4294967295'\n" + WEB,
     "shop.toml: [supervisor] control_group: expected an id from 0 to 4294967294, got 4294967295"),
    # the supervisor's own four files, on four paths; a socket is no directory
    ("[supervisor]\ncontrol = '/'\n" + WEB,
     "shop.toml: [supervisor] control: expected the path of a socket file, not of a directory,"
     " got '/'"),
    ("[supervisor]\ncontrol = '/run/shop/'\n" + WEB,
     "shop.toml: [supervisor] control: expected the path of a socket file, not of a directory,"
     " got '/run/shop/'"),
    (SUPERVISOR + "log = '/run/shop/control.sock'\n" + WEB,
     "shop.toml: [supervisor] log: '/run/shop/control.sock' is the control socket too"),
    (SUPERVISOR + "pidfile = '/run/shop/control.sock.lock'\n" + WEB,
     "shop.toml: [supervisor] pidfile: '/run/shop/control.sock.lock' is the control socket's"
     " lock file too"),
    (SUPERVISOR + "pidfile = '/run/shop/s.pid'\nlog = '/run/shop/s.pid'\n" + WEB,
     "shop.toml: [supervisor] log: '/run/shop/s.pid' is the pidfile too"),
    # the first error in the file is the one shown
    ("[supervisor]\ncontrol = 'c.sock'\n" + WEB + "restart = 'sometimes'\n",
     "shop.toml: [supervisor] control: expected an absolute path, got 'c.sock'"),
    (SUPERVISOR + "[program.'a:b']\ncommand = ['/x']\n",
     "shop.toml: [program.\"a:b\"] invalid name: use letters, digits, '_', '.' and '-'"
     " (':' marks instances)"),
    (SUPERVISOR + "[program.'..']\ncommand = ['/x']\n",
     "shop.toml: [program.\"..\"] invalid name: use letters, digits, '_', '.' and '-'"
     " (':' marks instances)"),
    (SUPERVISOR + "[program.all]\ncommand = ['/x']\n",
     "shop.toml: [program.all] invalid name: 'all' means every program"),
    # in each process's environment (a string of at most 128 KiB): 131,060 letters
    # were taken, and the program could never be executed (E2BIG)
    (SUPERVISOR + f"[program.{'w' * 256}]\ncommand = ['/x']\n",
     f'shop.toml: [program."{"w" * 40}..."] invalid name: at most 255 characters, not 256'),
    (SUPERVISOR + "[program.-web]\ncommand = ['/x']\n",
     "shop.toml: [program.-web] invalid name: it may not start with '-'"
     " (ctl would read an option)"),
    (SUPERVISOR + WEB + "after = ['dbb']\n[program.db]\ncommand = ['/x']\n",
     "shop.toml: [program.web] after: unknown program 'dbb' (did you mean 'db'?)"),
    (SUPERVISOR + WEB + "after = ['db']\n[program.db]\ncommand = ['/x']\nafter = ['web']\n",
     "shop.toml: [program.web] after: dependency cycle: web -> db -> web"),
    (SUPERVISOR + "pidfile = '/run/x.pid'\n" + WEB + "pidfile = '/run/x.pid'\n",
     "shop.toml: [program.web] pidfile: '/run/x.pid' is the pidfile of the supervisor too"),
    # one file however spelled (they were compared as strings); no output into one
    (SUPERVISOR + WEB + "pidfile = '/run/x/pp.pid'\n"
     "[program.db]\ncommand = ['/x']\npidfile = '/run/x/./pp.pid'\n",
     "shop.toml: [program.db] pidfile: '/run/x/./pp.pid' is the pidfile of program 'web' too"),
    (SUPERVISOR + "pidfile = '/run/x/t.pid'\n" + WEB + "pidfile = '/run/x//t.pid'\n",
     "shop.toml: [program.web] pidfile: '/run/x//t.pid' is the pidfile of the supervisor too"),
    (SUPERVISOR + "pidfile = '/run/x/t.pid'\n" + WEB + "pidfile = '/run/y/../x/t.pid'\n",
     "shop.toml: [program.web] pidfile: '/run/y/../x/t.pid' is the pidfile of the supervisor"
     " too"),
    (SUPERVISOR + "pidfile = '/run/x/sp.pid'\n" + WEB + "stdout = '/run/x/sp.pid'\n",
     "shop.toml: [program.web] stdout: '/run/x/sp.pid' is the pidfile of the supervisor"),
    (SUPERVISOR + WEB + "pidfile = '/run/web.pid'\nstderr = { path = '/run//web.pid' }\n",
     "shop.toml: [program.web] stderr: '/run//web.pid' is the pidfile of program 'web'"),
    (SUPERVISOR + WEB + "stdout = '/run/db.pid'\n"
     "[program.db]\ncommand = ['/x']\npidfile = '/run/db.pid'\n",
     "shop.toml: [program.web] stdout: '/run/db.pid' is the pidfile of program 'db'"),
    # one file, one table: its writers share its rotation (a second table was ignored)
    (SUPERVISOR + WEB + "stdout = '/var/log/shop.log'\n[program.db]\ncommand = ['/x']\n"
     "stderr = { path = '/var/log//shop.log', timestamps = true }\n",
     "shop.toml: [program.db] stderr: '/var/log//shop.log' is the stdout of program 'web' too,"
     " with another table (timestamps false there, true here): every writer of one file"
     " shares its rotation: give them the same table"),
    (SUPERVISOR.replace("control.sock", "c.sock") + "pidfile = '/run/shop/./c.sock.lock'\n" + WEB,
     "shop.toml: [supervisor] pidfile: '/run/shop/./c.sock.lock' is the control socket's lock"
     " file too"),
    # another supervisor's names: what to write here instead
    (SUPERVISOR + WEB + "numprocs = 2\n",
     "shop.toml: [program.web] numprocs: unknown key (supervisord's; here: instances = N)"),
    (SUPERVISOR + WEB + "stopwaitsecs = 5\n",
     "shop.toml: [program.web] stopwaitsecs: unknown key (supervisord's; here: stop_timeout)"),
    (SUPERVISOR + WEB + "exitcodes = [0, 2]\n",
     "shop.toml: [program.web] exitcodes: unknown key"
     " (supervisord's; here: success_codes = [0, 2])"),
    (SUPERVISOR + WEB + "after = ['db']\n[program.db]\ncommand = ['/x']\nautostart = false\n",
     "shop.toml: [program.web] after: 'db' has autostart = false: 'web' would start without"
     " it (give 'web' autostart = false too)"),
    (SUPERVISOR + WEB + "RestartSec = 5\n",
     "shop.toml: [program.web] RestartSec: unknown key (systemd's; here: restart_delay)"),
    (SUPERVISOR + WEB + "WatchdogSec = 30\n",
     "shop.toml: [program.web] WatchdogSec: unknown key (systemd's; here: watchdog)"),
    (SUPERVISOR + WEB + "forever = true\n",
     "shop.toml: [program.web] forever: unknown key (zdaemon's; here: start_limit = 0)"),
    (SUPERVISOR + "logfile = '/var/log/s.log'\n" + WEB,
     "shop.toml: [supervisor] logfile: unknown key (supervisord's; here: log)"),
    (SUPERVISOR + WEB + "[unix_http_server]\nfile = '/run/s.sock'\n",
     "shop.toml: [unix_http_server] unknown table (supervisord's; here: [supervisor] control)"),
    # not a close match of ours ('autostart'): what supervisord's and zdaemon's mean here
    (SUPERVISOR + WEB + "numprocs_start = 1\n",
     "shop.toml: [program.web] numprocs_start: unknown key"
     " (supervisord's; none here: instances are numbered from 0)"),
    (SUPERVISOR + WEB + "serverurl = 'AUTO'\n",
     "shop.toml: [program.web] serverurl: unknown key (supervisord's; none here: the control"
     " socket's path is in DAEMONCTX_SUPERVISOR)"),
    (SUPERVISOR + "serverurl = 'unix:///run/s.sock'\n" + WEB,
     "shop.toml: [supervisor] serverurl: unknown key"
     " (supervisord's; here: daemonctx ctl --control SOCK)"),
    (SUPERVISOR + WEB + "socket-name = '/run/zd.sock'\n",
     "shop.toml: [program.web] socket-name: unknown key (zdaemon's; here: [supervisor] control)"),
    (SUPERVISOR + WEB + "hang-around = true\n",
     "shop.toml: [program.web] hang-around: unknown key"
     " (zdaemon's; none here: the supervisor stays until ctl shutdown)"),
    (SUPERVISOR + "hang-around = true\n" + WEB,
     "shop.toml: [supervisor] hang-around: unknown key"
     " (zdaemon's; none here: the supervisor stays until ctl shutdown)"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_a_bad_file(shop: Path, text: str, message: str) -> None:
    assert str(error_of(shop, text)) == message


def test_two_pidfiles_through_a_symlinked_directory_are_one(shop: Path, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    text = (
        SUPERVISOR
        + f"pidfile = '{tmp_path}/real/sup.pid'\n"
        + WEB
        + f"pidfile = '{tmp_path}/link/sup.pid'\n"
    )
    assert str(error_of(shop, text)) == (
        f"shop.toml: [program.web] pidfile: '{tmp_path}/link/sup.pid' is the pidfile of"
        " the supervisor too"
    )
    text = SUPERVISOR + WEB + f"pidfile = '{tmp_path}/link/web.pid'\n"
    assert load_text(shop, text).programs[0].pidfile == f"{tmp_path}/link/web.pid"  # as given


def test_a_toml_syntax_error_names_the_line(shop: Path) -> None:
    error = error_of(shop, SUPERVISOR + "this is wrong\n" + WEB)
    assert str(error) == (
        "shop.toml: line 3, column 6: Expected '=' after a key in a key/value pair"
    )
    assert (error.line, error.column) == (3, 6)
    error = error_of(shop, SUPERVISOR + WEB + 'directory = "/srv\n')
    assert error.line == 5 and str(error).startswith("shop.toml: line 5, column ")
    # at the end of the document: its last line
    error = error_of(shop, SUPERVISOR + "x = [1,")
    assert error.line == 3 and str(error).startswith("shop.toml: line 3: ")


@pytest.mark.parametrize(
    ("text", "whose"),
    [
        ("[supervisord]\nlogfile=/var/log/s.log\n\n[program:web]\ncommand=/srv/web\n",
         "supervisord's INI"),
        ("; a comment\n[program:web]\ncommand = /srv/web --port 80\n", "supervisord's INI"),
        ("<runner>\n  program /srv/web\n</runner>\n", "zdaemon's ZConfig"),
    ],
)  # fmt: skip
def test_another_supervisors_file_is_named_as_such(shop: Path, text: str, whose: str) -> None:
    """Not TOML, and the file of supervisord or zdaemon: the syntax error says so."""
    message = str(error_of(shop, text))
    assert message.startswith("shop.toml: line ") and "\n" not in message
    assert message.endswith(f" (this looks like {whose}: daemonctx reads TOML,"
                            " see 'coming from' in its docs)")  # fmt: skip


def test_every_foreign_name_points_at_a_key_we_have() -> None:
    """The replacements the errors name exist (kept right through renames)."""
    from daemonctx.supervisor import config

    for foreign, keys in (
        (config._FOREIGN_PROGRAM_KEYS, PROGRAM_KEYS),
        (config._FOREIGN_SUPERVISOR_KEYS, SUPERVISOR_KEYS),
    ):
        for name, (_whose, instead) in foreign.items():
            assert name not in keys
            if instead.startswith("here: ") and not instead.startswith("here: daemonctx "):
                first = instead.removeprefix("here: ").split()[0].rstrip(",")
                table = keys
                if first in ("[supervisor]", "[defaults]"):  # a key of that table
                    table = SUPERVISOR_KEYS if first == "[supervisor]" else PROGRAM_KEYS
                    first = instead.split()[2]
                assert first in table, (name, instead)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("umask = 022", 'umask = "022" or umask = 0o022'),
        ("  umask=0027   # group may not write", 'umask = "0027" or umask = 0o027'),
    ],
)
def test_an_ini_style_octal_umask_says_how_toml_writes_it(
    shop: Path, line: str, message: str
) -> None:
    """``umask = 022`` (INI's, zdaemon's) is no TOML number: the parser's generic
    error gets what to write."""
    error = error_of(shop, SUPERVISOR + WEB + line + "\n")
    assert error.line == 5
    assert str(error).endswith(
        f": Expected newline or end of document after a statement (an octal umask: write {message})"
    )
    assert "octal" not in str(error_of(shop, SUPERVISOR + WEB + "stop_timeout = 010\n"))


def test_the_supervisord_file_in_the_docs_gets_the_error_the_docs_show(shop: Path) -> None:
    """docs/coming-from-supervisord.md: its supervisord.conf (under the caption line
    that names it), given as ours, gets the error it shows, column included."""
    from conftest import ROOT

    text = (ROOT / "docs" / "coming-from-supervisord.md").read_text()
    caption, ini = text.split("```ini\n", 1)[1].split("```", 1)[0].split("\n", 1)
    assert caption == "; supervisord.conf"
    shown = next(line for line in text.splitlines() if line.startswith("supervisord.conf: "))
    assert str(error_of(Path("supervisord.conf"), ini)) == shown  # in the current directory


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('stdout = "/var/log/%(program_name)s.log"',
         "stdout: '%(program_name)s': supervisord's %(NAME)s is not expanded here:"
         " write the program's name itself"),
        ('stderr = { path = "/var/log/web-%(process_num)02d.log" }',
         "stderr: '%(process_num)02d': supervisord's %(NAME)s is not expanded here:"
         " each instance finds its name (NAME:0, NAME:1, ...) in $DAEMONCTX_PROGRAM"),
        ('directory = "%(here)s/web"',
         "directory: '%(here)s': supervisord's %(NAME)s is not expanded here:"
         " write the configuration file's directory itself"),
        ('pidfile = "/run/%(name)s.pid"',
         "pidfile: '%(name)s': supervisord's %(NAME)s is not expanded here:"
         " write the path itself"),
        ('command = ["/srv/web", "--port", "80%(process_num)02d"]',
         "command: '%(process_num)02d': supervisord's %(NAME)s is not expanded here:"
         " each instance finds its name (NAME:0, NAME:1, ...) in $DAEMONCTX_PROGRAM"),
        ('environment = { PATH = "/srv/bin:%(ENV_PATH)s" }',
         "environment: '%(ENV_PATH)s': supervisord's %(NAME)s is not expanded here:"
         " write the value itself"),
    ],
)  # fmt: skip
def test_supervisords_expansions_are_refused_not_taken_literally(
    shop: Path, table: str, message: str
) -> None:
    """``stdout = "/var/log/%(program_name)s.log"`` made a file of that very name:
    refused before anything starts, saying what to write."""
    command = "" if table.startswith("command") else 'command = ["/srv/web"]\n'
    text = SUPERVISOR + f"[program.web]\n{command}{table}\n"
    assert str(error_of(shop, text)) == f"shop.toml: [program.web] {message}"


def test_a_programs_own_format_string_in_its_command_is_kept() -> None:
    """gunicorn's access log format and logging's are %(NAME)s too: a command's
    argument (or a variable) is refused only for supervisord's own names."""
    log_format = '%(h)s %(l)s "%(r)s" %(s)s'
    web = Program(
        "web",
        ["/srv/gunicorn", "--access-logformat", log_format],
        environment={"LOG_FORMAT": "%(asctime)s %(message)s"},
    )
    assert web.command[-1] == log_format
    assert web.environment["LOG_FORMAT"] == "%(asctime)s %(message)s"


def test_a_file_that_cannot_be_read(shop: Path) -> None:
    with pytest.raises(ConfigError, match=r"^shop\.toml: cannot read: No such file or directory$"):
        load(shop)
    shop.write_bytes(b"[supervisor]\ncontrol = '/caf\xe9'\n")
    with pytest.raises(ConfigError, match=r"^shop\.toml: line 2: not UTF-8 text$"):
        load(shop)


def test_the_path_is_shown_as_given(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "shop.toml"
    path.parent.mkdir()
    error = error_of(path, SUPERVISOR + WEB + "restart = 'sometimes'\n")
    assert error.file == str(path)
    assert str(error).startswith(f"{path}: [program.web] restart: ")
    assert load_text(path, SUPERVISOR + WEB).path == str(path)


def test_parse_takes_a_parsed_document() -> None:
    web: dict[str, Any] = {"command": ["/w"]}
    data = {"supervisor": {"control": "/c.sock"}, "program": {"web": web}}
    assert parse(data) == SupervisorConfig("/c.sock", (Program("web", ["/w"]),))
    web["restart"] = "sometimes"
    with pytest.raises(ConfigError, match=r"^program 'web': restart: expected one of "):
        parse(data)
    with pytest.raises(ConfigError, match=r"^x\.toml: \[program\.web\] restart: "):
        parse(data, "x.toml")


# -- the Python API ------------------------------------------------------------------------


def test_program_names_from_python() -> None:
    with pytest.raises(ConfigError) as info:
        Program("web:1", ["/w"])
    assert str(info.value) == (
        "program 'web:1': invalid name: use letters, digits, '_', '.' and '-' (':' marks instances)"
    )
    assert info.value.table == 'program."web:1"'
    with pytest.raises(ConfigError, match=r"^name: expected a string, got 1$"):
        Program(1, ["/w"])  # type: ignore[arg-type]
    assert Program("web.v2_a-1", ["/w"]).instance_names() == ["web.v2_a-1"]


def test_supervisor_config_from_python() -> None:
    web = Program("web", ["/w"])
    absolute = r"^supervisor: control: expected an absolute path, got 'c'$"
    with pytest.raises(ConfigError, match=absolute):
        SupervisorConfig("c", (web,))
    with pytest.raises(ConfigError, match=r"^no programs$"):
        SupervisorConfig("/c", ())
    with pytest.raises(ConfigError, match=r"^program 'web': two programs have this name$"):
        SupervisorConfig("/c", (web, Program("web", ["/v"])))
    with pytest.raises(ConfigError, match=r"^programs: expected a list of Program, got \['/w'\]$"):
        SupervisorConfig("/c", ["/w"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^programs: expected a list of Program, got 5$"):
        SupervisorConfig("/c", 5)  # type: ignore[arg-type]
    config = SupervisorConfig("/c", [web])  # type: ignore[arg-type]
    assert config.programs == (web,) and config.path is None


def test_a_config_error_is_one_picklable_value_error() -> None:
    error = ConfigError("shop.toml", "program.web", "restart", "bad", "web")
    assert isinstance(error, DaemonError) and isinstance(error, ValueError)
    for original in (error, ConfigError("shop.toml", None, None, "oops", line=3, column=2)):
        copy = pickle.loads(pickle.dumps(original))
        assert type(copy) is ConfigError and str(copy) == str(original)
        assert vars(copy) == vars(original)
    assert str(ConfigError("s.toml", None, "a\nb", "unknown key")) == 's.toml: "a\\nb": unknown key'


# -- order -----------------------------------------------------------------------------------


def programs(**after: list[str]) -> list[Program]:
    return [Program(name, ["/x"], after=names) for name, names in after.items()]


def test_start_and_stop_order_in_waves() -> None:
    shop = programs(db=[], cache=[], web=["db", "cache"], worker=["db"], nginx=["web"])
    assert start_order(shop) == [["db", "cache"], ["web", "worker"], ["nginx"]]
    assert stop_order(shop) == [["nginx"], ["web", "worker"], ["db", "cache"]]
    assert start_order(programs(a=[], b=[])) == [["a", "b"]]


def test_a_dependency_cycle_is_named() -> None:
    cyclic = programs(x=["a"], a=["b"], b=["c"], c=["a"], d=[])
    with pytest.raises(ConfigError) as info:
        start_order(cyclic)
    assert str(info.value) == "program 'a': after: dependency cycle: a -> b -> c -> a"
    with pytest.raises(ConfigError, match=r"^program 'x': after: unknown program 'z'$"):
        stop_order(programs(x=["z"]))


# -- the system ------------------------------------------------------------------------------


def test_check_system_finds_missing_users_and_groups(shop: Path) -> None:
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    # a numeric id is taken as it is (not root: only our own, the others are refused)
    numeric = "4242" if os.geteuid() == 0 else str(os.getegid())
    text = SUPERVISOR + f"control_group = '{group}'\n" + WEB
    check_system(load_text(shop, text + f"user = '{user}'\ngroup = '{numeric}'\n"))
    missing = "no-such-user-daemonctx"
    config = load_text(shop, SUPERVISOR + WEB + f"user = '{missing}'\n")
    with pytest.raises(ConfigError) as info:
        check_system(config)
    assert str(info.value) == f"shop.toml: [program.web] user: no such user '{missing}'"
    config = load_text(shop, SUPERVISOR + f"observer_group = '{missing}'\n" + WEB)
    with pytest.raises(ConfigError, match=r"^shop\.toml: \[supervisor\] observer_group: no such"):
        check_system(config)


# -- include: more files of [program.NAME] tables ----------------------------------------

INCLUDE = SUPERVISOR + 'include = ["conf.d/*.toml"]\n'


def conf_d(files: dict[str, str]) -> None:
    """conf.d/NAME in the current directory, with these texts."""
    Path("conf.d").mkdir(exist_ok=True)
    for name, text in files.items():
        Path("conf.d", name).write_text(text)


def test_include_reads_each_matching_file_in_name_order_after_the_main_one(shop: Path) -> None:
    conf_d(
        {
            "20-db.toml": '[program.db]\ncommand = ["/srv/db"]\n',
            "10-cache.toml": '[program.cache]\ncommand = ["/srv/cache"]\nafter = ["web"]\n',
            "notes.txt": "not TOML, and not matched",
            ".20-db.toml.swp": "an editor's file, hidden: not matched",
        }
    )
    config = load_text(shop, INCLUDE + WEB)
    assert [program.name for program in config.programs] == ["web", "cache", "db"]
    assert config.included == ("conf.d/10-cache.toml", "conf.d/20-db.toml")
    assert (
        config.file_of("cache") == "conf.d/10-cache.toml" and config.file_of("web") == "shop.toml"
    )
    assert start_order(config.programs) == [["web", "db"], ["cache"]]


def test_include_with_nothing_to_match_is_no_error_but_a_missing_path_is(shop: Path) -> None:
    config = load_text(shop, INCLUDE + WEB)
    assert [program.name for program in config.programs] == ["web"] and config.included == ()
    assert str(error_of(shop, SUPERVISOR + 'include = ["web.toml"]\n' + WEB)) == (
        "shop.toml: [supervisor] include: web.toml: no such file"
    )
    # only programs from included files: fine
    conf_d({"web.toml": WEB})
    assert [program.name for program in load_text(shop, INCLUDE).programs] == ["web"]


def test_include_relative_to_the_including_file_and_never_that_file_itself(
    tmp_path: Path,
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "web.toml").write_text(WEB)
    main = etc / "shop.toml"
    main.write_text(SUPERVISOR + 'include = ["*.toml"]\n')  # matches shop.toml too
    config = load(main)
    assert [program.name for program in config.programs] == ["web"]
    assert config.included == (str(etc / "web.toml"),)


INCLUDE_ERRORS: list[tuple[str, str, str]] = [
    # (main file's programs, conf.d/x.toml, error)
    (WEB, WEB, "conf.d/x.toml: [program.web] two programs have this name (the other in shop.toml)"),
    ("", '[program.web]\ncommand = ["/srv/web"]\nrestart = "sometimes"\n',
     "conf.d/x.toml: [program.web] restart: expected one of always, on-failure, never,"
     " got 'sometimes'"),
    ("", SUPERVISOR + WEB,
     "conf.d/x.toml: [supervisor] only [program.NAME] and [group.NAME] tables may be in an"
     " included file"),
    ("", WEB + "[unix_http_server]\nfile = '/run/s.sock'\n",
     "conf.d/x.toml: [unix_http_server] unknown table (supervisord's; here: [supervisor] control)"),
    ("", WEB + "after = ['dbb']\n",
     "conf.d/x.toml: [program.web] after: unknown program 'dbb'"),
    ("", 'command = "x"\n', "conf.d/x.toml: command: unknown key"),
    ("", "this is wrong\n", "conf.d/x.toml: line 1, column 6: Expected '=' after a key"),
    ("[program.db]\ncommand = ['/srv/db']\npidfile = '/run/x.pid'\n",
     WEB + "pidfile = '/run/x.pid'\n",
     "conf.d/x.toml: [program.web] pidfile: '/run/x.pid' is the pidfile of program 'db' too"),
]  # fmt: skip


@pytest.mark.parametrize(("main", "included", "message"), INCLUDE_ERRORS)
def test_an_error_in_an_included_file_names_that_file(
    shop: Path, main: str, included: str, message: str
) -> None:
    conf_d({"x.toml": included})
    assert str(error_of(shop, INCLUDE + main)).startswith(message)


@pytest.mark.parametrize(
    ("value", "reason"),
    [("'conf.d/*.toml'", "expected a list of paths or patterns, got 'conf.d/*.toml'"),
     ("['']", "expected a list of paths or patterns, got ['']"),
     ("[1]", "expected a list of paths or patterns, got [1]")],
)  # fmt: skip
def test_a_bad_include_value(shop: Path, value: str, reason: str) -> None:
    message = str(error_of(shop, SUPERVISOR + f"include = {value}\n" + WEB))
    assert message == f"shop.toml: [supervisor] include: {reason}"


def test_load_control_reads_the_supervisor_table_only(shop: Path) -> None:
    """ctl --config: a broken program or included file does not hide the socket."""
    conf_d({"x.toml": "this is wrong\n"})
    shop.write_text(INCLUDE + WEB + 'restart = "sometimes"\n')
    assert load_control(shop) == "/run/shop/control.sock"
    shop.write_text('[supervisor]\ncontrol = "run/control.sock"\n')
    with pytest.raises(ConfigError, match=r"^shop.toml: \[supervisor\] control: expected an abs"):
        load_control(shop)


@pytest.mark.parametrize(
    "broken",
    [
        "[program.x\n",  # a table being written
        '[program.x]\ncommand = ["/srv/x"\n',
        "[program.x]\ncommand = \n",
        '[program.web]\ncommand = ["/srv/twice"]\n',  # a table defined twice
    ],
)
def test_load_control_reads_a_sound_supervisor_table_of_a_file_that_is_not_toml(
    shop: Path, broken: str
) -> None:
    """A TOML mistake outside [supervisor] does not hide the socket either: the
    [supervisor] table, read alone, gives it."""
    shop.write_text("# shop\n" + SUPERVISOR + WEB + broken)
    assert load_control(shop) == "/run/shop/control.sock"
    shop.write_text(WEB + broken + SUPERVISOR)  # [supervisor] last
    assert load_control(shop) == "/run/shop/control.sock"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[supervisor]\ncontrol = "/run/shop/control.sock\n[program.x\n', "line 2"),
        (
            '[supervisor]\ncontrol = "/run/a.sock"\n[supervisor]\ncontrol = "/run/b.sock"\n',
            "line 3",
        ),
        ('[program.x\ncontrol = "/run/x.sock"\n', "line 1"),  # no [supervisor] table
        ('x = """\n[supervisor]\ncontrol = "/run/x.sock"\n"""\n[program.x\n', "line 5"),
    ],
)
def test_load_control_gives_the_file_s_error_when_its_supervisor_table_is_not_sound(
    shop: Path, text: str, reason: str
) -> None:
    """A mistake in [supervisor] itself, a file with no such table or two, or
    one whose [supervisor] is no table (a line of a string): the file's error,
    with its line, never a socket guessed."""
    shop.write_text(text)
    with pytest.raises(ConfigError, match=rf"^shop.toml: {reason}, "):
        load_control(shop)


# -- groups: names that stand for programs in ctl ------------------------------------------

DB = '[program.db]\ncommand = ["/srv/db"]\n'


def test_groups_name_programs_of_any_file(shop: Path) -> None:
    conf_d({"db.toml": DB})
    config = load_text(shop, INCLUDE + WEB + '[group.shop]\nprograms = ["web", "db"]\n')
    assert config.groups == {"shop": ("web", "db")}
    assert SupervisorConfig("/run/c.sock", config.programs, groups={"x": ["db"]}).groups == {
        "x": ("db",)
    }


GROUP_ERRORS: list[tuple[str, str]] = [
    ("[group.shop]\nprograms = ['wbe']\n",
     "shop.toml: [group.shop] programs: unknown program 'wbe' (did you mean 'web'?)"),
    ("[group.shop]\nprograms = []\n", "shop.toml: [group.shop] programs: a group of no program"),
    ("[group.shop]\nprograms = 'web'\n",
     "shop.toml: [group.shop] programs: expected a list of program names, got 'web'"),
    ("[group.shop]\n", "shop.toml: [group.shop] programs: required key is missing"),
    ("[group.shop]\nprograms = ['web']\npriority = 1\n",
     "shop.toml: [group.shop] priority: unknown key"),
    ("[group.web]\nprograms = ['web']\n", "shop.toml: [group.web] 'web' is a program's name too"),
    ("[group.all]\nprograms = ['web']\n",
     "shop.toml: [group.all] invalid name: 'all' means every program"),
    (f"[group.{'g' * 256}]\nprograms = ['web']\n",
     f"shop.toml: [group.{'g' * 40}...] invalid name: at most 255 characters, not 256"),
    ("[group.'a b']\nprograms = ['web']\n",
     "shop.toml: [group.\"a b\"] invalid name: use letters, digits, '_', '.' and '-'"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), GROUP_ERRORS)
def test_a_bad_group(shop: Path, text: str, message: str) -> None:
    assert str(error_of(shop, SUPERVISOR + WEB + text)) == message


def test_a_group_may_come_from_an_included_file_and_name_programs_of_any_file(
    shop: Path,
) -> None:
    """As supervisord's conf.d files may hold a [group:x]: a package's file brings
    its programs and the group that restarts them together."""
    conf_d(
        {
            "shop.toml": "[program.worker]\ncommand = ['/srv/worker']\n"
            "[group.shop]\nprograms = ['web', 'worker']\n",
            "z.toml": "[group.back]\nprograms = ['worker']\n",
        }
    )
    config = load_text(shop, INCLUDE + WEB + "[group.front]\nprograms = ['web']\n")
    assert config.groups == {
        "front": ("web",),
        "shop": ("web", "worker"),
        "back": ("worker",),
    }


@pytest.mark.parametrize(
    ("main", "included", "message"),
    [
        (
            "[group.shop]\nprograms = ['web']\n",
            "[group.shop]\nprograms = ['web']\n",
            "conf.d/g.toml: [group.shop] two groups have this name (the other in shop.toml)",
        ),
        (
            "",
            "[group.shop]\nprograms = ['wbe']\n",
            "conf.d/g.toml: [group.shop] programs: unknown program 'wbe' (did you mean 'web'?)",
        ),
        (
            "",
            "[group.web]\nprograms = ['web']\n",
            "conf.d/g.toml: [group.web] 'web' is a program's name too",
        ),
    ],
    ids=["twice", "unknown-program", "program-s-name"],
)
def test_a_bad_group_in_an_included_file_names_that_file(
    shop: Path, main: str, included: str, message: str
) -> None:
    conf_d({"g.toml": included})
    assert str(error_of(shop, INCLUDE + WEB + main)) == message


# -- [defaults]: keys every program gets unless it sets them ---------------------------------


def test_defaults_apply_to_every_program_of_every_file_and_a_program_s_own_keys_win(
    shop: Path,
) -> None:
    conf_d({"db.toml": '[program.db]\ncommand = ["/srv/db"]\nstop_timeout = 5\n'})
    config = load_text(
        shop,
        INCLUDE
        + "[defaults]\n"
        + 'stop_timeout = 30\non_failure = ["/srv/alert"]\n'
        + 'environment = { SHOP_ENV = "prod", TIER = "web" }\n'
        + WEB
        + 'environment = { TIER = "front" }\n',
    )
    web, db = config.programs
    assert (web.stop_timeout, db.stop_timeout) == (30.0, 5.0)
    assert web.on_failure == db.on_failure == ("/srv/alert",)
    # environment tables merge, the program's variables winning
    assert web.environment == {"SHOP_ENV": "prod", "TIER": "front"}
    assert db.environment == {"SHOP_ENV": "prod", "TIER": "web"}


def test_a_program_s_stop_signal_drops_a_default_stop_ladder_and_the_reverse(
    shop: Path,
) -> None:
    config = load_text(
        shop,
        SUPERVISOR
        + '[defaults]\nstop = ["TERM", 5, "KILL"]\n'
        + WEB
        + 'stop_signal = "INT"\n'
        + '[program.db]\ncommand = ["/srv/db"]\n',
    )
    web, db = config.programs
    assert (web.stop, web.stop_signal) == (None, signal.SIGINT)
    assert db.stop == (signal.SIGTERM, 5.0, signal.SIGKILL)
    web = load_text(
        shop,
        SUPERVISOR + '[defaults]\nstop_signal = "INT"\n' + WEB + 'stop = ["QUIT", 3, "KILL"]\n',
    ).programs[0]
    assert (web.stop, web.stop_signal) == ((signal.SIGQUIT, 3.0, signal.SIGKILL), signal.SIGTERM)
    # the program's own stop_timeout = 300 wins over a default ladder, and the reverse
    text = SUPERVISOR + '[defaults]\nstop = ["TERM", 1, "KILL"]\n' + WEB + "stop_timeout = 300\n"
    web = load_text(shop, text).programs[0]
    assert (web.stop, web.stop_timeout) == (None, 300.0)
    text = SUPERVISOR + "[defaults]\nstop_timeout = 300\n" + WEB + 'stop = ["TERM", 1, "KILL"]\n'
    web = load_text(shop, text).programs[0]
    assert web.stop == (signal.SIGTERM, 1.0, signal.SIGKILL)


@pytest.mark.parametrize("table", ["[program.web]\ncommand = ['/x']", "[defaults]"])
def test_a_table_with_a_ladder_and_a_stop_timeout_is_refused(shop: Path, table: str) -> None:
    """The ladder has its own times: the stop_timeout beside it would be ignored."""
    text = SUPERVISOR + f"{table}\nstop = ['TERM', 5, 'KILL']\nstop_timeout = 30\n"
    if table == "[defaults]":
        text += WEB
    where = "[program.web]" if "program" in table else "[defaults]"
    assert str(error_of(shop, text)) == (
        f"shop.toml: {where} stop_timeout: give either stop (a ladder, with its own times)"
        " or stop_timeout, not both"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'command = ["/srv/x"]',
            "[defaults] command: not in [defaults]: each program names its own",
        ),
        ('after = ["db"]', "[defaults] after: not in [defaults]: each program names its own"),
        ('pidfile = "/run/x.pid"', "[defaults] pidfile: not in [defaults]: two programs cannot"),
        ("stop_timout = 3", "[defaults] stop_timout: unknown key (did you mean 'stop_timeout'?)"),
        ("RestartSec = 3", "[defaults] RestartSec: unknown key (systemd's; here: restart_delay)"),
        ("stop_timeout = -1", "[defaults] stop_timeout: expected a number of seconds > 0, got -1"),
        (
            'restart = "always"',
            '[program.web] restart: a one-shot (ready = "exited") cannot restart = "always"'
            " (from [defaults])",
        ),
    ],
)
def test_a_bad_default_is_named_where_it_is(shop: Path, text: str, message: str) -> None:
    error = error_of(shop, SUPERVISOR + f"[defaults]\n{text}\n" + WEB + 'ready = "exited"\n')
    assert str(error).startswith(f"shop.toml: {message}"), error


def test_defaults_in_an_included_file_or_not_a_table_are_refused(shop: Path) -> None:
    conf_d({"d.toml": "[defaults]\nstop_timeout = 3\n"})
    assert str(error_of(shop, INCLUDE + WEB)) == (
        "conf.d/d.toml: [defaults] only [program.NAME] and [group.NAME] tables may be in an"
        " included file"
    )
    assert str(error_of(shop, "defaults = 3\n" + SUPERVISOR + WEB)) == (
        "shop.toml: defaults: expected a table, got 3"
    )


def test_a_changed_default_is_a_change_of_each_program_it_applies_to(shop: Path) -> None:
    from daemonctx.supervisor.core import reload_plan

    db = '[program.db]\ncommand = ["/srv/db"]\nstop_timeout = 5\n'
    old = load_text(shop, SUPERVISOR + "[defaults]\nstop_timeout = 30\n" + WEB + db)
    new = load_text(shop, SUPERVISOR + "[defaults]\nstop_timeout = 20\n" + WEB + db)
    plan = reload_plan(old, new)
    assert [(change["name"], change["restart"]) for change in plan["changed"]] == [("web", False)]


# -- what is read: regular files, of a bounded size ----------------------------------------


def test_a_fifo_device_or_deep_nesting_is_one_line_never_a_hang(shop: Path) -> None:
    """A FIFO among the included files (even root's own) is not opened for a
    blocking read; /dev/zero is not read without end; [[[[...]]]] is not a traceback."""
    conf_d({})
    os.mkfifo("conf.d/x.toml")
    assert str(error_of(shop, INCLUDE + WEB)) == "conf.d/x.toml: not a regular file"
    for path, message in (
        ("/dev/zero", "/dev/zero: not a regular file"),
        ("deep.toml", "deep.toml: not TOML: nested too deeply"),
        ("huge.toml", "huge.toml: larger than 16 MiB: not a configuration"),
    ):
        if path == "deep.toml":
            Path(path).write_text(SUPERVISOR + "x = " + "[" * 100000 + "]" * 100000 + "\n")
        if path == "huge.toml":
            with Path(path).open("wb") as file:
                file.truncate(17 << 20)  # sparse
        with pytest.raises(ConfigError) as caught:
            load(path)
        assert str(caught.value) == message


def test_a_byte_order_mark_is_no_error(shop: Path) -> None:
    shop.write_bytes(b"\xef\xbb\xbf" + (SUPERVISOR + WEB).encode())
    assert [program.name for program in load(shop).programs] == ["web"]


@pytest.mark.parametrize(
    ("defaults", "program", "message"),
    [
        ('user = "no-such-user-here"', "",
         "user: no such user 'no-such-user-here' (from [defaults])"),
        ('environment_file = "/nonexistent.env"', "",
         "environment_file: /nonexistent.env: No such file or directory (from [defaults])"),
        ('ready = "exited"', 'restart = "always"',
         'restart: a one-shot (ready = "exited") cannot restart = "always"'
         " (ready from [defaults])"),
        ("instances = 2", 'pidfile = "/run/x.pid"',
         "pidfile: 2 instances cannot share one pidfile (instances from [defaults])"),
    ],
)  # fmt: skip
def test_a_mistake_a_default_makes_says_so(
    shop: Path, defaults: str, program: str, message: str
) -> None:
    """Checked at load or on the system: either way the default is named, and the
    file it is in when the program is in an included one."""
    text = SUPERVISOR + f"[defaults]\n{defaults}\n" + WEB + f"{program}\n"
    with pytest.raises(ConfigError) as caught:
        check_system(load_text(shop, text))
    assert str(caught.value) == f"shop.toml: [program.web] {message}"
    conf_d({"web.toml": WEB + f"{program}\n"})
    with pytest.raises(ConfigError) as caught:
        check_system(load_text(shop, INCLUDE + f"[defaults]\n{defaults}\n"))
    expected = message.replace("[defaults])", "[defaults] in shop.toml)")
    assert str(caught.value) == f"conf.d/web.toml: [program.web] {expected}"


# -- the constructors' types, for type checkers ---------------------------------------------


def _typed_init_parameters(class_name: str) -> list[tuple[str, bool]]:
    """The parameters (name, has a default) of the ``__init__`` that ``class_name``
    declares under ``if TYPE_CHECKING:`` in config.py."""
    import ast

    import daemonctx.supervisor.config as config_module

    tree = ast.parse(Path(config_module.__file__).read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
    for node in cls.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    args = item.args.args[1:]  # not self
                    first_default = len(args) - len(item.args.defaults)
                    return [(arg.arg, index >= first_default) for index, arg in enumerate(args)]
    raise AssertionError(f"{class_name} declares no typed __init__")


@pytest.mark.parametrize("cls", [Program, SupervisorConfig], ids=lambda cls: cls.__name__)
def test_the_typed_constructor_takes_every_field_in_order(cls: type) -> None:
    """The ``__init__`` type checkers see (the forms each key accepts) names the
    dataclass's fields, in their order, with a default where the field has one: a
    field added to one and not the other fails here."""
    from dataclasses import MISSING

    expected = [
        (item.name, item.default is not MISSING or item.default_factory is not MISSING)
        for item in fields(cls)
        if item.init
    ]
    assert _typed_init_parameters(cls.__name__) == expected


def test_the_documented_api_forms_run_and_type_check() -> None:
    """tests/api_types.py builds programs in every form the documentation shows
    (``stop_signal="INT"``, ``umask="027"``, a stop ladder, limits, a log table as a
    dict, a user id, paths as ``Path``): they are accepted at run time, and, where
    mypy is installed (the lint extras; CI runs it on that file), ``mypy --strict``
    accepts them too (it refused 11 of them)."""
    import importlib.util
    import runpy

    path = Path(__file__).parent / "api_types.py"
    names = runpy.run_path(str(path))
    assert [program.name for program in names["programs"]][:2] == ["web", "worker"]
    assert names["programs"][0].stop_signal == signal.SIGINT
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[lint]')")
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _doc_table_rows(page: str, header: str, count: int = 1) -> list[tuple[str, str]]:
    """The (first column, second column) rows of the first ``count`` tables of
    ``docs/PAGE`` whose header line starts with ``header``; the first column
    without its remarks in parentheses."""
    from conftest import ROOT

    lines = (ROOT / "docs" / page).read_text().splitlines()
    rows: list[tuple[str, str]] = []
    starts = [i for i, line in enumerate(lines) if line.startswith(header)][:count]
    assert len(starts) == count, (page, header)
    for start in starts:
        for line in lines[start + 2 :]:
            if not line.startswith("|"):
                break
            first, second = line.strip("|").split(" | ", 1)
            rows.append((re.sub(r"\([^)]*\)", "", first), second))  # not "(default `zdsock`)"
    return rows


def _foreign_names_in_docs() -> list[tuple[str, str, str, str]]:
    """(whose, where: "program", "supervisor" or "table", name, what the doc says
    instead) for every directive, key or table that the 'coming from' pages map."""
    names = []
    for first, second in _doc_table_rows("coming-from-systemd.md", "| systemd | daemonctx |"):
        for span in re.findall(r"`([^`]+)`", first):
            match = re.match(r"(?:\[\w+\] )?([A-Z]\w+)=", span)
            if match:
                names.append(("systemd", "program", match.group(1), second))
    rows = _doc_table_rows("coming-from-supervisord.md", "| supervisord | daemonctx |", 2)
    for first, second in rows:
        where = "program"  # "`[supervisord] loglevel`, `silent`": keys of [supervisord]
        for span in re.findall(r"`([^`]+)`", first):
            table = re.fullmatch(r"\[([\w:-]+)\](?: (\w+))?.*", span)
            if table:
                names.append(("supervisord", "table", table.group(1), second))
                if table.group(1) in ("supervisord", "unix_http_server") and table.group(2):
                    where = "supervisor"
                    names.append(("supervisord", where, table.group(2), second))
                continue
            name = span.split("=")[0].strip()
            if re.fullmatch(r"[a-z]\w*[a-z]", name):
                names.append(("supervisord", where, name, second))
                if name.startswith("stdout_") and "`stderr_` twins" in first:
                    twin = "stderr_" + name.removeprefix("stdout_")
                    names.append(
                        ("supervisord", "program", twin, second.replace("stdout", "stderr"))
                    )
    for first, second in _doc_table_rows("coming-from-zdaemon.md", "| zdaemon (`<runner>` key"):
        for span in re.findall(r"`([^`]+)`", first):
            if re.fullmatch(r"[a-z][\w-]*", span):
                names.append(("zdaemon", "program", span, second))
    return names


def test_every_name_the_coming_from_pages_map_gets_a_hint_in_its_error(shop: Path) -> None:
    """docs/coming-from-*.md's tables map systemd's directives and supervisord's and
    zdaemon's keys to ours; written in our file, each is named in the error with
    what to write (StandardOutput, ExecReload, KillMode, WantedBy... said only
    "unknown key"). A "here: KEY" hint names a key the doc's row names too."""
    said: dict[tuple[str, str, str], str] = {}  # a name in several rows: all they say
    for whose, where, name, instead in _foreign_names_in_docs():
        said[whose, where, name] = said.get((whose, where, name), "") + instead
    assert len(said) > 90
    checked = set()
    for (whose, where, name), instead in said.items():
        if name in {"program": PROGRAM_KEYS, "supervisor": SUPERVISOR_KEYS}.get(where, {}):
            continue  # ours too: `user`, `directory`, `umask`, `pidfile`, ...
        if where == "table":
            text = SUPERVISOR + WEB + f"[{name}]\n"
            if ":" in name:  # [program:x]: no TOML, and the error says whose it is
                message = str(error_of(shop, text))
                assert message.endswith(f"(this looks like {whose}'s INI: daemonctx reads TOML,"
                                        " see 'coming from' in its docs)"), message  # fmt: skip
                continue
            prefix = f"shop.toml: [{name}] unknown table ({whose}'s; "
        elif where == "supervisor":
            text = SUPERVISOR + f'{name} = "x"\n' + WEB
            prefix = f"shop.toml: [supervisor] {name}: unknown key ({whose}'s; "
        else:
            text = SUPERVISOR + WEB + f'{name} = "x"\n'
            prefix = f"shop.toml: [program.web] {name}: unknown key ({whose}'s; "
        message = str(error_of(shop, text))
        assert message.startswith(prefix) and message.endswith(")"), (name, message)
        hint = message.removeprefix(prefix)[:-1]
        if hint.startswith("here: ") and not hint.startswith("here: daemonctx "):
            first = hint.split()[1].rstrip(",")
            assert first in instead, (name, hint, instead)
        checked.add(name)
    for name in ("StandardOutput", "ExecReload", "KillMode", "WantedBy", "stderr_syslog"):
        assert name in checked


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ('StandardOutput = "append:/var/log/web.log"',
         'systemd\'s; here: stdout = "FILE", "null" or "inherit" (the journal)'),
        ('ExecReload = "/bin/kill -HUP $MAINPID"',
         "systemd's; here: daemonctx ctl signal HUP NAME"),
        ('WantedBy = "multi-user.target"', "systemd's; here: autostart = true, the default"),
    ],
)  # fmt: skip
def test_supervise_names_a_systemd_directive_and_what_to_write(
    supervisors: Supervisors, line: str, hint: str
) -> None:
    """The tester's repro: `daemonctx supervise` on a file with a directive that
    coming-from-systemd.md maps refuses it in one line saying what to write."""
    supervisors.config({"web": {"command": ["/bin/true"]}})
    with supervisors.config_path.open("a") as file:
        file.write(line + "\n")
    result = supervisors.supervise("--foreground")
    name = line.split()[0]
    assert result.returncode == 1, result
    assert result.stderr == (
        f"daemonctx: error: {supervisors.config_path}: [program.web] {name}: unknown key ({hint})\n"
    )
