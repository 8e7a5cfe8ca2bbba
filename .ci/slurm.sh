#!/usr/bin/env bash
# Local, self-contained Slurm cluster for ftc tests and CI (Debian 12, slurm-wlm 22.05).
#
# One machine runs munged, MariaDB, slurmdbd, slurmctld and four slurmd's that
# pretend to be four nodes:
#   partition h100 (default, MaxTime 2-00:00:00): node1,node2  Gres=gpu:h100:8  Feature=h100
#   partition a100 (MaxTime 1-00:00:00):          node3,node4  Gres=gpu:a100:8  Feature=a100
#   partition cpu  (MaxTime 04:00:00):            node1-4, no GPUs asked for: real CPU training in tests
#   partitions gpuA100x4, gpuH100x8, gpuA100x8-interactive (MaxTime 01:00:00): examples/site's shape
# Each node claims 96 CPUs and RealMemory=500000; the GPUs are symlinks to /dev/null.
# No systemd: every daemon is started by hand and tracked by a pid file in the state dir.
#
# Usage: .ci/slurm.sh install|start|stop|status|reset|env
#   install  apt-get install the packages (idempotent, quiet)
#   start    start whatever is not running; wait until all nodes are idle and
#            sacct answers (deadline FTC_SLURM_START_TIMEOUT, default 60 s)
#   stop     stop the daemons this script started (only PIDs from its pid files)
#   status   print sinfo; exit 0 when the cluster answers, non-zero otherwise
#   reset    cancel jobs, stop, wipe the state dir, start
#   env      print `export ...` lines: eval "$(.ci/slurm.sh env)"
#
# Environment:
#   FTC_SLURM_DIR        state dir (default /tmp/ftc-slurm)
#   FTC_SLURM_PORT_BASE  ports: slurmd BASE+1..4, slurmctld BASE+817, slurmdbd BASE+819,
#                        MariaDB BASE+306 (default 17000)
#   FTC_SLURM_START_TIMEOUT  seconds `start` waits for idle nodes (default 60)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TEMPLATES="$HERE/slurm"
STATE="${FTC_SLURM_DIR:-/tmp/ftc-slurm}"
PORT_BASE="${FTC_SLURM_PORT_BASE:-17000}"
START_TIMEOUT="${FTC_SLURM_START_TIMEOUT:-60}"
NODES=(node1 node2 node3 node4)
CTLD_PORT=$((PORT_BASE + 817))
DBD_PORT=$((PORT_BASE + 819))
MYSQL_PORT=$((PORT_BASE + 306))
CONF="$STATE/etc/slurm.conf"
MYSQL_SOCK="$STATE/mysql/mysqld.sock"
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
T=10 # seconds allowed to any single client call

log() { printf 'ftc-slurm: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- helpers
# fd 9 holds $STATE.lock during start/stop; every daemon is launched with 9>&-
# so that it does not inherit (and keep) the lock.
# Client commands block while slurmctld is down: always wrap them in timeout.
sl() { SLURM_CONF="$CONF" timeout "$T" "$@"; }

pid_of() { # pid_of NAME -> pid from $STATE/run/NAME.pid if that process is alive
    local f="$STATE/run/$1.pid" pid
    [[ -s $f ]] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    # guard against a recycled pid: the process must be one of our daemons
    case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
        munged | mariadbd | mysqld | slurmdbd | slurmctld | slurmd) echo "$pid" ;;
        *) return 1 ;;
    esac
}

wait_for() { # wait_for SECONDS DESCRIPTION CMD... ; polls CMD every 0.5 s
    local secs="$1" what="$2" deadline
    shift 2
    deadline=$((SECONDS + secs))
    # never past the overall `start` deadline
    if [[ -n ${START_DEADLINE:-} ]] && ((START_DEADLINE < deadline)); then deadline=$START_DEADLINE; fi
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { log "timed out waiting for $what"; return 1; }
        sleep 0.5
    done
}

kill_pidfiles() { # kill_pidfiles GRACE_SECONDS NAME... ; TERM all, wait, then KILL leftovers
    local grace="$1" name pid i alive
    shift
    local -A pids=()
    for name in "$@"; do
        if pid="$(pid_of "$name")"; then
            pids[$name]=$pid
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for ((i = 0; i < grace * 5; i++)); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.2
    done
    for name in "${!pids[@]}"; do
        pid=${pids[$name]}
        if kill -0 "$pid" 2>/dev/null; then
            # slurmd ignores SIGTERM while it retries its registration
            log "$name (pid $pid) ignored SIGTERM for ${grace}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 25; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        fi
        log "stopped $name (pid $pid)"
    done
    for name in "$@"; do rm -f "$STATE/run/$name.pid"; done
}

need_installed() {
    local b
    for b in munged mungekey mariadbd mariadb-install-db mariadb mariadb-admin slurmdbd slurmctld slurmd sinfo sacct sacctmgr; do
        command -v "$b" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$b" >/dev/null 2>&1 ||
            die "$b not found; run: $0 install"
    done
}

# ---------------------------------------------------------------- install
cmd_install() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        log "packages already installed"
        return 0
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local apt_log="/tmp/ftc-slurm-apt.log"
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$apt_log" 2>&1; then
        apt-get update -qq >>"$apt_log" 2>&1 || true
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$apt_log" 2>&1 ||
            { tail -n 20 "$apt_log" >&2; die "apt-get install failed (log: $apt_log)"; }
    fi
    log "installed"
}

# ---------------------------------------------------------------- start
render() { # render TEMPLATE DEST
    sed -e "s|@STATE@|$STATE|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" \
        -e "s|@MYSQL_PORT@|$MYSQL_PORT|g" \
        -e "s|@NODE1_PORT@|$((PORT_BASE + 1))|g" -e "s|@NODE2_PORT@|$((PORT_BASE + 2))|g" \
        -e "s|@NODE3_PORT@|$((PORT_BASE + 3))|g" -e "s|@NODE4_PORT@|$((PORT_BASE + 4))|g" \
        "$1" >"$2.tmp"
    if [[ -f $2 ]] && ! cmp -s "$2.tmp" "$2"; then CONFIG_CHANGED=1; fi
    mv -f "$2.tmp" "$2"
}
CONFIG_CHANGED=0

prepare() {
    local n i
    mkdir -p "$STATE"/{etc,run,log,ctld,munge,mysql,dev}
    for n in "${NODES[@]}"; do mkdir -p "$STATE/spool/$n" "$STATE/dev/$n"; done
    chmod 755 "$STATE"
    chmod 700 "$STATE/munge"
    render "$TEMPLATES/slurm.conf" "$CONF"
    render "$TEMPLATES/gres.conf" "$STATE/etc/gres.conf"
    render "$TEMPLATES/slurmdbd.conf" "$STATE/etc/slurmdbd.conf"
    chmod 600 "$STATE/etc/slurmdbd.conf" # slurmdbd refuses a readable one
    # fake GPUs: 8 symlinks to /dev/null per node
    for n in "${NODES[@]}"; do
        for i in 0 1 2 3 4 5 6 7; do ln -sfn /dev/null "$STATE/dev/$n/gpu$i"; done
    done
    # node names must resolve (rendezvous addresses come from `scontrol show hostnames`)
    for n in "${NODES[@]}"; do
        if ! getent hosts "$n" >/dev/null 2>&1; then
            echo "127.0.0.1 $n" >>/etc/hosts || die "cannot add $n to /etc/hosts"
        fi
    done
}

start_munge() {
    pid_of munged >/dev/null && return 0
    [[ -s $STATE/munge/munge.key ]] || mungekey -c -k "$STATE/munge/munge.key"
    chmod 600 "$STATE/munge/munge.key"
    rm -f "$STATE/munge/munge.socket" "$STATE/munge/munge.socket.lock"
    munged --force --socket="$STATE/munge/munge.socket" --key-file="$STATE/munge/munge.key" \
        --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" \
        --seed-file="$STATE/munge/munged.seed" 9>&- ||
        die "munged failed to start (see $STATE/log/munged.log)"
    wait_for 10 munged pid_of munged || die "munged did not start (see $STATE/log/munged.log)"
}

mysql_q() { timeout "$T" mariadb --no-defaults --socket="$MYSQL_SOCK" -uroot "$@"; }

start_mysql() {
    local data="$STATE/mysql/data"
    if ! pid_of mariadb >/dev/null; then
        if [[ ! -d $data/mysql ]]; then
            rm -rf "$data"
            mariadb-install-db --no-defaults --datadir="$data" --user=root \
                --auth-root-authentication-method=socket --skip-test-db \
                >"$STATE/log/mariadb-install.log" 2>&1 ||
                die "mariadb-install-db failed (see $STATE/log/mariadb-install.log)"
        fi
        rm -f "$MYSQL_SOCK"
        mariadbd --no-defaults --user=root --datadir="$data" --socket="$MYSQL_SOCK" \
            --port="$MYSQL_PORT" --bind-address=127.0.0.1 --pid-file="$STATE/run/mariadb.pid" \
            --log-error="$STATE/log/mariadb.log" --skip-name-resolve \
            --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
            </dev/null >>"$STATE/log/mariadb.log" 2>&1 9>&- &
        echo $! >"$STATE/run/mariadb.pid" # now, so that `stop` finds it even if start fails
        disown
        wait_for 30 "MariaDB" mysql_q -e 'SELECT 1' || die "MariaDB did not start (see $STATE/log/mariadb.log)"
        wait_for 5 "MariaDB pid file" pid_of mariadb || die "MariaDB pid file missing"
    fi
    mysql_q -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'ftc-ci';
                CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'ftc-ci';
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" ||
        die "could not create the MariaDB user for slurmdbd"
}

start_slurmdbd() {
    if ! pid_of slurmdbd >/dev/null; then
        SLURM_CONF="$CONF" slurmdbd 9>&- || die "slurmdbd failed to start (see $STATE/log/slurmdbd.log)"
    fi
    wait_for 30 slurmdbd sl sacctmgr -n list cluster || die "slurmdbd does not answer (see $STATE/log/slurmdbd.log)"
    # cluster + accounts (associations are not enforced: any --account works)
    if [[ -z $(sl sacctmgr -n -P list cluster ftc format=cluster 2>/dev/null) ]]; then
        sl sacctmgr -i add cluster ftc >/dev/null || die "sacctmgr add cluster failed"
    fi
    local a
    for a in ftc-ci ml ml-research; do
        if [[ -z $(sl sacctmgr -n -P list account "$a" format=account 2>/dev/null) ]]; then
            sl sacctmgr -i add account "$a" cluster=ftc description="$a" organization=ftc >/dev/null ||
                die "sacctmgr add account $a failed"
        fi
    done
    if [[ -z $(sl sacctmgr -n -P list user root format=user 2>/dev/null | grep -x root) ]] ||
        [[ -z $(sl sacctmgr -n -P list assoc user=root account=ftc-ci format=user 2>/dev/null) ]]; then
        sl sacctmgr -i add user root account=ftc-ci,ml,ml-research defaultaccount=ftc-ci cluster=ftc >/dev/null || true
    fi
}

start_slurmctld() {
    pid_of slurmctld >/dev/null && return 0
    SLURM_CONF="$CONF" slurmctld -f "$CONF" 9>&- || die "slurmctld failed to start (see $STATE/log/slurmctld.log)"
    wait_for 30 slurmctld sl scontrol ping || die "slurmctld does not answer (see $STATE/log/slurmctld.log)"
}

start_slurmd() {
    local n
    for n in "${NODES[@]}"; do
        pid_of "slurmd-$n" >/dev/null && continue
        SLURM_CONF="$CONF" slurmd -f "$CONF" -N "$n" 9>&- || die "slurmd -N $n failed (see $STATE/log/slurmd-$n.log)"
    done
}

all_idle() { # every node answers and none is down/unknown/not responding
    local states
    states="$(sl sinfo -h -N -o '%N %T' 2>/dev/null | sort -u)" || return 1
    [[ $(grep -c . <<<"$states") -eq ${#NODES[@]} ]] || return 1
    ! grep -qvE ' (idle|mixed|allocated|completing)$' <<<"$states"
}

resume_nodes() { # nodes left DOWN/DRAIN from an earlier run (e.g. killed slurmd)
    local bad
    bad="$(sl sinfo -h -N -t down,drain,fail -o '%N' 2>/dev/null | sort -u | paste -sd, -)" || return 0
    [[ -n $bad ]] && sl scontrol update nodename="$bad" state=resume >/dev/null 2>&1 || true
}

summary() {
    local parts
    parts="$(sl sinfo -h -o '%P:%D×%G(%t)' 2>/dev/null | paste -sd' ' -)"
    echo "ftc-slurm: running in $STATE (${1}s): $parts; SLURM_CONF=$CONF"
}

cmd_start() {
    need_installed
    local t0=$SECONDS
    START_DEADLINE=$((t0 + START_TIMEOUT))
    mkdir -p "$(dirname "$STATE")"
    exec 9>"$STATE.lock"
    flock -w 120 9 || die "another start/stop holds $STATE.lock"
    prepare
    if ((CONFIG_CHANGED)) && pid_of slurmctld >/dev/null; then
        log "WARNING: config templates changed while running; run '$0 stop' then '$0 start' to apply"
    fi
    start_munge
    start_mysql
    start_slurmdbd
    start_slurmctld
    start_slurmd
    local deadline=$START_DEADLINE resumed=0
    until all_idle && sl sacct -n -X -S now-1minutes >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            sl sinfo -N >&2 || true
            die "nodes not idle after ${START_TIMEOUT}s (logs: $STATE/log)"
        fi
        if ((resumed == 0 && SECONDS - t0 > 5)); then resume_nodes; resumed=1; fi
        sleep 0.5
    done
    summary $((SECONDS - t0))
}

# ---------------------------------------------------------------- stop / status / reset
cmd_stop() {
    mkdir -p "$(dirname "$STATE")"
    exec 9>"$STATE.lock"
    flock -w 120 9 || die "another start/stop holds $STATE.lock"
    kill_pidfiles 3 "${NODES[@]/#/slurmd-}"
    kill_pidfiles 10 slurmctld
    kill_pidfiles 10 slurmdbd
    kill_pidfiles 30 mariadb
    kill_pidfiles 5 munged
    log "stopped"
}

cmd_status() {
    local d pid down=0
    for d in munged mariadb slurmdbd slurmctld "${NODES[@]/#/slurmd-}"; do
        if pid="$(pid_of "$d")"; then printf '%-14s pid %s\n' "$d" "$pid"; else printf '%-14s down\n' "$d"; down=$((down + 1)); fi
    done
    ((down < 8)) || { log "not running"; return 1; }
    if ! sl sinfo; then log "slurmctld does not answer"; return 1; fi
    ((down == 0)) || { log "$down daemon(s) down: run $0 start"; return 1; }
}

cmd_reset() {
    if [[ -f $CONF ]] && sl scontrol ping >/dev/null 2>&1; then
        sl scancel --state=PENDING,RUNNING,SUSPENDED,REQUEUED -u "$(id -un)" >/dev/null 2>&1 || true
        sl squeue -h -o %i 2>/dev/null | xargs -r -n 50 timeout "$T" env SLURM_CONF="$CONF" scancel 2>/dev/null || true
        sleep 1
    fi
    cmd_stop
    exec 9>&- || true
    case "$STATE" in
        / | /tmp | /tmp/ | "$HOME" | "") die "refusing to wipe state dir '$STATE'" ;;
    esac
    rm -rf "$STATE"
    log "wiped $STATE"
    cmd_start
}

cmd_env() {
    echo "export SLURM_CONF=$CONF"
    echo "export FTC_SLURM_DIR=$STATE"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    env) cmd_env ;;
    *) echo "usage: $0 install|start|stop|status|reset|env" >&2; exit 2 ;;
esac
