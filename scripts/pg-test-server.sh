#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL cluster on a free loopback port:
#
#   scripts/pg-test-server.sh cargo test --workspace
#
# The command sees GDS_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:PORT/postgres (trust
# authentication; tests create their own databases). The cluster lives in a temporary
# directory owned by the postgres user (initdb and postgres refuse to run as root), runs
# with fsync=off, and is stopped and deleted when the command ends or this script is
# interrupted; the script exits with the command's status. The server's log is kept (and
# its path printed) only if the command fails. Install PostgreSQL first with
# scripts/install-test-deps.sh.
set -euo pipefail

READY_TIMEOUT_SECONDS=30
START_ATTEMPTS=3

log() { printf 'pg-test-server: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

(($# > 0)) || die "usage: scripts/pg-test-server.sh COMMAND [ARGS...]"

pg_bindir() {
    local dir
    if command -v pg_config >/dev/null && dir="$(pg_config --bindir 2>/dev/null)" \
        && [[ -x "$dir/initdb" ]]; then
        printf '%s\n' "$dir"
        return 0
    fi
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "$dir/initdb" ]] && { printf '%s\n' "$dir"; return 0; }
    done
    return 1
}
PGBIN="$(pg_bindir)" || die "PostgreSQL's initdb is missing: run scripts/install-test-deps.sh"

# initdb and postgres refuse to run as root: run them as the postgres user (or as
# ourselves when we are not root).
if [[ "$(id -u)" == 0 ]]; then
    id -u postgres >/dev/null 2>&1 || die "there is no postgres user: run scripts/install-test-deps.sh"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

PGD="$(mktemp -d "/tmp/gds-pg.XXXXXX")"
[[ "$(id -u)" == 0 ]] && chown postgres "$PGD"
LOG="$PGD/server.log"
KEEP_LOG=""
STARTED=""
CMD_PID=""

stop_cluster() {
    if [[ -n "$STARTED" ]]; then
        as_pg "$PGBIN/pg_ctl" -D "$PGD/data" -m immediate -w stop >/dev/null 2>&1 || true
        STARTED=""
    fi
}

cleanup() {
    stop_cluster
    if [[ -n "$KEEP_LOG" && -f "$LOG" ]]; then
        local kept
        kept="$(mktemp "${TMPDIR:-/tmp}/gds-pg.XXXXXX.log")"
        cp "$LOG" "$kept"
        log "PostgreSQL's log: $kept"
    fi
    rm -rf "$PGD"
}
stop_command() {
    if [[ -n "$CMD_PID" ]]; then
        kill -"$1" "$CMD_PID" 2>/dev/null || true
        wait "$CMD_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'stop_command INT; exit 130' INT
trap 'stop_command TERM; exit 143' TERM

free_port() {
    python3 -c \
        'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

as_pg "$PGBIN/initdb" -D "$PGD/data" -U postgres -A trust --no-sync -E UTF8 >"$PGD/initdb.log" 2>&1 \
    || { cat "$PGD/initdb.log" >&2; die "initdb failed"; }

# Another process could take the free port before postgres binds it; pg_ctl then fails
# and we try again with a new port.
start_cluster() {
    PORT="$(free_port)"
    as_pg "$PGBIN/pg_ctl" -D "$PGD/data" -l "$LOG" -w -t "$READY_TIMEOUT_SECONDS" start \
        -o "-p $PORT -k $PGD -c listen_addresses=127.0.0.1 -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        >/dev/null 2>&1
}

attempt=1
until start_cluster; do
    if ((attempt >= START_ATTEMPTS)); then
        log "PostgreSQL did not start $START_ATTEMPTS times; last log lines:"
        tail -n 20 "$LOG" >&2 || true
        KEEP_LOG=1
        exit 1
    fi
    attempt=$((attempt + 1))
done
STARTED=1

export GDS_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
log "PostgreSQL is serving $GDS_TEST_DATABASE_URL (data in $PGD)"

# In the background plus `wait`, because bash runs traps only between commands.
status=0
"$@" &
CMD_PID=$!
wait "$CMD_PID" || status=$?
CMD_PID=""
if ((status != 0)); then
    KEEP_LOG=1
fi
exit "$status"
