#!/usr/bin/env bash
# Runs a command with a fresh S3-compatible server (moto) on a free loopback port:
#
#   scripts/s3-test-server.sh cargo test --workspace
#
# The command sees GDS_TEST_S3_ENDPOINT=http://127.0.0.1:PORT. The server is stopped when
# the command ends (or this script is interrupted), and the script exits with the
# command's status. The server's log is kept (and its path printed) only if the command
# fails. Install moto first with scripts/install-test-deps.sh.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
MOTO="$VENV/bin/moto_server"
READY_TIMEOUT_SECONDS=30
START_ATTEMPTS=3

log() { printf 's3-test-server: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

(($# > 0)) || die "usage: scripts/s3-test-server.sh COMMAND [ARGS...]"
[[ -x "$MOTO" ]] || die "moto is not installed: run scripts/install-test-deps.sh"
command -v curl >/dev/null || die "curl is missing: install curl"

MOTO_PID=""
CMD_PID=""
LOG="$(mktemp "${TMPDIR:-/tmp}/gds-moto.XXXXXX.log")"
KEEP_LOG=""

# moto runs in a process group of its own (setsid), stopped whole: nothing it may have
# started outlives the run.
stop_moto() {
    if [[ -n "$MOTO_PID" ]]; then
        kill -- "-$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
        MOTO_PID=""
    fi
}

cleanup() {
    stop_moto
    if [[ -n "$KEEP_LOG" ]]; then
        log "moto's log: $LOG"
    else
        rm -f "$LOG"
    fi
}
# On INT/TERM, stop the command too; the EXIT trap then stops moto.
stop_command() {
    if [[ -n "$CMD_PID" ]]; then
        kill -"$1" "$CMD_PID" 2>/dev/null || true
        wait "$CMD_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'stop_command INT; exit 130' INT
trap 'stop_command TERM; exit 143' TERM

# Asks the OS for a free port. Another process could take it before moto binds it;
# start_moto notices moto exiting and tries again with a new port.
free_port() {
    "$VENV/bin/python" -c \
        'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts moto and polls until it answers; returns non-zero if it exited early.
start_moto() {
    PORT="$(free_port)"
    setsid "$MOTO" -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
    MOTO_PID=$!
    local deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
    until curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/"; do
        if ! kill -0 "$MOTO_PID" 2>/dev/null; then
            wait "$MOTO_PID" 2>/dev/null || true
            MOTO_PID=""
            return 1
        fi
        if ((SECONDS >= deadline)); then
            log "moto did not answer on 127.0.0.1:$PORT within ${READY_TIMEOUT_SECONDS}s; last log lines:"
            tail -n 20 "$LOG" >&2
            KEEP_LOG=1
            exit 1
        fi
        sleep 0.1
    done
}

attempt=1
until start_moto; do
    if ((attempt >= START_ATTEMPTS)); then
        log "moto exited at start $START_ATTEMPTS times; last log lines:"
        tail -n 20 "$LOG" >&2
        KEEP_LOG=1
        exit 1
    fi
    attempt=$((attempt + 1))
done

export GDS_TEST_S3_ENDPOINT="http://127.0.0.1:$PORT"
log "moto is serving $GDS_TEST_S3_ENDPOINT (pid $MOTO_PID)"

# In the background plus `wait`, because bash runs traps only between commands: a
# TERM would otherwise wait for the whole test run before moto is stopped.
status=0
"$@" &
CMD_PID=$!
wait "$CMD_PID" || status=$?
CMD_PID=""
if ((status != 0)); then
    KEEP_LOG=1
fi
exit "$status"
