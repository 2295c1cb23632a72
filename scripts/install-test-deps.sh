#!/usr/bin/env bash
# Installs what the integration tests need besides cargo. Idempotent: a second run only
# checks and prints one line per dependency.
#
#   scripts/install-test-deps.sh          # everything
#   scripts/install-test-deps.sh moto     # only moto (make demo uses this for its S3 chain)
#
# - moto (an S3-compatible server, PyPI) in a git-ignored virtualenv at $REPO/.venv,
#   started by scripts/s3-test-server.sh.
#
# Each dependency has its own ensure_* function, called from main at the bottom.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
MOTO_VERSION="5.2.5"

log() { printf 'install-test-deps: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# Installs Debian packages when running as root; otherwise says what to install and
# fails. Runs `apt-get update` once per invocation of this script.
APT_UPDATED=""
apt_install() {
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
        die "missing: $* (install with: sudo apt-get install --no-install-recommends $*)"
    fi
    if [[ -z "$APT_UPDATED" ]]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Python virtualenv + moto (S3-compatible server) -------------------------------------

# Debian's python3 has the venv module but not ensurepip without python3-venv, and
# `python3 -m venv` then fails half-way; check for both.
ensure_python_venv() {
    if ! command -v python3 >/dev/null; then
        apt_install python3 python3-venv
    fi
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        apt_install python3-venv
    fi
    python3 -c 'import venv, ensurepip' 2>/dev/null \
        || die "python3 cannot create virtualenvs: install python3-venv"
}

moto_is_installed() {
    [[ -x "$VENV/bin/moto_server" ]] \
        && "$VENV/bin/python" -c "import sys, moto; sys.exit(moto.__version__ != '$MOTO_VERSION')" \
            2>/dev/null \
        && "$VENV/bin/moto_server" --help >/dev/null 2>&1
}

ensure_moto() {
    if moto_is_installed; then
        log "moto $MOTO_VERSION: already installed in .venv"
        return
    fi
    ensure_python_venv
    if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c '' 2>/dev/null; then
        log "updating the virtualenv .venv"
    else
        # Missing, or broken (e.g. the python it was made from is gone): (re)create it.
        log "creating the virtualenv .venv"
        python3 -m venv --clear "$VENV"
    fi
    log "installing moto[s3]==$MOTO_VERSION flask flask-cors into .venv"
    "$VENV/bin/pip" install -q "moto[s3]==$MOTO_VERSION" flask flask-cors
    moto_is_installed || die "moto was installed but .venv/bin/moto_server does not run"
    log "moto $MOTO_VERSION: installed in .venv"
}

# --- Everything else: one file per dependency in scripts/deps/ ----------------------------
# Each file is sourced in name order and may use log, die and apt_install; it must be
# idempotent and print one line saying what it found or installed (PostgreSQL,
# Prometheus, nginx; see ../shared/reference/build-and-test.md sections 2 and 4).

main() {
    ensure_moto
    [[ "${1:-}" == moto ]] && return
    local dep
    for dep in "$REPO"/scripts/deps/*.sh; do
        [[ -e "$dep" ]] || continue
        # shellcheck source=/dev/null
        source "$dep"
    done
}

main "$@"
