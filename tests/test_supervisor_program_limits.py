"""A program's ``limits`` (systemd's LimitNOFILE= and the like, runit's chpst -o)
and ``nice``: the values, unit-tested; on real processes, what /proc says of the
program, set before it becomes its user (so root may raise a hard limit for it);
and what a supervisor that is not root is refused before anything starts."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ENV,
    NOBODY,
    NOBODY_ENV,
    Supervisors,
    needs_root,
    proc_stat,
    proc_status,
    python_for_nobody,
)

from daemonctx.supervisor.config import (
    UNLIMITED,
    ConfigError,
    Program,
    SupervisorConfig,
    check_system,
)
from daemonctx.supervisor.core import reload_plan

pytestmark = pytest.mark.timeout(30)

SLEEP = shutil.which("sleep") or "/bin/sleep"
PRLIMIT = shutil.which("prlimit")
SETPRIV = shutil.which("setpriv")


def program(**keys: Any) -> Program:
    return Program("web", command=[SLEEP, "1000"], **keys)


# -- the values ------------------------------------------------------------------------------


def test_a_limit_is_a_number_infinity_or_soft_and_hard() -> None:
    web = program(limits={"nofile": 65536, "core": "infinity", "nproc": [512, 1024]}, nice=10)
    assert web.limits == {
        "nofile": (65536, 65536),
        "core": (UNLIMITED, UNLIMITED),
        "nproc": (512, 1024),
    }
    assert web.nice == 10
    assert program(limits={"stack": [8388608, "unlimited"]}).limits["stack"] == (8388608, -1)


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ({"limits": {"nofiles": 10}}, "limits: unknown limit 'nofiles' (did you mean 'nofile'?)"),
        ({"limits": {"nofile": -1}}, "limits: nofile: expected an integer >= 0, 'infinity'"),
        ({"limits": {"nofile": True}}, "limits: nofile: expected an integer >= 0, 'infinity'"),
        ({"limits": {"nofile": [10]}}, "limits: nofile: expected [soft, hard], got [10]"),
        ({"limits": {"nofile": [20, 10]}}, "limits: nofile: the soft limit is above the hard one"),
        ({"limits": {"core": ["infinity", 10]}}, "limits: core: the soft limit is above"),
        ({"limits": 65536}, "limits: expected a table such as { nofile = 65536 }, got 65536"),
        ({"nice": 20}, "nice: expected an integer from -20 to 19, got 20"),
        ({"nice": "low"}, "nice: expected an integer from -20 to 19, got 'low'"),
    ],
)
def test_bad_values(keys: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        program(**keys)
    assert str(caught.value).startswith(f"program 'web': {reason}"), caught.value


def test_a_changed_limit_or_priority_restarts_the_program_at_a_reload() -> None:
    def config(web: Program) -> SupervisorConfig:
        return SupervisorConfig(control="/run/shop.sock", programs=(web,))

    for old, new in (({}, {"nice": 5}), ({"limits": {"nofile": 10}}, {"limits": {"nofile": 20}})):
        plan = reload_plan(config(program(**old)), config(program(**new)))
        assert [(change["name"], change["restart"]) for change in plan["changed"]] == [
            ("web", True)
        ]


# -- on real processes -----------------------------------------------------------------------


def limits_of(pid: int) -> dict[str, tuple[str, str]]:
    """/proc/PID/limits: {"Max open files": ("8192", "8192"), ...}."""
    found = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        match = re.match(r"(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)", line)
        if match:
            found[match.group(1)] = (match.group(2), match.group(3))
    return found


def capable(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


CAP_SYS_NICE, CAP_SYS_RESOURCE = 23, 24


@needs_root
@pytest.mark.skipif(not capable(CAP_SYS_NICE), reason="needs CAP_SYS_NICE")
def test_a_program_s_limits_and_priority_are_set_before_it_becomes_its_user(
    supervisors: Supervisors,
) -> None:
    """web runs as nobody at nice -5, which only a privileged process may give:
    set before the user changes (Popen would change the user first: EACCES).
    Its limits are its own; another program keeps the supervisor's."""
    supervisors.config(
        {
            "web": {
                "command": [SLEEP, "1000"],
                "user": str(NOBODY),
                "limits": {"nofile": [512, 1024], "nproc": [100, 200]},
                "nice": -5,
            },
            "batch": {"command": [SLEEP, "1001"], "nice": 10},
            "plain": {"command": [SLEEP, "1002"]},
        }
    )
    supervisors.foreground()
    web, batch, plain = (supervisors.status(name).pid for name in ("web", "batch", "plain"))
    assert web is not None and batch is not None and plain is not None
    limits = limits_of(web)
    assert limits["Max open files"] == ("512", "1024")
    assert limits["Max processes"] == ("100", "200")
    assert proc_status(web)["Uid"].split()[:2] == [str(NOBODY), str(NOBODY)]
    assert proc_stat(web)[16] == "-5"  # nice, /proc/PID/stat's 19th field
    assert proc_stat(batch)[16] == "10"
    assert proc_stat(plain)[16] == "0"
    assert limits_of(plain)["Max processes"] != ("100", "200")


@needs_root
@pytest.mark.skipif(PRLIMIT is None, reason="needs prlimit (util-linux)")
@pytest.mark.skipif(not capable(CAP_SYS_RESOURCE), reason="needs CAP_SYS_RESOURCE")
def test_root_raises_a_program_s_hard_limit_above_its_own(supervisors: Supervisors) -> None:
    supervisors.config(
        {"web": {"command": [SLEEP, "1000"], "user": str(NOBODY), "limits": {"nofile": 8192}}}
    )
    supervisors.foreground(prefix=[PRLIMIT, "--nofile=1024:2048", "--"])
    web = supervisors.status("web").pid
    assert web is not None and limits_of(web)["Max open files"] == ("8192", "8192")


CHECK_EACH = """
import os, resource, sys
from daemonctx.supervisor.config import ConfigError, Program, SupervisorConfig, check_system

def check(**keys):
    web = Program("web", command=["/bin/sleep"], **keys)
    try:
        check_system(SupervisorConfig(control="/run/shop.sock", programs=(web,)))
        print("ok")
    except ConfigError as exc:
        print(exc)
"""

NOT_ROOT_CHECK = (
    CHECK_EACH
    + """
resource.setrlimit(resource.RLIMIT_NICE, (0, 0))
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
for keys in ({"limits": {"nofile": hard + 1}}, {"nice": -1}, {"limits": {"nofile": 64}, "nice": 5}):
    check(**keys)
print(hard)
"""
)


def test_a_supervisor_without_the_capabilities_is_refused_what_they_allow(
    tmp_path: Path,
) -> None:
    """Checked before anything starts: a hard limit above its own, a priority
    above what RLIMIT_NICE allows it, without CAP_SYS_RESOURCE and CAP_SYS_NICE
    (root with an empty bounding set has none, as in many containers)."""
    script = tmp_path / "check.py"
    script.write_text(NOT_ROOT_CHECK)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if SETPRIV is None:
            pytest.skip("needs setpriv (util-linux) to drop root's capabilities")
        prefix = [SETPRIV, "--bounding-set=-all", "--"]
    result = subprocess.run(
        [*prefix, sys.executable, str(script)], capture_output=True, text=True, env=ENV, check=False
    )
    assert result.returncode == 0, result.stderr
    *lines, hard = result.stdout.splitlines()
    if int(hard) == resource.RLIM_INFINITY:
        pytest.skip("no finite open-file limit to go above")
    assert lines == [
        f"program 'web': limits: nofile: above the supervisor's hard limit ({hard}),"
        " without CAP_SYS_RESOURCE",
        "program 'web': nice: below 0, the most the supervisor may give, without CAP_SYS_NICE",
        "ok",
    ]


def test_an_open_file_limit_above_the_kernel_s_is_refused() -> None:
    most = int(Path("/proc/sys/fs/nr_open").read_text())
    for limit, got in ((most + 1, str(most + 1)), ("infinity", "infinity")):
        web = program(limits={"nofile": limit})
        with pytest.raises(ConfigError) as caught:
            check_system(SupervisorConfig(control="/run/shop.sock", programs=(web,)))
        assert str(caught.value) == (
            f"program 'web': limits: nofile: at most {most} here (fs.nr_open), got {got}"
        )


OTHER_USER_CHECK = (
    CHECK_EACH
    + """
for keys in ({"user": "root"}, {"group": "0"}, {"user": str(os.geteuid())}):
    check(**keys)
"""
)


def test_a_supervisor_that_is_not_root_is_refused_another_user_before_anything_starts(
    open_dir: Path,
) -> None:
    """It would fail at every start (setuid), said as "cannot change to directory /".
    As root, the check runs as nobody, from a directory nobody can reach (pytest's
    tmp_path is inside a 0700 one)."""
    script = open_dir / "check.py"
    script.write_text(OTHER_USER_CHECK)
    as_nobody: dict[str, Any] = {}
    python, env = sys.executable, ENV
    if os.geteuid() == 0:
        script.chmod(0o644)
        python, env = python_for_nobody(script), NOBODY_ENV
        as_nobody = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    result = subprocess.run(
        [python, str(script)], capture_output=True, text=True, env=env, check=False, **as_nobody
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "program 'web': user: 'root': only a supervisor running as root can run a program as"
        " another",
        "program 'web': group: '0': only a supervisor running as root can run a program as another",
        "ok",
    ]
