"""Find the program to exec, as a shell would: in ``PATH``, on this system or inside
a chroot; and check beforehand what ``execve(2)`` will need of it, so that a start
fails in the foreground, naming what was typed, rather than in the daemon with
"No such file or directory" for a file that exists: the interpreter of a ``#!``
line (``#!/bin/sh\\r`` from a Windows editor), or an ELF program's loader
(``/lib64/ld-linux-x86-64.so.2``, often missing from a jail); a file exec refuses
as no program ("Exec format error": an empty file, an ELF program for another
machine); and, for a program that will run as ``--user``, whether that user may
execute it at all.
"""

from __future__ import annotations

import os
import posixpath
from typing import TYPE_CHECKING

from .errors import CommandError

if TYPE_CHECKING:
    from collections.abc import Collection
    from typing import BinaryIO

__all__ = [
    "check_runnable_as",
    "format_problem",
    "interpreter",
    "missing_interpreter",
    "resolve_in_root",
    "resolve_program",
    "resolve_program_in_root",
]

_HEAD = 256  # bytes of a #! line the kernel reads (BINPRM_BUF_SIZE)
_ELF_MAGIC = b"\x7fELF"
_PT_INTERP = 3
_MAX_LINKS = 40  # the kernel's ELOOP limit
_SCRIPTS = 5  # #! scripts in a chain exec follows; a 6th fails with ELOOP (binfmt_script)
_BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark: before "#!", exec sees no #! line
_BINFMT_MISC = "/proc/sys/fs/binfmt_misc"  # where other formats' handlers are registered
_ENOEXEC = "exec cannot run it (Exec format error)"


def resolve_program(command: str) -> str:
    """The absolute path to exec, found in PATH as the shell would."""
    import shutil

    if not command:
        raise CommandError("command not found: '' (an empty name)")
    if "/" in command:  # a path: say what is wrong with it, as a shell would
        if os.path.isdir(command):
            raise CommandError(f"{command}: is a directory")
        if os.path.exists(command) and not os.access(command, os.X_OK):
            raise CommandError(f"{command}: permission denied (not executable)")
    found = shutil.which(command)
    if found is None:
        raise CommandError(f"command not found: {command}")
    # Joined, not normalized: "link/../app" is what is beside the link's target,
    # as the kernel resolves it, not what abspath's folding would name.
    try:
        path = found if os.path.isabs(found) else os.path.join(os.getcwd(), found)
    except OSError:  # the current directory was deleted
        raise CommandError(f"{command}: relative to a deleted directory; give its path") from None
    if not os.path.isfile(path):  # a FIFO or a device: which takes them, exec does not
        raise CommandError(f"{command}: not a regular file")
    _check_interpreter(command, path, None)
    return path


def resolve_in_root(root: str, path: str) -> str | None:
    """Where ``path``, as a process chrooted to ``root`` names it, is seen from here:
    symbolic links are followed inside ``root``, an absolute target or ``..`` never
    leaving it (openat2's RESOLVE_IN_ROOT). None where the kernel would fail
    before the last name: a missing or non-directory component (ENOENT,
    ENOTDIR; "missing/.." included), or after 40 links (ELOOP). For the
    foreground's checks: the kernel resolves it again at the exec."""
    todo = [part for part in reversed(path.split("/")) if part]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop()
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root, *done, part)
        if not os.path.islink(here):
            if todo and not os.path.isdir(here):
                return None
            done.append(part)
            continue
        links += 1
        if links > _MAX_LINKS:
            return None
        target = os.readlink(here)
        if target.startswith("/"):
            done = []
        todo.extend(part for part in reversed(target.split("/")) if part)
    return os.path.join(root, *done)


def resolve_program_in_root(command: str, root: str, chdir: str, search: str) -> str:
    """The path to exec once chrooted to ``root`` (in ``chdir`` there): ``command``
    when it has a slash, else found in the ``search`` path's directories inside
    ``root``, as the shell there would; relative entries (an empty one is ".") are
    relative to ``chdir``, where the program starts. Returned joined, not
    normalized, so that the kernel resolves what was checked ("link/.." included)."""
    if not command:
        raise CommandError("command not found: '' (an empty name)")
    if "/" in command:
        candidates = [posixpath.join(chdir, command)]
    else:
        entries = search.split(":")
        candidates = [posixpath.join(chdir, entry or ".", command) for entry in entries]
    for candidate in candidates:
        seen = resolve_in_root(root, candidate)
        if (
            seen is not None
            and not candidate.endswith("/")  # "app/": the kernel wants a directory
            and os.path.isfile(seen)
            and os.access(seen, os.X_OK)
        ):
            _check_interpreter(command, seen, root, search)
            return candidate
    if "/" in command:  # say what is wrong with it, as a shell there would
        seen = resolve_in_root(root, candidates[0])
        if seen is not None and os.path.isdir(seen):
            raise CommandError(f"{command}: is a directory in --chroot {root}")
        if seen is not None and os.path.exists(seen) and candidates[0].endswith("/"):
            raise CommandError(f"{command}: not a directory in --chroot {root}")
        if seen is not None and os.path.exists(seen):
            raise CommandError(f"{command}: permission denied (not executable) in --chroot {root}")
    raise CommandError(f"command not found: {command} in --chroot {root}")


def interpreter(path: str) -> tuple[str, str] | None:
    """What the kernel will need to run the file at ``path``: ("#!", the
    interpreter as its first line names it) or ("ELF", the loader its PT_INTERP
    names); None for a static program, a file we may not read, or anything else."""
    needed = _needs(path)
    return None if needed is None or not needed[1] else needed[:2]


def _needs(path: str) -> tuple[str, str, str] | None:
    """("#!", interpreter, its one argument) or ("ELF", loader, ""), read from the
    file at ``path``; None when it cannot be read, or is neither (a corrupt ELF
    header included: its offsets are not trusted)."""
    try:
        with _open_file(path) as file:
            head = file.read(_HEAD)
            if head.startswith(b"#!"):
                return ("CUT", "", "") if _cut_short(head) else ("#!", *_shebang(head))
            if head.startswith(_BOM + b"#!"):
                return ("BOM", "", "")
            if head.startswith(_ELF_MAGIC):
                loader = _elf_loader(file, head)
                return ("ELF", loader, "") if loader else None
    except (OSError, ValueError, OverflowError):  # seek past what an offset can be
        pass
    return None


def _open_file(path: str) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (a FIFO would block the
    read; exec refuses anything else anyway); ``OSError`` otherwise."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file")
        return open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _cut_short(head: bytes) -> bool:
    """Whether exec refuses the ``#!`` line (ENOEXEC) as too long: no newline in the
    255 bytes it reads, and no space, tab or NUL after the interpreter's name there,
    so that the name may be cut (Linux 5.1's binfmt_script; a shorter file ends in
    NULs)."""
    if len(head) < _HEAD or b"\n" in head:
        return False
    name = head[2 : _HEAD - 1].lstrip(b" \t")
    return not any(end in name for end in (b" ", b"\t", b"\0"))


def _shebang(head: bytes) -> tuple[str, str]:
    """The interpreter and the one argument a ``#!`` line gives it, as the kernel
    reads them: the name ends at a space, a tab or NUL (a "\\r" before the newline
    is part of it); the rest of the line, trimmed, is a single argument."""
    line = head[2 : _HEAD - 1].split(b"\n", 1)[0].lstrip(b" \t")  # exec reads 255 bytes
    name = line
    for end in (b" ", b"\t", b"\0"):
        name = name.split(end, 1)[0]
    argument = line[len(name) :].split(b"\0", 1)[0].strip(b" \t")
    return os.fsdecode(name), os.fsdecode(argument)


def _elf_loader(file: BinaryIO, head: bytes) -> str | None:
    """The PT_INTERP of the ELF file whose first bytes are ``head``: the program
    header table (elf(5)) read for the entry of that type. None for a header whose
    entries are too small to hold the fields read."""
    from struct import unpack_from

    if len(head) < 64 or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
    # The formats and offsets of (e_phoff, e_phentsize, e_phnum) in the file's
    # header, and of (p_type, p_offset, p_filesz) in a program header.
    forms, at = ("QHH", (32, 54, 56)) if wide else ("IHH", (28, 42, 44))
    entry, places = ("IQQ", (0, 8, 32)) if wide else ("III", (0, 4, 16))
    table, size, count = (unpack_from(order + f, head, where)[0] for f, where in zip(forms, at))
    if count > 256 or size < places[2] + (8 if wide else 4):
        return None
    file.seek(table)
    entries = file.read(size * count)
    for start in range(0, len(entries) - size + 1, size):
        kind, offset, length = (
            unpack_from(order + form, entries, start + where)[0]
            for form, where in zip(entry, places)
        )
        if kind == _PT_INTERP and 0 < length <= 4096:
            file.seek(offset)
            return os.fsdecode(file.read(length).split(b"\0", 1)[0]) or None
    return None


def missing_interpreter(
    seen: str,
    root: str | None = None,
    search: str | None = None,
    *,
    follow_env: bool = True,
    formats: bool = False,
    _chain: tuple[str, ...] = (),
) -> str | None:
    """What the file at ``seen`` needs to run and lacks, looked for inside ``root``
    when given: "its interpreter '/bin/sh\\r' (the #! line) is not found (a Windows
    line ending?)", "its ELF loader ... is not found", and so on down the chain of
    interpreters, as deep as the kernel goes; for ``#!/usr/bin/env NAME``, NAME in
    ``search`` (the program's PATH; default ours) unless not ``follow_env``. None
    when nothing is missing, or it cannot be told (a relative path is relative to
    the exec's directory). With ``formats``, also a file exec refuses as no
    program, here or down the chain (``format_problem``)."""
    needed = _needs(seen)
    if formats and (needed is None or needed[0] == "ELF"):
        problem = format_problem(seen)
        if problem is not None:
            return problem
    if needed is None:
        return None
    kind, path, argument = needed
    if kind == "BOM":  # ENOEXEC: "Exec format error"
        return "a UTF-8 byte order mark comes before its #! line, which exec then cannot see"
    if kind == "CUT":  # ENOEXEC too
        return (
            f"its #! line is longer than the {_HEAD - 1} bytes exec reads of it, which cut"
            " its interpreter's name short"
        )
    if kind == "#!" and len(_chain) >= _SCRIPTS:
        return f"a #! script too: exec follows {_SCRIPTS} scripts in a chain, no more"
    where = "" if root is None else f" in --chroot {root}"
    if not path:
        return "its #! line names no interpreter"
    if not path.startswith("/"):
        return None
    problem = _not_runnable(path, root)
    if problem is not None:
        what = (
            f"its interpreter {path!r} (the #! line)" if kind == "#!" else f"its ELF loader {path}"
        )
        hint = " (a Windows line ending?)" if path.endswith("\r") else ""
        return f"{what} {problem}{where}{hint}"
    if argument.endswith("\r") and _strict_about_arguments(path):
        return f"its #! line gives {path} {argument!r} (a Windows line ending?)"
    if kind == "#!" and posixpath.basename(path) == "env" and follow_env:
        missing = _missing_through_env(argument, path, root, search, where)
        if missing is not None:
            return missing
    if kind == "#!":
        # The interpreter may be a script in turn, or lack its own loader.
        there = path if root is None else resolve_in_root(root, path)
        assert there is not None  # _not_runnable found it
        chain = (*_chain, os.path.realpath(seen))
        again = os.path.realpath(there)
        if again in chain:  # exec fails with ELOOP, "Too many levels of symbolic links"
            which = "the script itself" if again == chain[-1] else "a script that runs it"
            return f"its interpreter {path} is {which}: the #! lines loop"
        deeper = missing_interpreter(
            there, root, search, follow_env=follow_env, formats=formats, _chain=chain
        )
        if deeper is not None:
            return f"its interpreter {path}: {deeper}"
    return None


def _missing_through_env(
    name: str, env: str, root: str | None, search: str | None, where: str
) -> str | None:
    """``#!/usr/bin/env NAME``: env looks NAME up in the program's PATH, after the
    exec, where a failure is "env: 'NAME': No such file or directory" and exit 127.
    The kernel gives env the rest of the line as one argument, then the script."""
    if name.startswith("-"):  # env's options: judged only where GNU env's answer is sure
        return _env_options(name, env)
    if not name or "=" in name:  # env would run the script itself, again and again
        given = "no program" if not name else f"only a variable, {name!r}, and no program"
        return f"its #! line gives {env} {given} to run (it would run the script, over and over)"
    if " " in name or "\t" in name:
        return f"its #! line gives env {name!r} as one name (env -S would split it)"
    if "/" in name:
        if not name.startswith("/") or _not_runnable(name, root) is None:
            return None
        return f"the program its #! line runs through env, {name!r}, is not found{where}"
    if search is None:
        search = os.environ.get("PATH", os.defpath)
    folders = search.split(":")
    if any(not folder.startswith("/") for folder in folders):
        return None  # relative to env's directory: cannot be told from here
    if any(_not_runnable(posixpath.join(folder, name), root) is None for folder in folders):
        return None
    return f"{name!r}, which its #! line runs through {env}, is not found in PATH{where}"


def _env_options(line: str, env: str) -> str | None:
    """``#!/usr/bin/env -OPTIONS`` read as GNU env reads it (the kernel gives it the
    rest of the line as one argument, then the script): with no program left
    after the options (``-i``, ``--``, ``-u HOME``, ``-S`` alone or ``-S -i``),
    env runs the script itself, which runs env again, forever (a busy process,
    not a failure); ``-i VAR=1 python3`` as one argument is refused ("invalid
    option"). None when env runs a program, or where its answer is not sure."""
    given = f"{env} {line!r} and no program"
    loop = f"its #! line gives {given} to run (it would run the script, over and over)"
    if line in ("-", "--", "--ignore-environment", "--debug", "--split-string"):
        return loop
    if line.startswith("--split-string="):
        return None if _env_runs_a_program(line.partition("=")[2]) else loop
    if line.startswith("--"):
        return None
    for at, option in enumerate(line[1:], 1):
        rest = line[at + 1 :]
        if option in "iv":
            continue
        if option == "S":  # the rest is split into words; none: the script is the string
            return None if _env_runs_a_program(rest) else loop
        if option == "u" and rest.strip():  # the rest is the name: no program after it
            return loop
        if option in " \t" and set(line[1:at]) <= set("iv"):
            given = f"{env} options and a program as one argument, {line!r}"
            return f"its #! line gives {given}, which env refuses (env -S would split it)"
        return None  # -0, -C, -u taking the script as its name, ...: not judged
    return loop


def _env_runs_a_program(text: str) -> bool:
    """Whether env finds a program in ``text``, the string ``-S`` splits: a word
    after its options and ``NAME=VALUE`` settings. True (not judged) wherever
    its own syntax could hide one: escapes (``\\_`` is a space), quotes,
    ``#`` comments, ``${VAR}``, and a nested ``-S``."""
    if any(mark in text for mark in "\\'\"#$"):
        return True
    takes_value = False
    for word in text.split():
        if takes_value:
            takes_value = False
        elif word.startswith("--split-string") or (
            word.startswith("-") and not word.startswith("--") and "S" in word
        ):
            return True
        elif word == "--":
            continue
        elif word in ("-u", "-C", "--unset", "--chdir"):
            takes_value = True
        elif word.startswith("-") or "=" in word:
            continue
        else:
            return True
    return False


def _strict_about_arguments(interpreter: str) -> bool:
    """Whether the interpreter refuses an argument with a "\\r" at its end: the
    shells and Python do ("Illegal option -"); perl reads its own #! line and
    takes it, so only these are judged."""
    name = posixpath.basename(interpreter)
    return name in ("sh", "bash", "dash", "ksh", "zsh", "env") or name.startswith("python")


def _not_runnable(path: str, root: str | None) -> str | None:
    """Why exec could not run the file at ``path`` (as seen inside ``root`` when
    given): "is not found", "is not an executable file"; None when it could."""
    there = path if root is None else resolve_in_root(root, path)
    if there is None or not os.path.exists(there):
        return "is not found"
    if not os.path.isfile(there) or not os.access(there, os.X_OK):
        return "is not an executable file"
    return None


def _check_interpreter(
    command: str, seen: str, root: str | None, search: str | None = None
) -> None:
    """``CommandError`` naming ``command`` as typed when ``missing_interpreter``."""
    missing = missing_interpreter(seen, root, search, formats=True)
    if missing is not None:
        raise CommandError(f"{command}: {missing}")


# -- what exec refuses as no program (ENOEXEC) --------------------------------------

_EM_NAMES = {
    2: "SPARC",
    3: "i386",
    8: "MIPS",
    20: "PowerPC",
    21: "PowerPC 64",
    22: "S/390",
    40: "ARM",
    43: "SPARC V9",
    62: "x86-64",
    183: "aarch64",
    243: "RISC-V",
    258: "LoongArch",
}
#: Machines whose kernels also run the other's programs (a compat ABI): not judged.
_COMPAT = ({3, 62}, {6, 62}, {40, 183}, {20, 21}, {2, 43}, {18, 43})
_E_TYPES = {0: "no type", 1: "a relocatable object", 4: "a core dump"}
_PT_LOAD = 1
_own: list[tuple[int, str, int] | None] = []


def _own_elf() -> tuple[int, str, int] | None:
    """(class, byte order, machine) of this interpreter's own ELF header, read from
    /proc/self/exe: what this system runs. None when it cannot be read."""
    if not _own:
        from struct import unpack_from

        found = None
        try:
            with open("/proc/self/exe", "rb") as file:
                head = file.read(20)
            if len(head) == 20 and head.startswith(_ELF_MAGIC) and head[5] in (1, 2):
                order = "<" if head[5] == 1 else ">"
                found = (head[4], order, unpack_from(order + "H", head, 18)[0])
        except OSError:
            pass
        _own.append(found)
    return _own[0]


def _machine_name(number: int) -> str:
    return _EM_NAMES.get(number, f"machine {number}")


def _other_formats_handled() -> bool:
    """Whether binfmt_misc has a handler enabled (qemu-user, wine, a JVM...), which
    may run what the kernel itself would refuse: then no ENOEXEC is guessed. An
    entry that cannot be read counts as enabled."""
    try:
        with open(f"{_BINFMT_MISC}/status") as file:
            if file.read().strip() == "disabled":
                return False
        entries = [name for name in os.listdir(_BINFMT_MISC) if name not in ("register", "status")]
    except OSError:  # not mounted: the kernel's own formats only
        return False
    for name in entries:
        try:
            with open(os.path.join(_BINFMT_MISC, name)) as file:
                if file.readline().strip() == "disabled":
                    continue
        except OSError:
            pass
        return True
    return False


def format_problem(path: str) -> str | None:
    """Why exec cannot run the file at ``path`` as a program, as this kernel reads
    it: an empty file, neither ``#!`` nor an ELF header at its start, an ELF file
    for another machine (compared with this interpreter's own, /proc/self/exe),
    no program (an object file), or cut short. None when it can, when it cannot be
    read or told, or when binfmt_misc has handlers that could take it."""
    try:
        with _open_file(path) as file:
            head = file.read(_HEAD)
            if head.startswith(b"#!"):
                return None
            if not head.startswith(_ELF_MAGIC):
                what = "an empty file" if not head else "neither a #! script nor an ELF program"
                problem: str | None = f"{what}: {_ENOEXEC}"
            else:
                problem = _elf_problem(file, head, os.fstat(file.fileno()).st_size)
    except (OSError, ValueError, OverflowError):
        return None
    if problem is None or _other_formats_handled():
        return None
    return problem


def _elf_problem(file: BinaryIO, head: bytes, size: int) -> str | None:
    """What ``format_problem`` finds wrong with an ELF file whose first bytes are
    ``head``, read as the kernel reads it: e_type and e_machine in the system's
    own byte order (not the file's EI_DATA), then, for this machine's own class,
    the program header table and the segments' extent."""
    from struct import unpack_from

    own = _own_elf()
    if own is None:
        return None
    our_class, order, our_machine = own
    if len(head) < 20:
        return f"an ELF file cut short ({len(head)} bytes, not even a header): {_ENOEXEC}"
    kind, machine = unpack_from(order + "HH", head, 16)
    if machine != our_machine:
        if {machine, our_machine} in _COMPAT:
            return None
        if head[5] in (1, 2) and ("<" if head[5] == 1 else ">") != order:
            named = unpack_from(("<" if head[5] == 1 else ">") + "H", head, 18)[0]
            what = f"{_machine_name(named)} ({'big' if head[5] == 2 else 'little'}-endian)"
        else:
            what = _machine_name(machine)
        return (
            f"an ELF program for {what}, not for this machine ({_machine_name(our_machine)}):"
            f" {_ENOEXEC}"
        )
    wide = our_class == 2
    if head[4] != our_class:
        return None  # another ABI of this machine (x32): not judged
    if len(head) < (64 if wide else 52):
        return f"an ELF file cut short ({len(head)} bytes, not even a header): {_ENOEXEC}"
    if kind not in (2, 3):
        what = _E_TYPES.get(kind, f"ELF type {kind}")
        return f"an ELF file that is no program ({what}): {_ENOEXEC}"
    forms, at = ("QHH", (32, 54, 56)) if wide else ("IHH", (28, 42, 44))
    table, entry, count = (unpack_from(order + f, head, where)[0] for f, where in zip(forms, at))
    wanted = 56 if wide else 32
    if entry != wanted or not 1 <= count <= 65536 // wanted:
        return f"an ELF program whose program header table is broken: {_ENOEXEC}"
    if table + entry * count > size:
        cut = f"an ELF program cut short ({size} bytes, its program headers end past them)"
        return f"{cut}: {_ENOEXEC}"
    file.seek(table)
    entries = file.read(entry * count)
    places = ("IQQ", (0, 8, 32)) if wide else ("III", (0, 4, 16))
    for start in range(0, len(entries) - entry + 1, entry):
        kind, offset, length = (
            unpack_from(order + form, entries, start + where)[0] for form, where in zip(*places)
        )
        if kind == _PT_LOAD and offset + length > size:
            return (
                f"an ELF program cut short ({size} bytes, its segments run past them):"
                " it would crash as it starts"
            )
    return None


# -- may the program's user run it? ----------------------------------------------------


def _has_acl(path: str) -> bool:
    """Whether an access ACL may grant more than the mode bits say: not judged then."""
    try:
        os.getxattr(path, "system.posix_acl_access")
    except (OSError, AttributeError):
        return False
    return True


def _granted(st: os.stat_result, uid: int, groups: Collection[int]) -> int:
    """The rwx bits (4, 2, 1) the mode gives ``uid`` with ``groups``: the owner's,
    else the group's, else the others' (the kernel picks one class, not the best)."""
    mode = st.st_mode
    if st.st_uid == uid:
        return (mode >> 6) & 7
    if st.st_gid in groups:
        return (mode >> 3) & 7
    return mode & 7


def _is_script(path: str) -> bool:
    try:
        with _open_file(path) as file:
            return file.read(2) == b"#!"
    except OSError:
        return False


def check_runnable_as(
    command: str,
    path: str,
    uid: int,
    groups: Collection[int],
    who: str,
    *,
    directories: bool = True,
) -> None:
    """``CommandError`` naming ``command`` as typed when the program at ``path``
    cannot be exec'd by ``uid`` with ``groups`` (the ids it will run as, ``who``
    for the message: "--user nobody"), computed from the mode bits, owners and
    groups: root needs an execute bit of any class, another user the one of its
    class, read permission too for a ``#!`` script (its interpreter reads it),
    and, with ``directories``, search permission on each directory above it. A
    file or directory with an access ACL is not judged (nor are LSMs)."""
    import stat

    real = os.path.realpath(path)
    if directories and uid != 0:
        parts = real.split("/")[1:-1]
        for depth in range(len(parts) + 1):
            directory = "/" + "/".join(parts[:depth])
            try:
                st = os.stat(directory)
            except OSError:
                return  # the exec says what is wrong
            if not _granted(st, uid, groups) & 1 and not _has_acl(directory):
                mode = stat.S_IMODE(st.st_mode)
                raise CommandError(
                    f"{command}: {who} may not reach it: {directory} is mode {mode:04o},"
                    f" owner uid {st.st_uid}, group {st.st_gid}"
                )
    try:
        st = os.stat(real)
    except OSError:
        return
    if _has_acl(real):
        return
    mode = stat.S_IMODE(st.st_mode)
    if uid == 0:
        runs, reads = bool(mode & 0o111), True
    else:
        granted = _granted(st, uid, groups)
        runs, reads = bool(granted & 1), bool(granted & 4)
    described = f"mode {mode:04o}, owner uid {st.st_uid}, group {st.st_gid}"
    if not runs:
        raise CommandError(f"{command}: {who} may not execute it ({described})")
    if not reads and _is_script(real):
        raise CommandError(
            f"{command}: {who} may not read it, and its interpreter must ({described})"
        )
