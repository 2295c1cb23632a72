# openssl (Debian's package) for `make demo` and its test (tests/integration/demo.rs):
# the demo makes a throwaway CA and a certificate for the simulated gorouter with it, so
# that sd-sync's scrape gateway talks HTTPS to the router as it does in production.
# Sourced by scripts/install-test-deps.sh (log, die and apt_install come from there).

ensure_openssl() {
    command -v openssl >/dev/null 2>&1 || apt_install openssl
    command -v openssl >/dev/null 2>&1 || die "openssl was installed but is not on PATH"
    log "openssl: $(openssl version)"
}

ensure_openssl
