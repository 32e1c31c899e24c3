"""The package's shape: layers whose imports point down, a lean start-up path,
and the API promises that go with them (docs/architecture.md)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ENV, ROOT, run_script

from daemonctx import DaemonStartupError
from daemonctx.control import ControlError
from daemonctx.errors import CommandError

PACKAGE = ROOT / "daemonctx"

# The layers of docs/architecture.md, lowest first. A module may import its own
# layer and the ones below, never one above; nothing but __main__ imports the cli.
LAYERS: dict[str, int] = {
    "errors": 0,
    "types": 0,  # annotations only: imported under TYPE_CHECKING
    "process": 1,
    "pidfd": 1,
    "procfs": 1,
    "paths": 1,
    "signals": 1,
    "limits": 1,
    "executable": 1,
    "options": 2,
    "handoff": 2,
    "pidfile": 2,
    "systemd": 2,
    "context": 2,
    "identity": 3,
    "control": 3,
    "commands": 3,
    "program": 3,
    "service": 3,
    "supervisor": 3,  # daemonctx/supervisor/: config, state, protocol, ... (layer 3 and below)
    "": 4,  # the package itself (daemonctx/__init__.py): the public API
    "cli": 5,
    "__main__": 6,
}

# What `import daemonctx` and a DaemonContext with our pidfile load: the start-up
# path, paid on every daemon start (the launcher waits for the daemon).
START_UP_MODULES = {
    "daemonctx",
    "daemonctx.context",
    "daemonctx.errors",
    "daemonctx.handoff",
    "daemonctx.options",
    "daemonctx.pidfile",
    "daemonctx.process",
}
# Imported in the foreground of open() when the pidfile's path has a symlink to check,
# and on failure paths.
FOREGROUND_MODULES = {"daemonctx.paths"}
# Never at import time on the start-up path: each costs milliseconds per start.
HEAVY = {"typing", "dataclasses", "socket", "threading", "json", "logging", "lockfile"}


def dotted(path: Path, package: Path) -> list[str]:
    """``daemonctx/cli/daemon.py`` -> ["daemonctx", "cli", "daemon"]."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def layer_key(parts: list[str]) -> str:
    """The LAYERS key of a module: its first name below the package ("" for the package)."""
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path) -> str:
    return layer_key(dotted(path, PACKAGE))


def imported(path: Path, package: Path | None = None) -> set[str]:
    """The LAYERS keys of the daemonctx modules ``path`` imports, anywhere in it
    (imports inside functions too)."""
    package = package or PACKAGE
    me = dotted(path, package)
    here = me if path.name == "__init__.py" else me[:-1]  # the package it is in
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[list[str]] = []
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - (node.level - 1)]
            if node.module:
                targets.append(base + node.module.split("."))
            else:
                targets.extend([*base, alias.name] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            targets.append(node.module.split("."))
        elif isinstance(node, ast.Import):
            targets.extend(alias.name.split(".") for alias in node.names)
        for target in targets:
            if target[0] == package.name and target[:2] != me[:2]:
                found.add(layer_key(target) if layer_key(target) in LAYERS else "")
    return found


def test_every_module_has_a_layer() -> None:
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    assert modules == set(LAYERS), "add new modules to LAYERS and docs/architecture.md"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_imports_point_down(path: Path) -> None:
    own = LAYERS[module_name(path)]
    upward = {name for name in imported(path) if LAYERS[name] > own}
    assert not upward, f"{path.relative_to(ROOT)} imports a higher layer: {sorted(upward)}"


def test_the_import_check_sees_an_upward_import(tmp_path: Path) -> None:
    copy = tmp_path / "daemonctx" / "process.py"
    copy.parent.mkdir()
    source = (PACKAGE / "process.py").read_text()
    copy.write_text(source)
    assert imported(copy, copy.parent) == {"errors"}
    copy.write_text(source + "\n\ndef f() -> None:\n    from .cli import main\n")
    assert "cli" in imported(copy, copy.parent)


def test_the_start_up_path_is_lean() -> None:
    code = """
import json, sys
before = set(sys.modules)
import daemonctx
from daemonctx.pidfile import TimeoutPIDLockFile
context = daemonctx.DaemonContext(pidfile=TimeoutPIDLockFile("/tmp/x.pid"), umask=0o022)
loaded = set(sys.modules) - before
print(json.dumps(sorted(loaded)))
"""
    result = subprocess.run(
        [
            sys.executable,
            "-E",
            "-s",
            "-c",
            f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + code,
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=30,
        check=True,
    )
    loaded = set(json.loads(result.stdout))
    ours = {name for name in loaded if name.startswith("daemonctx")}
    assert ours == START_UP_MODULES
    assert not HEAVY & loaded, sorted(HEAVY & loaded)


@pytest.mark.parametrize("through", ["directory", "symlinked directory"])
def test_the_foreground_check_stays_lean(tmp_path: Path, through: str) -> None:
    """open() checks the pidfile's path in the foreground with a few lstat calls;
    paths.py (still lean) is loaded only for a symlink on the way, or a refusal."""
    directory = tmp_path / "run"
    directory.mkdir()
    if through == "symlinked directory":
        (tmp_path / "link").symlink_to(directory)
        directory = tmp_path / "link"
    result = run_script(
        f"""
import sys
before = set(sys.modules)
from daemonctx.pidfile import PIDLockFile
PIDLockFile({str(directory / "app.pid")!r}).fail_if_held()
loaded = sorted(set(sys.modules) - before)
import json
print(json.dumps(loaded))
"""
    )
    loaded = set(json.loads(result.stdout))
    ours = {m for m in loaded if m.startswith("daemonctx")}
    expected = FOREGROUND_MODULES if through == "symlinked directory" else set()
    assert ours - START_UP_MODULES == expected
    assert not HEAVY & loaded, sorted(HEAVY & loaded)


def test_command_error_is_the_old_control_error() -> None:
    assert ControlError is CommandError
    error = CommandError("unknown user 'x'", exit_code=4)
    assert (str(error), error.exit_code) == ("unknown user 'x'", 4)


@pytest.mark.parametrize(("error", "number"), [("FileNotFoundError", 2), ("PermissionError", 13)])
def test_the_daemons_errno_reaches_the_launcher(error: str, number: int) -> None:
    """A supervisor retries a missing file, not a permission problem: it needs the
    errno, not a message to parse."""
    result = run_script(
        f"""
from daemonctx import DaemonContext, DaemonStartupError
try:
    with DaemonContext(ready_on_open=False):  # a failure before ready comes back
        raise {error}({number}, "in the daemon", "/srv/x")
except DaemonStartupError as exc:
    print(exc.remote_type, exc.remote_errno, flush=True)
"""
    )
    assert result.stdout.split() == [error, str(number)]
    assert DaemonStartupError("x").remote_errno is None


def test_each_option_is_declared_once() -> None:
    """DaemonContext's signature, its attribute types and Service's options all
    follow options.OPTIONS: add an option there, and here is what else to change."""
    import inspect

    from daemonctx import DaemonContext
    from daemonctx.options import OPTIONS
    from daemonctx.service import CONTEXT_OPTIONS

    parameters = list(inspect.signature(DaemonContext.__init__).parameters.values())[1:]
    assert [p.name for p in parameters] == list(OPTIONS)
    assert {p.name: p.default for p in parameters} == {
        name: option.default for name, option in OPTIONS.items()
    }
    assert set(OPTIONS) <= set(DaemonContext.__annotations__), "a stored type for each"
    assert tuple(n for n in OPTIONS if n not in ("detach_process", "pidfile")) == CONTEXT_OPTIONS
