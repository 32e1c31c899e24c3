#!/bin/bash
# Manual check of the Type=forking systemd recipe under a real systemd.
#
# What it checks, and why
# -----------------------
# examples/systemd/app-forking.service runs examples/systemd/forking_daemon.py
# as a Type=forking service with PIDFile= and Restart=on-failure. When the
# daemon is already running (started by hand), `systemctl start` must not give
# a second daemon. That is harder than it looks: after the failed start systemd
# unlinks the PIDFile= path, and Restart=on-failure then retries the start up
# to StartLimitBurst= times, each time with no pidfile on disk. Only the lock
# the running daemon still holds can make every retry fail, so the daemon
# stays single. Unit tests cannot show this; only systemd as PID 1 can.
#
# So this script boots a Debian bookworm container with systemd-nspawn, installs
# a wheel of this repository into /opt/venv inside it, installs the example
# unit, and runs two scenarios:
#   already-running  a daemon started by hand (in its own scope), then
#                    `systemctl start app-forking`, then the Restart=on-failure
#                    retries: PASS if exactly one daemon is left.
#   clean-start      nothing running; `systemctl start`, status, `systemctl
#                    stop`: PASS if the start succeeds with one daemon whose pid
#                    is in the pidfile and is the unit's MainPID, and the stop
#                    leaves no daemon, no pidfile and the unit inactive/dead.
#
# Usage (as root, from anywhere; the repository is the one holding this file):
#   sudo bash tools/check_systemd_recipe.sh [--worktree] [--workdir DIR]
#     --worktree     check the working tree, uncommitted changes included
#                    (.git, virtualenvs, caches and build output left out);
#                    by default the committed HEAD is checked (git archive HEAD)
#     --workdir DIR  where the rootfs, the host venv and logs live
#                    (default /var/tmp/daemonctx-nspawn, about 400 MB); the
#                    rootfs is built once and reused by later runs
# Environment:
#   DEBIAN_MIRROR    mirror for debootstrap (default: the host's Debian apt
#                    mirror if it has one, else http://deb.debian.org/debian)
#
# Needs: a Debian/Ubuntu-like host, root, network to a Debian mirror (first run)
# and to PyPI (the wheels are built on the host; the container has no network).
# Missing tools (debootstrap, systemd-container, util-linux, ...) are installed
# with apt-get.
#
# Prints one "SCENARIO name: PASS|FAIL key=value..." line per scenario at the
# end. Exit status: 0 all three scenarios pass, 1 otherwise (also when the setup
# fails), 2 bad usage, 130 interrupted. The container is always powered off at
# the end, also on Ctrl-C.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
WORKDIR=/var/tmp/daemonctx-nspawn
MODE="head"
SUITE=bookworm
DEFAULT_MIRROR=http://deb.debian.org/debian
PACKAGES=systemd,dbus,python3,python3-venv,procps
MACHINE=daemonctx-check-$$
UNIT=app-forking.service
PIDFILE=/run/app-forking.pid
PY=/opt/venv/bin/python
DAEMON_PATTERN="^$PY /opt/app/forking_daemon.py"

STEP="starting"        # what is being done, for the failure message
NSPAWN_PID=""          # host pid of systemd-nspawn
LEADER=""              # host pid of the container's PID 1 (systemd)
SUM1="SCENARIO already-running: NOT RUN"
SUM2="SCENARIO clean-start: NOT RUN"
SUM3="SCENARIO watchdog: NOT RUN"
PASS1=no
PASS2=no
PASS3=no
WATCHDOG_UNITS="wd-start.service wd-library.service"
START_TS=$(date +%s)

log() { printf '[check] %s\n' "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

usage() {
    sed -n 's/^#   \(sudo bash .*\)/usage: \1/p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --worktree) MODE=worktree ;;
            --workdir) [ $# -ge 2 ] || usage; WORKDIR=$2; shift ;;
            --workdir=*) WORKDIR=${1#--workdir=} ;;
            -h|--help) usage ;;
            *) echo "unknown argument: $1" >&2; usage ;;
        esac
        shift
    done
    case $WORKDIR in /*) ;; *) WORKDIR=$PWD/$WORKDIR ;; esac
    ROOT=$WORKDIR/rootfs
    RUN=$WORKDIR/run
    STAGE=$WORKDIR/stage
    HOSTVENV=$WORKDIR/hostvenv
}

# ------------------------------------------------------------------ host setup

# Install the host packages that provide missing commands (apt-get only).
install_host_tools() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
    command -v nsenter >/dev/null && command -v flock >/dev/null || missing+=(util-linux)
    command -v gpgv >/dev/null || missing+=(gpgv)
    [ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
    [ "$MODE" = worktree ] || command -v git >/dev/null || missing+=(git)
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    [ ${#missing[@]} -gt 0 ] || return 0
    command -v apt-get >/dev/null || die "missing packages and no apt-get: ${missing[*]}"
    log "installing on the host: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

# Print the first Debian mirror in the host's apt sources (one-line .list and
# deb822 .sources formats), i.e. a "deb" entry for a Debian release suite.
host_debian_mirror() {
    local suites='^(bookworm|bullseye|buster|trixie|forky|sid|stable|testing|unstable|oldstable)$'
    {
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | sed -e 's/#.*//' -e 's/\[[^]]*\]//' \
            | awk '$1 == "deb" { print $2, $3 }'
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
            | awk 'function flush() { if (types ~ /(^| )deb( |$)/ && enabled !~ /^no/)
                                           for (u in uris) for (s in suites) print uris[u], suites[s]
                                       types = enabled = ""; delete uris; delete suites }
                   /^[ \t]*#/ { next }
                   /^[ \t]*$/ { flush(); next }
                   { key = tolower($1); $1 = "" ; sub(/^ /, "") }
                   key == "types:" { types = $0 }
                   key == "enabled:" { enabled = tolower($0) }
                   key == "uris:" { split($0, uris, " ") }
                   key == "suites:" { split($0, suites, " ") }
                   END { flush() }'
    } | awk -v re="$suites" '$2 ~ re { print $1; exit }'
}

# Build the rootfs with debootstrap unless a complete one is there. It is built
# in rootfs.new and renamed when done, so an interrupted build is never reused.
ensure_rootfs() {
    if [ -x "$ROOT/usr/lib/systemd/systemd" ] || [ -x "$ROOT/lib/systemd/systemd" ]; then
        log "reusing rootfs $ROOT"
        return 0
    fi
    local mirror=${DEBIAN_MIRROR:-$(host_debian_mirror || true)}
    mirror=${mirror:-$DEFAULT_MIRROR}
    remove_tree "$ROOT.new"
    log "building the $SUITE rootfs with debootstrap from $mirror (log: $RUN/debootstrap.log)"
    local t0=$SECONDS
    if ! debootstrap --variant=minbase --include="$PACKAGES" \
            --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
            "$SUITE" "$ROOT.new" "$mirror" >"$RUN/debootstrap.log" 2>&1; then
        tail -n 20 "$RUN/debootstrap.log" >&2
        die "debootstrap failed (full log: $RUN/debootstrap.log)"
    fi
    echo daemonctx-check > "$ROOT.new/etc/hostname"
    mv "$ROOT.new" "$ROOT"
    log "rootfs built in $(( SECONDS - t0 )) s: $ROOT ($(du -sh "$ROOT" | cut -f1))"
}

# rm -rf a directory, after unmounting anything an interrupted debootstrap
# left mounted under it (its /proc, /sys, ...).
remove_tree() {
    [ -e "$1" ] || return 0
    local m
    for m in $(awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
        umount -l "$m" || true
    done
    rm -rf --one-file-system "$1"
}

# Copy the sources to check into $STAGE/src: HEAD, or the working tree.
stage_sources() {
    remove_tree "$STAGE"
    mkdir -p "$STAGE/src" "$STAGE/wheels"
    if [ "$MODE" = head ]; then
        # safe.directory: under sudo the checkout belongs to another user
        local git=(git -c safe.directory="$REPO" -C "$REPO")
        log "checking HEAD $("${git[@]}" rev-parse --short HEAD) of $REPO (git archive HEAD; uncommitted changes are not checked, see --worktree)"
        "${git[@]}" archive HEAD | tar -x -C "$STAGE/src"
    else
        log "checking the working tree of $REPO (uncommitted changes included)"
        tar -C "$REPO" --exclude=./.git --exclude=.venv --exclude=venv \
            --exclude=__pycache__ --exclude='*.egg-info' --exclude=.pytest_cache \
            --exclude=.mypy_cache --exclude=.ruff_cache --exclude=./build \
            --exclude=./dist --exclude=./docs/_build -cf - . | tar -x -C "$STAGE/src"
    fi
}

# Build the daemonctx wheel and fetch the lockfile wheel, in a venv on the host.
build_wheels() {
    [ -x "$HOSTVENV/bin/pip" ] || python3 -m venv "$HOSTVENV"
    log "building wheels on the host ($HOSTVENV)"
    if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$HOSTVENV/bin/pip" wheel -q \
            -w "$STAGE/wheels" "$STAGE/src" >"$RUN/wheel.log" 2>&1; then
        tail -n 20 "$RUN/wheel.log" >&2
        die "building the wheels failed (full log: $RUN/wheel.log)"
    fi
    ls "$STAGE"/wheels/daemonctx-*.whl "$STAGE"/wheels/lockfile-*.whl >/dev/null \
        || die "no daemonctx or lockfile wheel in $STAGE/wheels"
    log "wheels: $(cd "$STAGE/wheels" && echo *.whl)"
}

# ------------------------------------------------------------------ container

# Run a command inside the container (all its namespaces), clean environment.
C() {
    nsenter -t "$LEADER" -a -- /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 SYSTEMD_COLORS=0 SYSTEMD_PAGER= "$@"
}

# Set LEADER to the child of nspawn that runs systemd; fail if there is none yet.
find_leader() {
    local status pid
    LEADER=""
    for status in /proc/[0-9]*/status; do
        pid=${status#/proc/}; pid=${pid%/status}
        if awk -v p="$NSPAWN_PID" '$1 == "PPid:" { exit $2 != p }' "$status" 2>/dev/null \
                && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ]; then
            LEADER=$pid
            return 0
        fi
    done
    return 1
}

boot_container() {
    local opts=()
    # A host whose PID 1 is not systemd (a container, a CI box) has no
    # systemd-machined to register with and no unit to run the container in.
    [ -d /run/systemd/system ] || opts=(--register=no --keep-unit)
    log "booting the container (console log: $RUN/console.log)"
    setsid systemd-nspawn -D "$ROOT" --boot --private-network \
        --machine="$MACHINE" --console=read-only "${opts[@]}" \
        </dev/null >"$RUN/console.log" 2>&1 9>&- &
    NSPAWN_PID=$!
    echo "$NSPAWN_PID" > "$RUN/nspawn.pid"
    local _
    for _ in $(seq 1 150); do
        find_leader && break
        kill -0 "$NSPAWN_PID" 2>/dev/null || break
        sleep 0.2
    done
    if [ -z "$LEADER" ]; then
        tail -n 30 "$RUN/console.log" >&2
        die "the container did not boot"
    fi
    wait_until_booted
}

# Wait (at most 90 s) until systemd in the container has finished booting.
wait_until_booted() {
    local state="" deadline=$(( $(date +%s) + 90 ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        state=$(C timeout --foreground 30 systemctl is-system-running --wait 2>/dev/null || true)
        case $state in running|degraded) break ;; esac
        sleep 0.5
    done
    log "container up: ${state:-no state} after $(( $(date +%s) - BOOT_TS )) s ($(C systemctl --version | head -n1))"
    case $state in
        running) ;;
        degraded) C systemctl --failed --no-legend --plain | sed 's/^/    failed unit: /' ;;
        *) die "systemd in the container did not finish booting (state: ${state:-none})" ;;
    esac
}

# Power the container off (SIGKILL after 15 s); no-op if it is not running.
stop_container() {
    [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null || { rm -f "$RUN/nspawn.pid"; return 0; }
    log "powering off the container"
    [ -z "$LEADER" ] || C systemctl poweroff >/dev/null 2>&1 || true
    local _
    for _ in $(seq 1 75); do
        kill -0 "$NSPAWN_PID" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$NSPAWN_PID" 2>/dev/null; then
        log "container still up after 15 s: SIGKILL"
        [ -z "$LEADER" ] || kill -KILL "$LEADER" 2>/dev/null || true
        sleep 1
        kill -KILL "$NSPAWN_PID" 2>/dev/null || true
    fi
    wait "$NSPAWN_PID" 2>/dev/null || true
    rm -f "$RUN/nspawn.pid"
}

# A run killed with SIGKILL may have left its container running: stop it.
stop_stale_container() {
    [ -f "$RUN/nspawn.pid" ] || return 0
    NSPAWN_PID=$(cat "$RUN/nspawn.pid")
    if [ "$(cat "/proc/$NSPAWN_PID/comm" 2>/dev/null)" = systemd-nspawn ]; then
        log "a container of an earlier run is still up (nspawn pid $NSPAWN_PID)"
        find_leader || true
        stop_container
    fi
    NSPAWN_PID="" LEADER=""
    rm -f "$RUN/nspawn.pid"
}

# Install the wheels into /opt/venv and the example unit into the container.
install_into_container() {
    rm -rf "$ROOT/opt/wheels" "$ROOT/opt/app"
    cp -a "$STAGE/wheels" "$ROOT/opt/wheels"
    [ -e "$ROOT/opt/venv/pyvenv.cfg" ] || C python3 -m venv /opt/venv
    if ! C "$PY" -m pip install -q --disable-pip-version-check --no-index \
            --find-links /opt/wheels --force-reinstall daemonctx >"$RUN/pip.log" 2>&1; then
        tail -n 20 "$RUN/pip.log" >&2
        die "pip install in the container failed (full log: $RUN/pip.log)"
    fi
    log "installed in the container: $(C "$PY" -m pip list --disable-pip-version-check 2>/dev/null \
        | awk '$1 == "daemonctx" || $1 == "lockfile" { printf "%s %s  ", $1, $2 }')"
    mkdir -p "$ROOT/opt/app"
    cp "$STAGE/src/examples/systemd/forking_daemon.py" "$ROOT/opt/app/"
    # The unit runs /opt/app/venv/bin/python; here daemonctx is in /opt/venv.
    sed -E "s#^ExecStart=/opt/app/venv/bin/python #ExecStart=$PY #" \
        "$STAGE/src/examples/systemd/$UNIT" > "$ROOT/etc/systemd/system/$UNIT"
    grep -q "^ExecStart=$PY /opt/app/forking_daemon.py" "$ROOT/etc/systemd/system/$UNIT" \
        || die "ExecStart= of examples/systemd/$UNIT is not '/opt/app/venv/bin/python /opt/app/forking_daemon.py ...'; update this script"
    install_watchdog_units
    C systemctl daemon-reload
    log "installed unit (without comments):"
    grep -Ev '^[[:space:]]*(#|$)' "$ROOT/etc/systemd/system/$UNIT" | sed 's/^/    /'
}

# The watchdog scenario's two programs and units (not examples: written here).
install_watchdog_units() {
    # A program that knows nothing of daemonctx, pinging as sd_watchdog_enabled(3)
    # allows: only when WATCHDOG_PID is unset or names this very process.
    cat > "$ROOT/opt/app/wd_program.py" <<'EOF_PY'
import os, socket, time
address = os.environ["NOTIFY_SOCKET"]
pid = os.environ.get("WATCHDOG_PID")
mine = "WATCHDOG_USEC" in os.environ and (pid is None or int(pid) == os.getpid())
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
while True:
    if mine:
        sock.sendto(b"WATCHDOG=1", "\0" + address[1:] if address[0] == "@" else address)
    time.sleep(0.5)
EOF_PY
    cat > "$ROOT/opt/app/wd_library.py" <<'EOF_PY'
import time
from daemonctx import DaemonContext, notify
from daemonctx.pidfile import TimeoutPIDLockFile
from daemonctx.systemd import watchdog_seconds
with DaemonContext(detach_process=True, pidfile=TimeoutPIDLockFile("/run/wd-library.pid")):
    seconds = watchdog_seconds()
    while True:
        if seconds:
            notify(WATCHDOG=1)
        time.sleep(0.5)
EOF_PY
    cat > "$ROOT/etc/systemd/system/wd-start.service" <<EOF_UNIT
[Service]
Type=forking
PIDFile=/run/wd-start.pid
ExecStart=/opt/venv/bin/daemonctx start --pidfile /run/wd-start.pid -- $PY /opt/app/wd_program.py
WatchdogSec=2
EOF_UNIT
    cat > "$ROOT/etc/systemd/system/wd-library.service" <<EOF_UNIT
[Service]
Type=forking
PIDFile=/run/wd-library.pid
ExecStart=$PY /opt/app/wd_library.py
WatchdogSec=2
EOF_UNIT
}

# ------------------------------------------------------------------ inspection

daemon_pids() { C pgrep -f "$DAEMON_PATTERN" | paste -sd' ' - || true; }
count_daemons() { local p; p=$(daemon_pids); set -- $p; echo $#; }
pidfile_state() { if C test -e "$PIDFILE"; then echo present; else echo absent; fi; }
pidfile_pid() { C cat "$PIDFILE" 2>/dev/null | tr -d ' \n' || true; }
unit_prop() { C systemctl show -p "$1" --value "$UNIT"; }
unit_state() { echo "$(unit_prop ActiveState)/$(unit_prop SubState)"; }

# One line per daemon: pid, parent, unit, and the pidfile it holds open
# ("(deleted)": the file was unlinked under it).
show_daemons() {
    local p
    for p in $(daemon_pids); do
        printf '    pid %s ppid %s unit %s\n' "$p" \
            "$(C ps -o ppid= -p "$p" | tr -d ' ')" "$(C ps -o unit= -p "$p" | tr -d ' ')"
        C ls -l "/proc/$p/fd" 2>/dev/null | grep -F app-forking | sed 's/.*-> /        holds fd -> /' || true
    done
}

show_status() {
    echo "--- systemctl status $UNIT"
    C systemctl status "$UNIT" --no-pager -l 2>&1 | sed 's/^/    /' || true
}

show_journal() {  # $1: since
    echo "--- journalctl -u $UNIT (this scenario)"
    C journalctl -u "$UNIT" --no-pager --since "$1" -o short-precise 2>&1 | sed 's/^/    /' || true
}

# Wait until the unit has settled (active or failed: no more restarts), max 30 s.
wait_unit_settled() {
    local _
    for _ in $(seq 1 60); do
        case $(unit_state) in active/running|failed/*|inactive/dead) return 0 ;; esac
        sleep 0.5
    done
}

# Stop the unit, the hand-started scopes and any daemon left; remove the pidfile.
cleanup_daemons() {
    [ -n "$LEADER" ] || return 0
    local s p
    C systemctl stop "$UNIT" 2>/dev/null || true
    for s in $(C systemctl list-units --all --plain --no-legend 'app-manual-*.scope' | awk '{ print $1 }'); do
        C systemctl stop "$s" || true
    done
    C systemctl reset-failed "$UNIT" 2>/dev/null || true
    for p in $(daemon_pids); do C kill -TERM "$p" || true; done
    sleep 0.5
    for p in $(daemon_pids); do C kill -KILL "$p" || true; done
    C rm -f "$PIDFILE"
}

# ------------------------------------------------------------------ scenarios

scenario_already_running() {
    echo
    echo "=== SCENARIO already-running: a daemon started by hand, then systemctl start $UNIT"
    cleanup_daemons
    local since rc=0 out manual n pidfile pid state restarts survivor=none
    since="@$(date +%s)"
    sleep 1
    C systemd-run --quiet --scope --unit="app-manual-$$.scope" \
        "$PY" /opt/app/forking_daemon.py --pidfile "$PIDFILE" || rc=$?
    manual=$(pidfile_pid)
    log "hand-started daemon: launcher exit status $rc, pid ${manual:-none}, daemons now $(count_daemons)"
    rc=0
    out=$(C timeout --foreground 60 systemctl start "$UNIT" 2>&1) || rc=$?
    log "systemctl start: exit status $rc${out:+: ${out%%$'\n'*}}"
    log "waiting for Restart=on-failure to settle"
    wait_unit_settled
    sleep 1
    n=$(count_daemons) pidfile=$(pidfile_state) pid=$(pidfile_pid)
    state=$(unit_state) restarts=$(unit_prop NRestarts)
    [ "$n" != 1 ] || survivor=$([ "$(daemon_pids)" = "$manual" ] && echo hand-started || echo other)
    echo "--- daemons: $n"
    show_daemons
    echo "--- $PIDFILE: $pidfile${pid:+ (contains $pid)}"
    show_status
    show_journal "$since"
    [ "$n" = 1 ] && PASS1=yes
    SUM1="SCENARIO already-running: $(verdict $PASS1) daemons=$n survivor=$survivor manual_pid=${manual:-none} start_rc=$rc unit=$state NRestarts=$restarts pidfile=$pidfile pidfile_pid=${pid:-none}"
    echo "$SUM1"
    cleanup_daemons
}

scenario_clean_start() {
    echo
    echo "=== SCENARIO clean-start: nothing running; systemctl start, status, stop"
    cleanup_daemons
    local since before rc=0 out n pid main state match=no stop_rc=0 n_after pf_after state_after result
    since="@$(date +%s)"
    sleep 1
    before=$(count_daemons)
    out=$(C timeout --foreground 60 systemctl start "$UNIT" 2>&1) || rc=$?
    log "systemctl start: exit status $rc${out:+: ${out%%$'\n'*}}"
    sleep 1
    n=$(count_daemons) pid=$(pidfile_pid) main=$(unit_prop MainPID) state=$(unit_state)
    [ -n "$pid" ] && [ "$pid" = "$main" ] && match=yes
    echo "--- daemons: $n"
    show_daemons
    echo "--- $PIDFILE: $(pidfile_state)${pid:+ (contains $pid)}"
    show_status
    out=$(C timeout --foreground 60 systemctl stop "$UNIT" 2>&1) || stop_rc=$?
    log "systemctl stop: exit status $stop_rc${out:+: ${out%%$'\n'*}}"
    sleep 1
    n_after=$(count_daemons) pf_after=$(pidfile_state) state_after=$(unit_state) result=$(unit_prop Result)
    echo "--- after stop: daemons=$n_after pidfile=$pf_after unit=$state_after result=$result"
    show_journal "$since"
    [ "$before $rc $n $state $match" = "0 0 1 active/running yes" ] \
        && [ "$stop_rc $n_after $pf_after $state_after" = "0 0 absent inactive/dead" ] && PASS2=yes
    SUM2="SCENARIO clean-start: $(verdict $PASS2) daemons_before=$before start_rc=$rc daemons=$n unit=$state MainPID=$main pidfile_pid=${pid:-none} match=$match stop_rc=$stop_rc daemons_after_stop=$n_after pidfile_after_stop=$pf_after unit_after_stop=$state_after result=$result"
    echo "$SUM2"
    cleanup_daemons
}

scenario_watchdog() {
    echo
    echo "=== SCENARIO watchdog: Type=forking units with WatchdogSec=2, a detached daemon pinging"
    local since unit rc out state restarts main pid pinged fields="" ok=yes name
    since="@$(date +%s)"
    sleep 1
    for unit in $WATCHDOG_UNITS; do
        rc=0
        out=$(C timeout --foreground 60 systemctl start "$unit" 2>&1) || rc=$?
        log "systemctl start $unit: exit status $rc${out:+: ${out%%$'\n'*}}"
        [ "$rc" = 0 ] || ok=no
    done
    log "waiting 7 s: 3.5 times WatchdogSec="
    sleep 7
    for unit in $WATCHDOG_UNITS; do
        name=${unit%.service}
        state=$(C systemctl show -p ActiveState --value "$unit")/$(C systemctl show -p SubState --value "$unit")
        restarts=$(C systemctl show -p NRestarts --value "$unit")
        main=$(C systemctl show -p MainPID --value "$unit")
        pid=$(C cat "/run/$name.pid" 2>/dev/null | tr -d ' \n' || true)
        # Set by the last WATCHDOG=1 systemd accepted; empty if it took none.
        pinged=$(C systemctl show -p WatchdogTimestampMonotonic --value "$unit")
        [ "${pinged:-0}" != 0 ] && pinged=yes || pinged=no
        fields="$fields $name=$state,NRestarts=${restarts:-?},MainPID=$main,pidfile=${pid:-none},pinged=$pinged"
        [ "$state $restarts $pinged" = "active/running 0 yes" ] && [ -n "$pid" ] && [ "$pid" = "$main" ] || ok=no
        echo "--- journalctl -u $unit (this scenario)"
        C journalctl -u "$unit" --no-pager --since "$since" -o short-precise 2>&1 | sed 's/^/    /' || true
        C systemctl stop "$unit" 2>/dev/null || true
        C systemctl reset-failed "$unit" 2>/dev/null || true
    done
    PASS3=$ok
    SUM3="SCENARIO watchdog: $(verdict $PASS3)$fields"
    echo "$SUM3"
}

verdict() { if [ "$1" = yes ]; then echo PASS; else echo FAIL; fi; }

# ------------------------------------------------------------------ main

# EXIT trap: power the container off, print the summary, set the exit status.
finish() {
    local rc=$?
    trap '' INT TERM
    trap - EXIT
    set +e
    [ "$rc" = 0 ] || [ "$rc" = 130 ] || log "FAILED while $STEP (status $rc)" >&2
    cleanup_daemons >/dev/null 2>&1
    stop_container
    echo
    echo "=== SUMMARY ($(( $(date +%s) - START_TS )) s)"
    echo "$SUM1"
    echo "$SUM2"
    echo "$SUM3"
    if [ "$rc" = 130 ]; then
        log "interrupted"
    elif [ "$rc" = 0 ] && [ "$PASS1$PASS2$PASS3" = yesyesyes ]; then
        log "PASS"
    else
        log "FAIL"; rc=1
    fi
    exit "$rc"
}

main() {
    parse_args "$@"
    [ "$(id -u)" = 0 ] || { echo "run as root (sudo bash $0)" >&2; exit 2; }
    [ -f "$REPO/examples/systemd/$UNIT" ] || { echo "$REPO is not a daemonctx checkout" >&2; exit 2; }
    mkdir -p "$WORKDIR" "$RUN"
    exec 9>"$WORKDIR/lock"
    flock -n 9 || { echo "another run is using $WORKDIR" >&2; exit 2; }

    trap finish EXIT
    trap 'exit 130' INT TERM
    STEP="installing host tools";   install_host_tools
    STEP="stopping a stale container"; stop_stale_container
    STEP="building the rootfs";     ensure_rootfs
    STEP="copying the sources";     stage_sources
    STEP="building the wheels";     build_wheels
    STEP="booting the container";   BOOT_TS=$(date +%s); boot_container
    STEP="installing into the container"; install_into_container
    STEP="running scenario already-running"; scenario_already_running
    STEP="running scenario clean-start";     scenario_clean_start
    STEP="running scenario watchdog";        scenario_watchdog
    STEP="finishing"
}

main "$@"
