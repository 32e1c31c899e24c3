"""What the daemon process looks like from /proc: cwd, root, umask, core
limit, owner and groups. We run as root, so privileges and chroot are real."""

from __future__ import annotations

import itertools
import os
import resource  # also loaded before a child drops to nobody (open() imports it),
import subprocess  # who may not read the interpreter's files (under /root, 0700)
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    NOBODY,
    NOGROUP,
    Daemons,
    needs_root,
    needs_tools,
    proc_fds,
    proc_status,
    run_in_child,
)

from daemonctx import DaemonContext, DaemonOptionError
from daemonctx.process import change_process_owner

_serial = itertools.count()


def test_defaults_cwd_root_umask_and_core_limit(daemons: Daemons) -> None:
    event, _ = daemons.start({})
    pid = event["pid"]
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    assert os.readlink(f"/proc/{pid}/root") == "/"
    assert proc_status(pid)["Umask"] == "0000"
    limits = Path(f"/proc/{pid}/limits").read_text()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"], core


def test_working_directory_and_umask(daemons: Daemons, tmp_path: Path) -> None:
    event, _ = daemons.start({"options": {"working_directory": str(tmp_path), "umask": 0o027}})
    pid = event["pid"]
    assert os.readlink(f"/proc/{pid}/cwd") == str(tmp_path)
    assert proc_status(pid)["Umask"] == "0027"


def test_prevent_core_false_keeps_the_core_limit(daemons: Daemons) -> None:
    soft = 4096 * 1024
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]

    def raise_core_limit() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))

    result, report = daemons.launch(
        {"options": {"prevent_core": False}}, preexec_fn=raise_core_limit
    )
    assert result.returncode == 0, result.stderr
    pid = daemons.event(report, "open")["pid"]
    limits = Path(f"/proc/{pid}/limits").read_text()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4] == str(soft)


@needs_root
def test_chroot_into_an_empty_directory_with_default_streams(
    daemons: Daemons, tmp_path: Path
) -> None:
    jail = tmp_path / "jail"
    jail.mkdir()
    event, _ = daemons.start({"options": {"chroot_directory": str(jail)}})
    pid = event["pid"]
    assert os.readlink(f"/proc/{pid}/root") == str(jail)
    assert os.readlink(f"/proc/{pid}/cwd") == str(jail)
    fds = proc_fds(pid)
    assert [fds[0], fds[1], fds[2]] == ["/dev/null"] * 3


@needs_root
def test_a_relative_chroot_directory_is_entered_once_where_it_was_checked(
    daemons: Daemons, tmp_path: Path
) -> None:
    """chdir("jail") then chroot("jail") went into jail/jail, a directory the check
    never saw (here nobody's): the daemon chroots to the path the check resolved."""
    (tmp_path / "jail" / "jail").mkdir(parents=True)
    os.chown(tmp_path / "jail" / "jail", NOBODY, -1)
    result, report = daemons.launch({"options": {"chroot_directory": "jail"}}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    event = daemons.event(report, "open")
    assert os.readlink(f"/proc/{event['pid']}/root") == str(tmp_path / "jail")


@needs_root
def test_a_pidfile_in_the_jail_is_found_through_the_jail_s_own_links(
    daemons: Daemons, tmp_path: Path
) -> None:
    """J/var/run -> /run2 is J/run2 for the daemon: the launcher's checks went to
    the host's /run2 (here missing: "does not exist"; or a host daemon's pidfile,
    "locked by" that daemon)."""
    jail = tmp_path / "jail"
    (jail / "run2").mkdir(parents=True)
    (jail / "var").mkdir()
    (jail / "var" / "run").symlink_to("/run2")
    assert not os.path.exists("/run2")
    event, _ = daemons.start(
        {"options": {"chroot_directory": str(jail), "pidfile": "/var/run/app.pid"}}
    )
    assert (jail / "run2" / "app.pid").read_text() == f"{event['pid']}\n"


@needs_root
def test_chroot_with_a_working_directory_inside_it(daemons: Daemons, tmp_path: Path) -> None:
    (tmp_path / "jail" / "srv").mkdir(parents=True)
    event, _ = daemons.start(
        {"options": {"chroot_directory": str(tmp_path / "jail"), "working_directory": "/srv"}}
    )
    assert os.readlink(f"/proc/{event['pid']}/cwd") == str(tmp_path / "jail" / "srv")


@needs_root
def test_drop_from_root_clears_groups_and_sets_all_ids(daemons: Daemons) -> None:
    event, _ = daemons.start({"options": {"uid": NOBODY, "gid": NOBODY}})
    status = proc_status(event["pid"])
    assert status["Uid"].split() == [str(NOBODY)] * 4
    assert status["Gid"].split() == [str(NOBODY)] * 4
    assert status["Groups"] == "", "root's supplementary groups must not survive"
    assert int(status["CapEff"], 16) == 0


# What the user_with_groups fixture needs besides root: every test requesting it has both marks.
needs_useradd = needs_tools("useradd", "userdel", "groupadd", "groupdel")


@pytest.fixture
def user_with_groups() -> Iterator[tuple[str, int, int, int]]:
    """A throwaway user whose primary group is one group and who is a member of another
    (tests that request it are marked ``needs_root`` and ``needs_useradd``)."""
    # Requested before `daemons`, so its daemons are killed before userdel runs.
    tag = f"{os.getpid() % 10000}{next(_serial)}"
    name, extra = f"dctx{tag}", f"dctxg{tag}"
    subprocess.run(["groupadd", extra], check=True)
    try:
        subprocess.run(
            ["useradd", "--no-create-home", "--user-group", "--groups", extra, name], check=True
        )
        try:
            import grp
            import pwd

            entry = pwd.getpwnam(name)
            yield name, entry.pw_uid, entry.pw_gid, grp.getgrnam(extra).gr_gid
        finally:
            subprocess.run(["userdel", name], check=False)
    finally:
        subprocess.run(["groupdel", extra], check=False)


@needs_root
@needs_useradd
def test_initgroups_sets_the_users_groups(
    user_with_groups: tuple[str, int, int, int], daemons: Daemons
) -> None:
    _name, uid, gid, extra_gid = user_with_groups
    event, _ = daemons.start({"options": {"uid": uid, "gid": gid, "initgroups": True}})
    status = proc_status(event["pid"])
    assert status["Uid"].split() == [str(uid)] * 4
    assert status["Gid"].split() == [str(gid)] * 4
    assert sorted(int(g) for g in status["Groups"].split()) == sorted({gid, extra_gid})


@needs_root
@needs_useradd
def test_initgroups_inside_a_chroot_gives_the_groups_of_the_host(
    user_with_groups: tuple[str, int, int, int], daemons: Daemons, tmp_path: Path
) -> None:
    """The user was resolved on the host, so are its groups: looked up before the
    chroot, not from the jail's /etc/group (which here names another group, and
    could be written by whoever fills the jail)."""
    name, uid, gid, extra_gid = user_with_groups
    jail = tmp_path / "jail"
    (jail / "etc").mkdir(parents=True)
    (jail / "etc" / "group").write_text(f"jailed:x:4242:{name}\n")
    options = {"uid": uid, "gid": gid, "initgroups": True, "chroot_directory": str(jail)}
    event, _ = daemons.start({"options": options})
    status = proc_status(event["pid"])
    assert os.readlink(f"/proc/{event['pid']}/root") == str(jail)
    assert sorted(int(g) for g in status["Groups"].split()) == sorted({gid, extra_gid})


@needs_root
@needs_useradd
def test_without_initgroups_the_users_groups_are_not_set(
    user_with_groups: tuple[str, int, int, int], daemons: Daemons
) -> None:
    _name, uid, gid, _extra = user_with_groups
    event, _ = daemons.start({"options": {"uid": uid, "gid": gid}})
    assert proc_status(event["pid"])["Groups"] == ""


@needs_root
def test_uid_alone_gives_the_user_s_primary_group_not_root_s(daemons: Daemons) -> None:
    """python-daemon keeps the launcher's gid: root's group 0, in a daemon that
    believes it dropped root. As su and systemd's User= do, uid alone is the user."""
    event, _ = daemons.start({"options": {"uid": NOBODY}})
    status = proc_status(event["pid"])
    assert status["Uid"].split() == [str(NOBODY)] * 4
    assert status["Gid"].split() == [str(NOGROUP)] * 4
    assert status["Groups"] == ""


@needs_root
@needs_useradd
def test_initgroups_with_uid_alone_gives_the_user_s_groups(
    user_with_groups: tuple[str, int, int, int], daemons: Daemons
) -> None:
    """initgroups sets "the supplementary groups of the user named by uid": its
    primary group and the others, no group of root's."""
    _name, uid, gid, extra_gid = user_with_groups
    event, _ = daemons.start({"options": {"uid": uid, "initgroups": True}})
    status = proc_status(event["pid"])
    assert status["Uid"].split() == [str(uid)] * 4
    assert status["Gid"].split() == [str(gid)] * 4
    assert sorted(int(g) for g in status["Groups"].split()) == sorted({gid, extra_gid})


@needs_root
def test_a_gid_given_or_assigned_is_kept(daemons: Daemons) -> None:
    """gid=0 given on purpose stays 0; the attribute says what the daemon will get,
    and follows uid assigned later until a gid is assigned."""
    context = DaemonContext(uid=NOBODY)
    assert context.gid == NOGROUP
    context = DaemonContext()
    context.uid = NOBODY
    assert context.gid == NOGROUP
    context.gid = 0
    context.uid = NOBODY
    assert context.gid == 0
    assert DaemonContext(uid=0).gid == os.getgid()
    event, _ = daemons.start({"options": {"uid": NOBODY, "gid": 0}})
    assert proc_status(event["pid"])["Gid"].split() == ["0"] * 4


@needs_root
def test_a_process_that_is_not_root_keeps_its_gid() -> None:
    """Not root, a process may switch only to ids it holds (a setuid program's saved
    uid, here 1): it keeps its gid, which it holds, rather than take the user's
    group, which it may not."""
    import pwd

    other = pwd.getpwuid(1)
    assert other.pw_gid != NOGROUP

    def check() -> None:
        os.setgroups([])
        os.setresgid(NOGROUP, NOGROUP, NOGROUP)
        os.setresuid(NOBODY, NOBODY, other.pw_uid)
        context = DaemonContext(uid=other.pw_uid)
        assert context.gid == NOGROUP
        context.check()

    run_in_child(check)


@needs_root
@pytest.mark.forked
def test_uid_alone_without_a_passwd_entry_is_refused() -> None:
    """No group to take; keeping ours would keep root's group 0."""
    context = DaemonContext(uid=4_000_000, detach_process=False)
    with pytest.raises(DaemonOptionError) as info:
        context.open()
    assert str(info.value) == (
        "uid=4000000: no passwd entry to take the daemon's group from: pass gid too"
    )
    assert not context.is_open
    DaemonContext(uid=4_000_000, gid=4_000_000).check()


@needs_root
def test_root_cannot_be_regained_after_the_drop() -> None:
    def check() -> None:
        change_process_owner(NOBODY, NOBODY, None)
        assert os.getresuid() == (NOBODY,) * 3
        assert os.getgroups() == []
        with pytest.raises(PermissionError):
            os.setuid(0)
        with pytest.raises(PermissionError):
            os.setgid(0)

    run_in_child(check)


@needs_root
def test_unprivileged_process_may_not_switch_uid() -> None:
    def check() -> None:
        change_process_owner(NOBODY, NOBODY, None)
        context = DaemonContext(uid=0, detach_process=False)
        with pytest.raises(DaemonOptionError) as info:
            context.open()
        assert info.value.option == "uid"
        assert info.value.value == 0
        assert "not root" in str(info.value)
        assert not context.is_open

    run_in_child(check)


@needs_root
def test_unprivileged_process_may_not_set_groups() -> None:
    def check() -> None:
        change_process_owner(NOBODY, NOBODY, None)
        with pytest.raises(DaemonOptionError, match="initgroups"):
            DaemonContext(initgroups=True, detach_process=False).open()

    run_in_child(check)


@needs_root
@pytest.mark.forked
def test_initgroups_needs_a_passwd_entry() -> None:
    with pytest.raises(DaemonOptionError, match="passwd entry") as info:
        DaemonContext(uid=4_000_000, gid=4_000_000, initgroups=True, detach_process=False).open()
    assert info.value.option == "uid"


@needs_root
def test_pidfile_is_written_before_privileges_drop(daemons: Daemons, tmp_path: Path) -> None:
    """A root-only directory, like /run: the pidfile is there and names the daemon."""
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    pidfile = run / "app.pid"
    event, _ = daemons.start({"options": {"uid": NOBODY, "gid": NOBODY, "pidfile": str(pidfile)}})
    assert pidfile.read_text().strip() == str(event["pid"])
    assert proc_status(event["pid"])["Uid"].split()[0] == str(NOBODY)
