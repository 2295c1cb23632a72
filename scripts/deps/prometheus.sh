# Prometheus (Debian's package, 2.42 on bookworm) for the sd-sync discovery test, which
# starts its own `prometheus` on a free loopback port. Sourced by
# scripts/install-test-deps.sh (log, die and apt_install come from there).
#
# The package's own service does not start here (no systemd; policy-rc.d refuses), and
# the tests never use it or port 9090. promtool comes with the package and checks the
# example configs in manifests/prometheus/.

ensure_prometheus() {
    if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
        apt_install prometheus
    fi
    command -v prometheus >/dev/null 2>&1 \
        || die "prometheus was installed but is not on PATH"
    local version
    version="$(prometheus --version 2>&1 | head -n 1)"
    log "prometheus: ${version:-installed}"
}

ensure_prometheus
