# nginx (Debian's package) for the forward-proxy test, which starts its own nginx with
# manifests/nginx/forward-proxy.conf on a free loopback port. Sourced by
# scripts/install-test-deps.sh (log, die and apt_install come from there).
#
# The package's own service does not start here (no systemd; policy-rc.d refuses), and
# the tests never use it or port 80.

ensure_nginx() {
    if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
        apt_install nginx-light
    fi
    local nginx
    nginx="$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)"
    [[ -x "$nginx" ]] || die "nginx was installed but $nginx is missing"
    log "nginx: $("$nginx" -v 2>&1 | head -n 1)"
}

ensure_nginx
