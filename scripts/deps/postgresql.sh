# Sourced by scripts/install-test-deps.sh (which provides log, die and apt_install).
# Ensures the PostgreSQL server binaries that scripts/pg-test-server.sh runs (initdb,
# pg_ctl, postgres) and the psql client exist; prints one line.

pg_server_bindir() {
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

ensure_postgresql() {
    local bindir
    if bindir="$(pg_server_bindir)" && command -v psql >/dev/null && command -v runuser >/dev/null \
        && id -u postgres >/dev/null 2>&1; then
        log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}'): already installed ($bindir)"
        return
    fi
    apt_install postgresql postgresql-client
    bindir="$(pg_server_bindir)" || die "PostgreSQL was installed but no initdb was found"
    id -u postgres >/dev/null 2>&1 || die "PostgreSQL was installed but there is no postgres user"
    log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}'): installed ($bindir)"
}

ensure_postgresql
