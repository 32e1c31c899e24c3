"""A program's ``environment_file`` (systemd's EnvironmentFile=, compose's env_file):
the format, unit-tested; the trust checks on real files (another user's, a
symlink, a FIFO, a huge one); and on real processes, what a program gets, what
``supervise`` refuses before anything starts, and a start once the file is gone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import NOBODY, Supervisors, needs_root, proc_environ, wait_for

from daemonctx.paths import UnsafePathError
from daemonctx.supervisor.envfile import MAX_BYTES, EnvironmentFileError, parse, read

pytestmark = pytest.mark.timeout(30)

SLEEP = shutil.which("sleep") or "/bin/sleep"


# -- the format ----------------------------------------------------------------------------


def test_names_values_comments_export_and_quotes() -> None:
    text = "\n".join(
        [
            "# the shop's settings",
            "; an INI-style comment",
            "",
            "  DATABASE_URL = postgres://shop@db/shop  ",
            "export SHOP_ENV=prod",
            "EMPTY=",
            "SINGLE='  $HOME \\n kept  '",
            'DOUBLE="a \\"quoted\\" word\\nand a \\$ sign, \\\\ \\q"',
            "EQUALS=a=b=c",
            "HASH=not # a comment",
            "SHOP_ENV=staging",  # the last one wins
            "exported=1",  # a name that starts with "export"
        ]
    )
    assert parse(text, "shop.env") == {
        "DATABASE_URL": "postgres://shop@db/shop",
        "SHOP_ENV": "staging",
        "EMPTY": "",
        "SINGLE": "  $HOME \\n kept  ",
        "DOUBLE": 'a "quoted" word\nand a $ sign, \\ \\q',
        "EQUALS": "a=b=c",
        "HASH": "not # a comment",
        "exported": "1",
    }


def test_only_a_newline_ends_a_line() -> None:
    """Not a form feed, nor U+2028 (str.splitlines would): the editor's line numbers."""
    text = "# a comment\x0cwith a form feed\r\nA='a\x0cb'\nB=x\u2028y\nBAD\n"
    with pytest.raises(EnvironmentFileError) as caught:
        parse(text, "x.env")
    assert str(caught.value) == "x.env: line 4: expected NAME=VALUE"
    assert parse(text.replace("BAD\n", ""), "x.env") == {"A": "a\x0cb", "B": "x\u2028y"}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("SECRET hunter2", "line 2: expected NAME=VALUE"),
        ("1ST=hunter2", "line 2: expected a name of letters, digits and '_'"),
        ("MY-KEY=hunter2", "line 2: expected a name of letters, digits and '_'"),
        ("=hunter2", "line 2: expected a name of letters, digits and '_'"),
        ("KEY='hunter2", "line 2: KEY: no closing '"),
        ('KEY="hunter2', 'line 2: KEY: no closing "'),
        ('KEY="', 'line 2: KEY: no closing "'),
        ("KEY=hun\0ter2", "line 2: KEY: a NUL byte"),
        ('KEY="hunter2\\"', 'line 2: KEY: no closing "'),  # its last quote escaped
    ],
)
def test_a_bad_line_is_named_by_its_number_never_its_value(line: str, reason: str) -> None:
    with pytest.raises(EnvironmentFileError) as caught:
        parse(f"OK=1\n{line}\n", "/etc/shop/web.env")
    assert str(caught.value) == f"/etc/shop/web.env: {reason}"
    assert "hunter2" not in str(caught.value)


# -- reading, and trusting ------------------------------------------------------------------


def test_read_a_file(tmp_path: Path) -> None:
    path = tmp_path / "web.env"
    path.write_text("A=1\nB='two'\n")
    assert read(str(path)) == {"A": "1", "B": "two"}


def test_a_missing_file_a_directory_a_huge_file_and_bad_utf8(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        read(str(tmp_path / "nope.env"))
    assert missing.value.filename == str(tmp_path / "nope.env")
    with pytest.raises(EnvironmentFileError, match="not a regular file"):
        read(str(tmp_path))
    huge = tmp_path / "huge.env"
    huge.write_bytes(b"A=" + b"x" * MAX_BYTES + b"\n")
    with pytest.raises(EnvironmentFileError, match=f"larger than {MAX_BYTES} bytes"):
        read(str(huge))
    latin = tmp_path / "latin.env"
    latin.write_bytes(b"A=1\nB=caf\xe9\n")
    with pytest.raises(EnvironmentFileError, match="line 2: not UTF-8 text"):
        read(str(latin))


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.env"
    os.mkfifo(fifo)
    with pytest.raises(EnvironmentFileError, match="not a regular file"):
        read(str(fifo))


@needs_root
def test_a_file_another_user_owns_or_may_write_or_planted_as_a_symlink_is_refused(
    tmp_path: Path,
) -> None:
    """It decides what a root program loads (LD_PRELOAD=...): trusted as the
    configuration file is, or not read."""
    tmp_path.chmod(0o755)
    theirs = tmp_path / "theirs.env"
    theirs.write_text("LD_PRELOAD=/tmp/evil.so\n")
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UnsafePathError, match="owned by uid 65534"):
        read(str(theirs))
    writable = tmp_path / "writable.env"
    writable.write_text("A=1\n")
    writable.chmod(0o666)
    with pytest.raises(UnsafePathError, match="writable by"):
        read(str(writable))
    # nobody's directory: whatever is in it, nobody chose
    their_dir = tmp_path / "nobody"
    their_dir.mkdir()
    ours = their_dir / "ours.env"
    ours.write_text("A=1\n")
    os.chown(their_dir, NOBODY, NOBODY)
    with pytest.raises(UnsafePathError):
        read(str(ours))
    # a symlink nobody planted in a sticky directory, to a file of ours
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    good = tmp_path / "good.env"
    good.write_text("A=1\n")
    link = sticky / "web.env"
    link.symlink_to(good)
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(UnsafePathError):
        read(str(link))


# -- on real processes -----------------------------------------------------------------------


def environ(pid: int) -> dict[str, str]:
    pairs = proc_environ(pid).split(b"\0")
    return dict(pair.decode().partition("=")[::2] for pair in pairs if pair)


def test_a_program_gets_its_files_variables_under_its_environment_and_each_start_rereads(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    common, own = tmp_path / "common.env", tmp_path / "web.env"
    common.write_text("TIER=prod\nDATABASE_URL=postgres://db/shop\n")
    own.write_text("export DATABASE_URL='postgres://replica/shop'\nHOME=/srv/shop\n")
    supervisors.config(
        {
            "web": {
                "command": [SLEEP, "1000"],
                "environment_file": [str(common), str(own)],
                "environment": {"TIER": "front"},
            }
        }
    )
    supervisors.foreground()
    pid = supervisors.status("web").pid
    assert pid is not None
    env = environ(pid)
    assert env["TIER"] == "front"  # environment wins over the files
    assert env["DATABASE_URL"] == "postgres://replica/shop"  # the later file wins
    assert env["HOME"] == "/srv/shop"
    # Read at each start: a changed file applies at the next restart.
    own.write_text("DATABASE_URL=postgres://new/shop\n")
    assert supervisors.ctl("restart", "web").returncode == 0
    pid = supervisors.status("web").pid
    assert pid is not None and environ(pid)["DATABASE_URL"] == "postgres://new/shop"
    # Gone: the start fails, saying which file and why, and is tried again with the
    # backoff (a secrets file put in place a moment later is taken)
    own.unlink()
    result = supervisors.ctl("restart", "web")
    assert result.returncode == 1
    info = supervisors.status("web")
    assert info.state == "backoff", info
    why = supervisors.ctl("why", "web").stdout
    assert f"cannot read environment file {own}: No such file or directory" in why, why
    own.write_text("DATABASE_URL=postgres://back/shop\n")
    wait_for(lambda: supervisors.status("web").running, what="web started again")
    pid = supervisors.status("web").pid
    assert pid is not None and environ(pid)["DATABASE_URL"] == "postgres://back/shop"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "{path}: No such file or directory"),
        ("SECRET hunter2\n", "{path}: line 1: expected NAME=VALUE"),
    ],
)
def test_supervise_refuses_a_bad_environment_file_before_anything_starts(
    supervisors: Supervisors, tmp_path: Path, text: str | None, reason: str
) -> None:
    path = tmp_path / "web.env"
    if text is not None:
        path.write_text(text)
    config = supervisors.config(
        {"web": {"command": [SLEEP, "1000"], "environment_file": str(path)}}
    )
    result = supervisors.supervise()
    assert result.returncode == 1, result
    expected = f"{config}: [program.web] environment_file: {reason.format(path=path)}"
    assert result.stderr.strip().splitlines() == [f"daemonctx: error: {expected}"], result
    assert "hunter2" not in result.stderr
    assert supervisors.processes() == []
    assert not Path(supervisors.control).exists()


@needs_root
def test_supervise_refuses_an_environment_file_another_user_controls_with_exit_4(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """As an unsafe configuration file is (LSB 4, "insufficient privilege"): the
    file decides what a root program loads. It used to exit 1."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    path = theirs / "web.env"
    path.write_text("A=1\n")
    os.chown(theirs, NOBODY, NOBODY)
    config = supervisors.config(
        {"web": {"command": [SLEEP, "1000"], "environment_file": str(path)}}
    )
    result = supervisors.supervise()
    assert result.returncode == 4, result
    expected = (
        f"daemonctx: error: {config}: [program.web] environment_file: refusing environment"
        f" file {path}: {theirs} is owned by uid {NOBODY}"
    )
    assert result.stderr.strip().splitlines() == [expected], result
    assert supervisors.processes() == []
    assert not Path(supervisors.control).exists()


@needs_root
def test_a_file_made_unsafe_after_the_start_is_refused_at_the_next_start(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    path = tmp_path / "web.env"
    path.write_text("A=1\n")
    supervisors.config({"web": {"command": [SLEEP, "1000"], "environment_file": str(path)}})
    supervisors.foreground()
    path.chmod(0o666)
    supervisors.ctl("restart", "web")
    wait_for(
        lambda: "cannot trust environment file" in supervisors.ctl("why", "web").stdout,
        what="the refusal",
    )
    why = supervisors.ctl("why", "web").stdout
    assert f"cannot trust environment file {path}: the file is writable by" in why, why


def test_systemd_s_and_compose_s_names_point_here(tmp_path: Path) -> None:
    from daemonctx.supervisor.config import ConfigError, load

    for key, whose in (("EnvironmentFile", "systemd's"), ("env_file", "compose's")):
        path = tmp_path / "shop.toml"
        path.write_text(
            f'[supervisor]\ncontrol = "/run/x.sock"\n[program.web]\ncommand = ["/x"]\n'
            f'{key} = "/etc/web.env"\n'
        )
        with pytest.raises(ConfigError) as caught:
            load(path)
        assert str(caught.value).endswith(f"unknown key ({whose}; here: environment_file)")
