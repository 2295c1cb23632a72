#!/usr/bin/env bash
# `make demo`: the whole system on one machine, on embedded defaults, and a tenant's story
# played against it the way the Cloud Controller drives a service broker.
#
#   scripts/demo.sh            build, start the stack, walk the story, stay up until Ctrl-C
#   scripts/demo.sh --check    the same on free ports, verifying every step; exits 0 when
#                              all of them worked, 1 on the first that did not (used by
#                              tests/integration/demo.rs, i.e. `make test`)
#   scripts/demo.sh --help     the settings below
#
# The stack: the CF simulator (`cf-sim --demo`: CC API v3, UAA and a simulated gorouter
# with app instances), the broker and the updater on one SQLite file, a target store, and,
# when Debian's `prometheus` is installed (or installable: as root or with password-less
# sudo), a Prometheus scraping through sd-sync's scrape gateway, pinned to the simulated
# gorouter, which serves HTTPS with a certificate from a throwaway CA made here (openssl,
# installed the same way). With the local directory store there is no sd-sync: Prometheus
# then scrapes through nginx running the shipped forward proxy
# (manifests/nginx/forward-proxy.conf, pointed at the gorouter), the compatible alternative.
#
# The store: sd-sync mirrors S3 only (`--mapping s3://BUCKET/PREFIX=DIR`). So:
# - `s3` (chosen when moto is installed in .venv by scripts/install-test-deps.sh, or with
#   DEMO_S3_ENDPOINT): broker and updater write to a bucket on a local S3-compatible server,
#   sd-sync mirrors its active/ into the Prometheus targets directory and serves it for
#   http_sd; the production chain, end to end.
# - `local` (otherwise; nothing beyond cargo and curl needed): ENVIRONMENT=local, the
#   broker and the updater write the bucket layout into a directory, and Prometheus'
#   file_sd reads its active/ directly; there is nothing for sd-sync to copy.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

usage() {
    cat <<'TXT'
usage: scripts/demo.sh [--check]

  --check                 automated run: free ports, no colours, verify every step, exit
                          (also DEMO_CHECK=1)
Settings (environment):
  DEMO_STORE              auto (default) | s3 | local   where targets are stored (see above)
  DEMO_S3_ENDPOINT        an S3-compatible server to use instead of starting moto
                          (credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, default test/test)
  DEMO_PROMETHEUS         auto (default) | 1 (required) | 0 (off)
  DEMO_INSTALL            1 (default; 0 with --check): install missing prometheus/openssl/nginx
                          with apt-get as root or with `sudo -n`
  DEMO_PORTS              fixed (default; free with --check) | free
  DEMO_SIM_PORT (or CF_SIM_PORT) 9292, DEMO_ROUTER_PORT 9293, DEMO_BROKER_PORT 9294,
  DEMO_UPDATER_PORT 9295, DEMO_SD_SYNC_PORT 9296, DEMO_PROXY_PORT 9297,
  DEMO_PROMETHEUS_PORT 9298, DEMO_S3_PORT 9299 (moto)
  DEMO_BUILD              1 (default) | 0: use the binaries already in DEMO_BIN_DIR
  DEMO_BIN_DIR            default ${CARGO_TARGET_DIR:-target}/debug
  DEMO_STATE_DIR          keep the database, store, configs and logs here (default: a
                          temporary directory, removed at exit unless something failed)
  DEMO_STEP_TIMEOUT       seconds to wait for each effect (default 30)
TXT
}

CHECK="${DEMO_CHECK:-0}"
for arg in "$@"; do
    case "$arg" in
    --check) CHECK=1 ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'demo: unknown argument %s\n' "$arg" >&2; usage >&2; exit 2 ;;
    esac
done
[[ "$CHECK" == 1 ]] || CHECK=0

if ((CHECK)); then
    PORTS="${DEMO_PORTS:-free}"
    INSTALL="${DEMO_INSTALL:-0}"
else
    PORTS="${DEMO_PORTS:-fixed}"
    INSTALL="${DEMO_INSTALL:-1}"
fi
STORE_MODE="${DEMO_STORE:-auto}"
PROMETHEUS_MODE="${DEMO_PROMETHEUS:-auto}"
STEP_TIMEOUT="${DEMO_STEP_TIMEOUT:-30}"
BIN_DIR="${DEMO_BIN_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/debug}"

# --- output ------------------------------------------------------------------------------

if [[ -t 1 ]] && ((!CHECK)); then
    B=$'\033[1m' D=$'\033[2m' C=$'\033[36m' G=$'\033[32m' R=$'\033[31m' Y=$'\033[33m' N=$'\033[0m'
else
    B='' D='' C='' G='' R='' Y='' N=''
fi
say() { printf '\n%s%s%s\n' "$B" "$*" "$N"; }
info() { printf '  %s\n' "$*"; }
note() { printf '  %s%s%s\n' "$D" "$*" "$N"; }
warn() { printf '  %s! %s%s\n' "$Y" "$*" "$N"; }
die() {
    printf 'demo: %s\n' "$*" >&2
    exit 1
}

# --- what the machine has ----------------------------------------------------------------

missing=()
command -v curl >/dev/null || missing+=("curl (apt-get install curl)")
if [[ "${DEMO_BUILD:-1}" == 1 ]]; then
    command -v cargo >/dev/null \
        || missing+=("cargo (install Rust 1.95 with https://rustup.rs, then open a new shell)")
    command -v cc >/dev/null || missing+=("a C compiler and linker (apt-get install build-essential)")
fi
for tool in sed awk grep mktemp date; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    printf 'demo: missing: %s\n' "${missing[@]}" >&2
    exit 1
fi

# Runs a command as root: directly, or through password-less sudo (never a prompt).
as_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}
can_be_root() { [[ "$(id -u)" == 0 ]] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; }

nginx_binary() {
    local p
    for p in "$(command -v nginx 2>/dev/null || true)" /usr/sbin/nginx /usr/local/sbin/nginx; do
        [[ -n "$p" && -x "$p" ]] && { echo "$p"; return 0; }
    done
    return 1
}
prometheus_binary() {
    local p
    for p in "$(command -v prometheus 2>/dev/null || true)" /usr/bin/prometheus; do
        [[ -n "$p" && -x "$p" ]] && { echo "$p"; return 0; }
    done
    return 1
}

# --- processes and ports -----------------------------------------------------------------

if [[ -n "${DEMO_STATE_DIR:-}" ]]; then
    STATE="$(mkdir -p "$DEMO_STATE_DIR" && cd "$DEMO_STATE_DIR" && pwd)"
    REMOVE_STATE=0
else
    STATE="$(mktemp -d "${TMPDIR:-/tmp}/gds-demo.XXXXXX")"
    REMOVE_STATE=1
fi
LOGS="$STATE/logs"
mkdir -p "$LOGS"

PIDS=()
NAMES=()
cleanup() {
    local status=$? i pid
    trap - EXIT INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    for _ in $(seq 1 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    # Kept after a failure (the logs say why), unless nothing had started yet.
    if ((REMOVE_STATE)) && ((status == 0 || (status >= 130 && !CHECK) || ${#PIDS[@]} == 0)); then
        rm -rf "$STATE"
    else
        printf 'demo: state and logs kept in %s\n' "$STATE" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints the last lines of every service's log, then fails.
fail() {
    printf '\n%s✗ %s%s\n' "$R" "$*" "$N"
    local i
    for i in "${!NAMES[@]}"; do
        printf '%s--- %s (pid %s%s), last lines of %s:%s\n' "$D" "${NAMES[i]}" "${PIDS[i]}" \
            "$(kill -0 "${PIDS[i]}" 2>/dev/null || echo ', exited')" "$LOGS/${NAMES[i]}.log" "$N"
        tail -n 8 "$LOGS/${NAMES[i]}.log" 2>/dev/null | sed 's/^/    /'
    done
    exit 1
}

# Whether something accepts connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A port for a service that cannot be given port 0: the fixed default (failing when it is
# taken), or in free mode a random unused one below Linux's ephemeral range (so it cannot
# collide with the port-0 listeners of tests running alongside); the starters retry on a
# lost race.
pick_port() { # VAR DEFAULT
    local p
    if [[ "$PORTS" != free ]]; then
        port_busy "$2" && die "port $2 is taken: set $1 to another port, or DEMO_PORTS=free"
        echo "$2"
        return
    fi
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 12000))
        port_busy "$p" || { echo "$p"; return; }
    done
    die "found no free port"
}
# The listen port of a service that accepts port 0.
listen_port() { # VAR DEFAULT
    if [[ "$PORTS" == free ]]; then
        echo 0
    else
        port_busy "$2" && die "port $2 is taken: set $1 to another port, or DEMO_PORTS=free"
        echo "$2"
    fi
}

# Starts NAME in the background (stdout NAME.out, stderr NAME.log) and records its pid.
spawn() { # NAME CMD...
    local name=$1
    shift
    "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.log" &
    PIDS+=("$!")
    NAMES+=("$name")
}
last_pid() { echo "${PIDS[${#PIDS[@]} - 1]}"; }

# Waits for the line `... listening on URL` (line LINE of stdout, default 1), prints URL.
ready_url() { # NAME PID [LINE]
    local name=$1 pid=$2 line=${3:-1} url=""
    for _ in $(seq 1 300); do
        url="$(sed -n "${line}s/.*listening on //p" "$LOGS/$name.out" 2>/dev/null)"
        [[ -n "$url" ]] && { echo "${url%/}"; return 0; }
        kill -0 "$pid" 2>/dev/null || fail "$name exited at start"
        sleep 0.1
    done
    fail "$name did not say where it listens within 30 s"
}

# Waits until URL answers 2xx while PID is alive; non-zero if PID exits first.
wait_http() { # PID URL
    for _ in $(seq 1 300); do
        kill -0 "$1" 2>/dev/null || return 1
        curl -fs -o /dev/null --max-time 1 "$2" && return 0
        sleep 0.1
    done
    return 2
}

now_ms() { date +%s%3N; }
since() { # T0 -> "1.23 s"
    local ms=$(($(now_ms) - $1))
    printf '%d.%02d s' $((ms / 1000)) $((ms % 1000 / 10))
}

# --- choosing the store and Prometheus ---------------------------------------------------

MOTO="$REPO/.venv/bin/moto_server"
curl_has_sigv4() { curl --help all 2>/dev/null | grep -q -- --aws-sigv4; }

case "$STORE_MODE" in
auto)
    # The production chain needs an S3-compatible server: install moto (PyPI, into .venv)
    # when it is missing and installing is allowed; local mode otherwise.
    if [[ -z "${DEMO_S3_ENDPOINT:-}" && ! -x "$MOTO" && "$INSTALL" == 1 ]]; then
        say "Installing moto (an S3-compatible server, from PyPI) into .venv for the S3 chain"
        "$REPO/scripts/install-test-deps.sh" moto \
            || note "could not install moto (see above): running without S3 and sd-sync"
    fi
    if [[ -n "${DEMO_S3_ENDPOINT:-}" || -x "$MOTO" ]] && curl_has_sigv4; then
        STORE_MODE=s3
    else
        STORE_MODE=local
    fi
    ;;
s3)
    [[ -n "${DEMO_S3_ENDPOINT:-}" || -x "$MOTO" ]] \
        || die "DEMO_STORE=s3 needs an S3-compatible server: run scripts/install-test-deps.sh (moto in .venv) or set DEMO_S3_ENDPOINT"
    curl_has_sigv4 || die "DEMO_STORE=s3 needs curl 7.75 or later (--aws-sigv4)"
    ;;
local) ;;
*) die "DEMO_STORE must be auto, s3 or local, not $STORE_MODE" ;;
esac

# Prometheus needs Debian's prometheus and what it scrapes through: with S3, sd-sync's
# gateway and openssl for the router's certificate; with the local store, nginx.
USE_PROMETHEUS=0
NO_PROMETHEUS_REASON=""
proxy_packages() {
    if [[ "$STORE_MODE" == s3 ]]; then
        command -v openssl >/dev/null || packages+=(openssl)
    else
        nginx_binary >/dev/null || packages+=(nginx-light)
    fi
}
if [[ "$PROMETHEUS_MODE" != 0 ]]; then
    packages=()
    prometheus_binary >/dev/null || packages+=(prometheus)
    proxy_packages
    if ((${#packages[@]})) && [[ "$INSTALL" == 1 ]] && command -v apt-get >/dev/null && can_be_root; then
        say "Installing ${packages[*]} (Debian packages) for the Prometheus part"
        note "on a machine with systemd the packages also start their own services (:9090, :80); the demo does not use them"
        if as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; then
            packages=()
            prometheus_binary >/dev/null || packages+=(prometheus)
            proxy_packages
        fi
    fi
    if ((${#packages[@]})); then
        NO_PROMETHEUS_REASON="missing: ${packages[*]}; install with: sudo apt-get install --no-install-recommends ${packages[*]}"
        if ! command -v apt-get >/dev/null; then
            NO_PROMETHEUS_REASON="missing: ${packages[*]} (Debian's packages; this machine has no apt-get)"
        fi
        [[ "$PROMETHEUS_MODE" == 1 ]] && die "DEMO_PROMETHEUS=1 but $NO_PROMETHEUS_REASON"
    else
        USE_PROMETHEUS=1
    fi
fi

# --- build -------------------------------------------------------------------------------

if [[ "${DEMO_BUILD:-1}" == 1 ]]; then
    say "Building the binaries (cargo build --locked; the first build takes a few minutes)"
    cargo build --locked --bins -p cf-sim -p broker -p updater -p sd-sync
fi
for bin in cf-sim broker updater sd-sync; do
    [[ -x "$BIN_DIR/$bin" ]] || die "$BIN_DIR/$bin is missing (build with: cargo build --workspace --bins)"
done

# --- the stack ---------------------------------------------------------------------------

T_START="$(now_ms)"
say "Starting the stack (state in $STATE)"

# Prometheus scrapes through sd-sync's gateway when there is an sd-sync (S3), which talks
# HTTPS to the gorouter: a throwaway CA and the router's certificate, for this run only.
GATEWAY=0
ROUTER_TLS=()
if ((USE_PROMETHEUS)) && [[ "$STORE_MODE" == s3 ]]; then
    GATEWAY=1
    PKI="$STATE/pki"
    mkdir -p "$PKI"
    (
        cd "$PKI"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -keyout ca-key.pem -out ca.pem -subj "/CN=gds-prometheus demo CA"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout router-key.pem -out router.csr -subj "/CN=*.apps.example.com"
        printf '%s\n' 'subjectAltName=DNS:*.apps.example.com,DNS:apps.example.com,IP:127.0.0.1' \
            'basicConstraints=critical,CA:FALSE' 'extendedKeyUsage=serverAuth' >router.ext
        openssl x509 -req -in router.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
            -extfile router.ext -out router.pem
    ) >"$LOGS/openssl.log" 2>&1 || fail "openssl could not make the demo's certificates: $(tail -3 "$LOGS/openssl.log")"
    ROUTER_TLS=(--router-tls-cert "$PKI/router.pem" --router-tls-key "$PKI/router-key.pem")
    # The deployment's scrape token key, shared by the broker and sd-sync.
    SCRAPE_TOKEN_KEY="demo-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
fi

# The Cloud Foundry simulator and its gorouter.
SIM_PORT="$(listen_port DEMO_SIM_PORT "${DEMO_SIM_PORT:-${CF_SIM_PORT:-9292}}")"
ROUTER_PORT="$(listen_port DEMO_ROUTER_PORT "${DEMO_ROUTER_PORT:-9293}")"
spawn cf-sim env NO_COLOR=1 "$BIN_DIR/cf-sim" --demo --listen "127.0.0.1:$SIM_PORT" --router-listen "127.0.0.1:$ROUTER_PORT" "${ROUTER_TLS[@]}"
SIM_PID="$(last_pid)"
SIM_URL="$(ready_url cf-sim "$SIM_PID" 1)"
ROUTER_URL="$(ready_url cf-sim "$SIM_PID" 2)"
info "$(printf '%-32s %s' 'cf-sim (CC API v3 + UAA)' "$SIM_URL")"
info "$(printf '%-32s %s' 'cf-sim gorouter + app instances' "$ROUTER_URL")"

# The store.
AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
S3_REGION="${AWS_REGION:-us-east-1}"
if [[ "$STORE_MODE" == s3 ]]; then
    if [[ -n "${DEMO_S3_ENDPOINT:-}" ]]; then
        S3_URL="${DEMO_S3_ENDPOINT%/}"
        S3_WHAT="S3-compatible store"
    else
        started=0
        for _ in 1 2 3; do
            S3_PORT="$(pick_port DEMO_S3_PORT "${DEMO_S3_PORT:-9299}")"
            spawn moto "$MOTO" -H 127.0.0.1 -p "$S3_PORT"
            if wait_http "$(last_pid)" "http://127.0.0.1:$S3_PORT/"; then
                started=1
                break
            fi
            [[ "$PORTS" == free ]] || break
        done
        ((started)) || fail "moto did not start"
        S3_URL="http://127.0.0.1:$S3_PORT"
        S3_WHAT="moto (S3-compatible store)"
    fi
    BUCKET="gds-demo-$(date +%s)-$$-$RANDOM"
    s3() { # CURL-ARGS... KEY (the last argument is the key, "" for the bucket)
        local key="${*: -1}"
        curl -s --max-time 5 --aws-sigv4 "aws:amz:$S3_REGION:s3" \
            --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "${@:1:$#-1}" "$S3_URL/$BUCKET/$key"
    }
    code="$(s3 -o /dev/null -w '%{http_code}' -X PUT "")"
    [[ "$code" == 200 ]] || fail "creating bucket $BUCKET on $S3_URL answered $code"
    STORE_ENV=(BUCKET_NAME="$BUCKET" S3_ENDPOINT="$S3_URL" AWS_REGION="$S3_REGION"
        AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY")
    TARGETS_DIR="$STATE/prometheus/demo-targets"
    STORE_NAME="bucket"
    info "$(printf '%-32s %s' "$S3_WHAT" "$S3_URL  bucket $BUCKET")"
else
    STORE_ENV=(ENVIRONMENT=local TARGETS_PATH="$STATE/store")
    TARGETS_DIR="$STATE/store/active"
    STORE_NAME="store"
    mkdir -p "$TARGETS_DIR" "$STATE/store/inactive"
    info "$(printf '%-32s %s' 'local directory store' "$STATE/store (ENVIRONMENT=local)")"
fi

# The broker and the updater: one SQLite file, the same store, the simulator's CC and UAA.
SERVICE_ID="7d6e0bd6-2f35-4d4e-9f52-3c0e4a6f7a10"
PLAN_ID="a1f2c3d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
BROKER_USER="cloud-controller"
BROKER_PASS="demo-$RANDOM$RANDOM"
COMMON_ENV=(API_ENDPOINT="$SIM_URL" UAA_USERNAME=admin UAA_PASSWORD=admin
    PAAS_DOMAIN=apps.example.com DATABASE_URL="sqlite://$STATE/broker.db?mode=rwc"
    LISTEN_HOST=127.0.0.1 RUST_LOG="${RUST_LOG:-info}" "${STORE_ENV[@]}")

TOKEN_ENV=()
((GATEWAY)) && TOKEN_ENV=(SCRAPE_TOKEN_KEY="$SCRAPE_TOKEN_KEY")

BROKER_PORT="$(listen_port DEMO_BROKER_PORT "${DEMO_BROKER_PORT:-9294}")"
spawn broker env "${COMMON_ENV[@]}" "${TOKEN_ENV[@]}" PORT="$BROKER_PORT" SERVICE_ID="$SERVICE_ID" PLAN_ID="$PLAN_ID" \
    BROKER_USERNAME="$BROKER_USER" BROKER_PASSWORD="$BROKER_PASS" "$BIN_DIR/broker"
BROKER_URL="$(ready_url broker "$(last_pid)")"
info "$(printf '%-32s %s' 'broker (OSB API, SQLite)' "$BROKER_URL  (basic auth $BROKER_USER:$BROKER_PASS)")"

UPDATER_PORT="$(listen_port DEMO_UPDATER_PORT "${DEMO_UPDATER_PORT:-9295}")"
spawn updater env "${COMMON_ENV[@]}" PORT="$UPDATER_PORT" "$BIN_DIR/updater"
UPDATER_URL="$(ready_url updater "$(last_pid)")"
info "$(printf '%-32s %s' 'updater (fast path on)' "$UPDATER_URL  (full pass every minute, audit events every 2 s)")"

SD_SYNC_URL=""
PROXY_URL=""
if [[ "$STORE_MODE" == s3 ]]; then
    mkdir -p "$TARGETS_DIR"
    SD_SYNC_PORT="$(listen_port DEMO_SD_SYNC_PORT "${DEMO_SD_SYNC_PORT:-9296}")"
    GATEWAY_ARGS=()
    if ((GATEWAY)); then
        # As manifests/sd-sync.service: the gateway on loopback, pinned to the router.
        GATEWAY_ARGS=(--scrape-listen "127.0.0.1:$(listen_port DEMO_PROXY_PORT "${DEMO_PROXY_PORT:-9297}")"
            --scrape-router "${ROUTER_URL#https://}" --scrape-ca-file "$PKI/ca.pem")
    fi
    spawn sd-sync env RUST_LOG="${RUST_LOG:-info}" AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
        AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" "${TOKEN_ENV[@]}" "$BIN_DIR/sd-sync" \
        --mapping "s3://$BUCKET/active/=$TARGETS_DIR" --s3-endpoint "$S3_URL" --region "$S3_REGION" \
        --listen "127.0.0.1:$SD_SYNC_PORT" "${GATEWAY_ARGS[@]}"
    SD_SYNC_URL="$(ready_url sd-sync "$(last_pid)")"
    info "$(printf '%-32s %s' 'sd-sync' "$SD_SYNC_URL  s3://$BUCKET/active/ -> $TARGETS_DIR")"
    if ((GATEWAY)); then
        address="$(curl -s --max-time 3 "$SD_SYNC_URL/health" | sed -n 's/.*"gateway":{[^}]*"address":"\([^"]*\)".*/\1/p')"
        [[ -n "$address" ]] || fail "sd-sync's /health shows no scrape gateway"
        PROXY_URL="http://$address"
        info "$(printf '%-32s %s' 'sd-sync scrape gateway' "$PROXY_URL  (pinned to $ROUTER_URL, trusting $PKI/ca.pem)")"
    fi
else
    note "sd-sync is not started: it mirrors S3 only, and with a local directory store Prometheus"
    note "reads the store's active/ itself (install moto with scripts/install-test-deps.sh for the S3 chain)"
fi

PROM_URL=""
SCRAPED_THROUGH="the gateway"
if ((USE_PROMETHEUS)) && ((!GATEWAY)); then
    SCRAPED_THROUGH="nginx"
    # nginx with the shipped forward proxy: only its listen line and upstream change.
    SHIPPED="$REPO/manifests/nginx/forward-proxy.conf"
    # shellcheck disable=SC2016 # nginx variables, literally
    for line in 'listen 127.0.0.1:8080;' 'set $gds_upstream https://$host;'; do
        grep -qF "$line" "$SHIPPED" || fail "$SHIPPED no longer contains '$line': update scripts/demo.sh"
    done
    NGINX_DIR="$STATE/nginx"
    mkdir -p "$NGINX_DIR"
    started=0
    for _ in 1 2 3; do
        PROXY_PORT="$(pick_port DEMO_PROXY_PORT "${DEMO_PROXY_PORT:-9297}")"
        sed -e "s|listen 127.0.0.1:8080;|listen 127.0.0.1:$PROXY_PORT;|" \
            -e "s|set \$gds_upstream https://\$host;|set \$gds_upstream $ROUTER_URL;|" \
            "$SHIPPED" >"$NGINX_DIR/forward-proxy.conf"
        {
            [[ "$(id -u)" == 0 ]] && echo "user root;"
            cat <<CONF
worker_processes 1;
daemon off;
pid $NGINX_DIR/nginx.pid;
error_log $LOGS/nginx.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $NGINX_DIR/body;
  proxy_temp_path $NGINX_DIR/proxy;
  fastcgi_temp_path $NGINX_DIR/fastcgi;
  uwsgi_temp_path $NGINX_DIR/uwsgi;
  scgi_temp_path $NGINX_DIR/scgi;
  include $NGINX_DIR/forward-proxy.conf;
}
CONF
        } >"$NGINX_DIR/nginx.conf"
        spawn nginx "$(nginx_binary)" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf"
        NGINX_PID="$(last_pid)"
        for _ in $(seq 1 100); do
            kill -0 "$NGINX_PID" 2>/dev/null || break
            port_busy "$PROXY_PORT" && break
            sleep 0.1
        done
        sleep 0.2
        if kill -0 "$NGINX_PID" 2>/dev/null && port_busy "$PROXY_PORT"; then
            started=1
            break
        fi
        [[ "$PORTS" == free ]] || break
    done
    ((started)) || fail "nginx did not start"
    PROXY_URL="http://127.0.0.1:$PROXY_PORT"
    info "$(printf '%-32s %s' 'nginx forward proxy' "$PROXY_URL  (manifests/nginx/forward-proxy.conf -> $ROUTER_URL)")"
fi
if ((USE_PROMETHEUS)); then

    # Prometheus: the scrape settings of manifests/prometheus/, with short intervals.
    PROM_CONFIG="$STATE/prometheus/prometheus.yml"
    mkdir -p "$STATE/prometheus"
    {
        cat <<YAML
# Written by scripts/demo.sh: manifests/prometheus/file_sd.yml and http_sd.yml, pointed at
# this demo's directory, sd-sync and its scrape gateway (or nginx), with short intervals.
global:
  scrape_interval: 2s
  scrape_timeout: 2s
scrape_configs:
  - job_name: cf-apps
    scheme: http
    proxy_url: $PROXY_URL
    file_sd_configs:
      - files: ['$TARGETS_DIR/*.json']
        refresh_interval: 30s
YAML
        if [[ -n "$SD_SYNC_URL" ]]; then
            cat <<YAML
  - job_name: cf-apps-http-sd
    scheme: http
    proxy_url: $PROXY_URL
    http_sd_configs:
      - url: $SD_SYNC_URL/targets/demo-targets
        refresh_interval: 2s
YAML
        fi
    } >"$PROM_CONFIG"
    started=0
    for _ in 1 2 3; do
        PROM_PORT="$(pick_port DEMO_PROMETHEUS_PORT "${DEMO_PROMETHEUS_PORT:-9298}")"
        spawn prometheus "$(prometheus_binary)" --config.file="$PROM_CONFIG" \
            --storage.tsdb.path="$STATE/prometheus/data" --web.listen-address="127.0.0.1:$PROM_PORT"
        PROM_PID="$(last_pid)"
        if wait_http "$PROM_PID" "http://127.0.0.1:$PROM_PORT/-/ready"; then
            sleep 0.2
            kill -0 "$PROM_PID" 2>/dev/null && { started=1; break; }
        fi
        [[ "$PORTS" == free ]] || break
    done
    ((started)) || fail "Prometheus did not start"
    PROM_URL="http://127.0.0.1:$PROM_PORT"
    info "$(printf '%-32s %s' "$("$(prometheus_binary)" --version 2>&1 | sed -n '1s/, version \([^ ]*\).*/ \1/p')" "$PROM_URL  (file_sd${SD_SYNC_URL:+ and http_sd}, through $SCRAPED_THROUGH)")"
else
    warn "Prometheus is not started: ${NO_PROMETHEUS_REASON:-DEMO_PROMETHEUS=0}"
fi
note "ready in $(since "$T_START")"

# --- reading what each part shows --------------------------------------------------------

TOKEN="$(curl -s -u cf: -d grant_type=password -d username=admin -d password=admin "$SIM_URL/oauth/token" \
    | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')"
[[ -n "$TOKEN" ]] || fail "no token from the simulator's UAA"
cc_get() { curl -s --max-time 10 -H "Authorization: bearer $TOKEN" "$SIM_URL$1"; }
sim_post() { # PATH [BODY]
    local code
    code="$(curl -s -o "$STATE/sim.body" -w '%{http_code}' --max-time 10 -X POST \
        -H 'Content-Type: application/json' -d "${2:-}" "$SIM_URL$1")" || code=000
    [[ "$code" == 2* ]] || fail "the simulator answered $code to POST $1: $(head -c 300 "$STATE/sim.body")"
}

# The number of target groups in a store object (STATE is active or inactive), or nothing
# when there is none.
store_groups() { # STATE GUID
    if [[ "$STORE_MODE" == s3 ]]; then
        local body
        body="$(s3 -f "$1/$2.json")" || return 0
        grep -o '"targets"' <<<"$body" | wc -l
    else
        [[ -f "$STATE/store/$1/$2.json" ]] && grep -o '"targets"' "$STATE/store/$1/$2.json" | wc -l
        return 0
    fi
}
dir_groups() { # GUID
    [[ -f "$TARGETS_DIR/$1.json" ]] && grep -o '"targets"' "$TARGETS_DIR/$1.json" | wc -l
    return 0
}
http_sd_groups() { # GUID
    curl -s --max-time 3 "$SD_SYNC_URL/targets/demo-targets" | grep -o "\"instance\": *\"$1:" | wc -l
}
# Active targets of scrape POOL for app GUID: "health job instance url" per line, the url
# without its query.
prom_targets() { # POOL GUID
    curl -s --max-time 3 "$PROM_URL/api/v1/targets?state=active" \
        | sed 's/{"discoveredLabels":/\n/g' \
        | awk -v pool="$1" -v guid="$2" '
            function field(text, name,   re, s) {
                re = "\"" name "\":\"[^\"]*\""
                if (!match(text, re)) return ""
                s = substr(text, RSTART + length(name) + 4, RLENGTH - length(name) - 5)
                gsub(/\\u0026/, "\\&", s)
                return s
            }
            {
                if (field($0, "scrapePool") != pool) next
                i = index($0, "\"labels\":{")
                if (i == 0) next
                labels = substr($0, i)
                instance = field(labels, "instance")
                if (index(instance, guid ":") != 1) next
                url = field($0, "scrapeUrl")
                sub(/\?.*/, "", url)
                print field($0, "health"), field(labels, "job"), instance, url
            }'
}
prom_count() { prom_targets "$1" "$2" | wc -l; }
prom_up() { prom_targets "$1" "$2" | awk '$1 == "up" { n++ } END { print n + 0 }'; }

# Waits until `CHECK-COMMAND` prints WANT, then prints "✓ WHAT  (time since T0)".
expect() { # T0 WHAT WANT CHECK-COMMAND...
    local t0=$1 what=$2 want=$3 got=""
    shift 3
    local deadline=$((SECONDS + STEP_TIMEOUT))
    while :; do
        got="$("$@" 2>/dev/null | tr -d ' ')" || true
        [[ "${got:-0}" == "$want" ]] && break
        ((SECONDS < deadline)) || fail "$what: still ${got:-0} (want $want) after ${STEP_TIMEOUT} s"
        sleep 0.2
    done
    printf '  %s✓%s %-56s %s%8s%s\n' "$G" "$N" "$what" "$D" "$(since "$t0")" "$N"
    CHECKS=$((CHECKS + 1))
}

# "1 target", "3 targets".
targets() { if (($1 == 1)); then echo "1 target"; else echo "$1 targets"; fi; }

# Everything that should show for APP (GUID, N instances; 0 = not active) after an action
# started at T0.
expect_app() { # T0 GUID NAME N
    local t0=$1 guid=$2 name=$3 n=$4
    local file="${guid:0:8}...json" dir
    dir="$(basename "$TARGETS_DIR")"
    if ((n > 0)); then
        expect "$t0" "$STORE_NAME: active/$file, $(targets "$n")" "$n" store_groups active "$guid"
        [[ "$STORE_MODE" == s3 ]] \
            && expect "$t0" "sd-sync: $dir/$file, $(targets "$n")" "$n" dir_groups "$guid"
    else
        expect "$t0" "$STORE_NAME: no active/$file" 0 store_groups active "$guid"
        [[ "$STORE_MODE" == s3 ]] \
            && expect "$t0" "sd-sync: no $dir/$file" 0 dir_groups "$guid"
    fi
    if [[ -n "$SD_SYNC_URL" ]]; then
        expect "$t0" "sd-sync /targets (http_sd): $(targets "$n") of $name" "$n" http_sd_groups "$guid"
    fi
    if [[ -n "$PROM_URL" ]]; then
        if ((n > 0)); then
            expect "$t0" "Prometheus file_sd: $(targets "$n") of $name listed" "$n" prom_count cf-apps "$guid"
            expect "$t0" "Prometheus file_sd: all up (scraped through $SCRAPED_THROUGH)" "$n" prom_up cf-apps "$guid"
            [[ -n "$SD_SYNC_URL" ]] \
                && expect "$t0" "Prometheus http_sd: $(targets "$n") of $name, all up" "$n" prom_up cf-apps-http-sd "$guid"
            prom_targets cf-apps "$guid" | sort -k3 | awk '{ printf "      %-5s %-22s %-40s %s\n", $1, $2, $3, $4 }'
        else
            expect "$t0" "Prometheus file_sd: no $name targets" 0 prom_count cf-apps "$guid"
            [[ -n "$SD_SYNC_URL" ]] \
                && expect "$t0" "Prometheus http_sd: no $name targets" 0 prom_count cf-apps-http-sd "$guid"
        fi
    fi
    return 0
}

# The OSB API as the Cloud Controller calls it.
osb() { # METHOD PATH EXPECTED-STATUS [BODY]
    local method=$1 path=$2 want=$3 body=${4:-} code
    printf '  %s> %s %s%s\n' "$D" "$method" "$path" "$N"
    [[ -n "$body" ]] && printf '  %s  %s%s\n' "$D" "$body" "$N"
    local args=(-s -o "$STATE/osb.body" -w '%{http_code}' --max-time 60 -X "$method"
        -u "$BROKER_USER:$BROKER_PASS" -H 'X-Broker-API-Version: 2.17'
        -H "X-Broker-API-Request-Identity: $(cat /proc/sys/kernel/random/uuid)")
    [[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' -d "$body")
    code="$(curl "${args[@]}" "$BROKER_URL$path")" || code=000
    local answer token
    answer="$(tr -d '\n' <"$STATE/osb.body")"
    # A bind's secret token is the app's: not printed.
    token="$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' <<<"$answer")"
    [[ -n "$token" ]] && answer="${answer//"$token"/<token>}"
    ((${#answer} > 160)) && answer="${answer:0:160}..."
    printf '  %s< %s %s%s\n' "$D" "$code" "$answer" "$N"
    [[ "$code" == "$want" ]] || fail "the broker answered $code to $method $path, expected $want"
    CHECKS=$((CHECKS + 1))
}

STEPS=0
CHECKS=0
step() {
    STEPS=$((STEPS + 1))
    printf '\n%sStep %d. %s%s\n' "$B" "$STEPS" "$1" "$N"
}
cf() { printf '  %s$ cf %s%s\n' "$C" "$*" "$N"; }

# --- the foundation ----------------------------------------------------------------------

say "The foundation: the simulator's demo org, space and apps"
APPS="$(cc_get '/v3/apps?per_page=100' | sed 's/{"created_at"/\n&/g' \
    | sed -n 's/^{"created_at":"[^"]*","guid":"\([^"]*\)".*"name":"\([^"]*\)".*"space":{"data":{"guid":"\([^"]*\)"}}.*"state":"\([^"]*\)".*/\1 \2 \4 \3/p')"
PROCESSES="$(cc_get '/v3/processes?per_page=100' | sed 's/{"command"/\n&/g; s/{"created_at"/\n&/g' \
    | sed -n 's/.*"instances":\([0-9]*\).*"app":{"data":{"guid":"\([^"]*\)"}}.*/\2 \1/p')"
[[ -n "$APPS" ]] || fail "the simulator lists no apps"
app_guid() { awk -v name="$1" '$2 == name { print $1; exit }' <<<"$APPS"; }
while read -r guid name state _; do
    instances="$(awk -v g="$guid" '$1 == g { print $2; exit }' <<<"$PROCESSES")"
    info "$(printf '%-22s %-8s %2s instance(s)  %s' "$name" "$state" "${instances:-?}" "$guid")"
done <<<"$APPS"
WEB_SHOP="$(app_guid web-shop)"
API="$(app_guid api)"
EXPORTER="$(app_guid paas-metric-exporter)"
SPACE="$(awk '$2 == "web-shop" { print $4 }' <<<"$APPS")"
ORG="$(cc_get "/v3/spaces/$SPACE" | sed -n 's/.*"organization":{"data":{"guid":"\([^"]*\)"}}.*/\1/p')"
[[ -n "$WEB_SHOP" && -n "$API" && -n "$EXPORTER" && -n "$SPACE" && -n "$ORG" ]] \
    || fail "the simulator's demo apps are not all there"
note "the router serves their instances' metrics at http://<app>.apps.example.com/... (through $ROUTER_URL)"

# --- the tenant's story ------------------------------------------------------------------

say "The tenant's story, played against the broker as the Cloud Controller calls it"
note "OSB API 2.17, basic auth; each cf command is followed by the request it makes to the broker"

SI="$(cat /proc/sys/kernel/random/uuid)"
IDS="\"service_id\":\"$SERVICE_ID\",\"plan_id\":\"$PLAN_ID\""
CONTEXT="\"context\":{\"platform\":\"cloudfoundry\",\"organization_guid\":\"$ORG\",\"space_guid\":\"$SPACE\"}"
declare -A BINDING=()
bind() { # NAME GUID [PARAMETERS-JSON]
    BINDING[$1]="$(cat /proc/sys/kernel/random/uuid)"
    local params=""
    [[ -n "${3:-}" ]] && params=",\"parameters\":$3"
    osb PUT "/v2/service_instances/$SI/service_bindings/${BINDING[$1]}" 201 \
        "{$IDS,\"app_guid\":\"$2\",\"bind_resource\":{\"app_guid\":\"$2\",\"space_guid\":\"$SPACE\"},$CONTEXT$params}"
}

step "The operator registers the broker; the platform reads its catalog"
printf '  %s$ cf create-service-broker gds-prometheus %s PASSWORD %s && cf enable-service-access gds-prometheus%s\n' \
    "$C" "$BROKER_USER" "$BROKER_URL" "$N"
osb GET /v2/catalog 200
info "names in the catalog: $(grep -o '"name":"[^"]*"' "$STATE/osb.body" | sed 's/"name":"\(.*\)"/\1/' | paste -sd, - | sed 's/,/, /g')"

step "Create the service instance"
cf create-service gds-prometheus prometheus my-prom
osb PUT "/v2/service_instances/$SI" 201 "{$IDS,\"organization_guid\":\"$ORG\",\"space_guid\":\"$SPACE\",$CONTEXT}"

# Bound first and kept: besides showing the exporter rule, it keeps the targets directory
# from ever emptying, which sd-sync's safety valve would hold back for 10 polls.
step "The platform team binds its exporter (an exporter's targets carry no space label)"
cf bind-service paas-metric-exporter my-prom
T0="$(now_ms)"
bind paas-metric-exporter "$EXPORTER"
expect_app "$T0" "$EXPORTER" paas-metric-exporter 1
grep -q '"space"' "$TARGETS_DIR/$EXPORTER.json" && fail "the exporter's targets have a space label"
info "no \"space\" label in $EXPORTER.json"

step "Bind web-shop (2 instances)"
cf bind-service web-shop my-prom
T0="$(now_ms)"
bind web-shop "$WEB_SHOP"
expect_app "$T0" "$WEB_SHOP" web-shop 2
note "$TARGETS_DIR/$WEB_SHOP.json, its first target group:"
awk 'NR > 1 { print "      " $0 } NR > 1 && /^  }/ { exit }' "$TARGETS_DIR/$WEB_SHOP.json"
[[ -n "$PROM_URL" ]] && note "Prometheus scrapes http://web-shop.apps.example.com/metrics?cf_app_guid=...&cf_app_instance=$WEB_SHOP:0 through $SCRAPED_THROUGH, which sends X-CF-APP-INSTANCE and Authorization: Bearer to the gorouter"

step "Scale web-shop to 3 instances (the updater follows the Cloud Controller's audit events)"
cf scale web-shop -i 3
note "> POST $SIM_URL/sim/apps/$WEB_SHOP/scale {\"instances\":3}   (the simulator's control API)"
T0="$(now_ms)"
sim_post "/sim/apps/$WEB_SHOP/scale" '{"instances":3}'
expect_app "$T0" "$WEB_SHOP" web-shop 3

step "Stop web-shop: its file moves to inactive/ and its targets go"
cf stop web-shop
note "> POST $SIM_URL/sim/apps/$WEB_SHOP/stop"
T0="$(now_ms)"
sim_post "/sim/apps/$WEB_SHOP/stop"
expect "$T0" "$STORE_NAME: inactive/${WEB_SHOP:0:8}...json, 3 targets" 3 store_groups inactive "$WEB_SHOP"
expect_app "$T0" "$WEB_SHOP" web-shop 0

step "Start web-shop again: back in active/"
cf start web-shop
note "> POST $SIM_URL/sim/apps/$WEB_SHOP/start"
T0="$(now_ms)"
sim_post "/sim/apps/$WEB_SHOP/start"
expect "$T0" "$STORE_NAME: no inactive/${WEB_SHOP:0:8}...json" 0 store_groups inactive "$WEB_SHOP"
expect_app "$T0" "$WEB_SHOP" web-shop 3

step "Bind api (3 instances) with a metrics path"
cf bind-service api my-prom -c "'{\"path\": \"/internal/metrics\"}'"
T0="$(now_ms)"
bind api "$API" '{"path":"/internal/metrics"}'
expect_app "$T0" "$API" api 3
grep -q '"__metrics_path__": *"/internal/metrics"' "$TARGETS_DIR/$API.json" \
    || fail "$API.json has no __metrics_path__ /internal/metrics"
info "__metrics_path__ is /internal/metrics in $API.json"
if [[ -n "$PROM_URL" ]]; then
    prom_targets cf-apps "$API" | grep -q '/internal/metrics$' \
        || fail "Prometheus does not scrape api at /internal/metrics"
fi

if ((GATEWAY)); then
    ORDERS="$(app_guid orders-venerable)"
    step "Bind orders-venerable with a secret scrape token; the app accepts it after a restart"
    cf bind-service orders-venerable my-prom -c "'{\"auth\": \"token\"}'"
    T0="$(now_ms)"
    bind orders "$ORDERS" '{"auth":"token"}'
    SCRAPE_TOKEN="$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' "$STATE/osb.body")"
    [[ -n "$SCRAPE_TOKEN" ]] || fail "the token bind answered no token"
    info "the bind's credentials (VCAP_SERVICES): auth, job, metrics_path, token, authorization_header"
    cf restart orders-venerable
    note "> POST $SIM_URL/sim/apps/$ORDERS/metrics-auth {\"tokens\":[\"<token>\"]}   (the app reads its credentials)"
    sim_post "/sim/apps/$ORDERS/metrics-auth" "{\"tokens\":[\"$SCRAPE_TOKEN\"]}"
    expect_app "$T0" "$ORDERS" orders 2
    if grep -rqF "$SCRAPE_TOKEN" "$STATE/prometheus" \
        || curl -s --max-time 3 "$SD_SYNC_URL/targets" | grep -qF "$SCRAPE_TOKEN"; then
        fail "the secret token is in Prometheus' directory or sd-sync's /targets"
    fi
    info "the token is in no file of Prometheus' directory and not in sd-sync's /targets: only the gateway sends it"
fi

step "Unbind web-shop: its targets are gone for good"
cf unbind-service web-shop my-prom
T0="$(now_ms)"
osb DELETE "/v2/service_instances/$SI/service_bindings/${BINDING[web-shop]}?service_id=$SERVICE_ID&plan_id=$PLAN_ID" 200
expect "$T0" "$STORE_NAME: no inactive/${WEB_SHOP:0:8}...json" 0 store_groups inactive "$WEB_SHOP"
expect_app "$T0" "$WEB_SHOP" web-shop 0

say "Story done: $STEPS steps, $CHECKS checks passed in $(since "$T_START")"

if ((CHECK)); then
    echo "demo check: OK"
    exit 0
fi

# --- stay up -----------------------------------------------------------------------------

BIND_ORDERS="curl -s -u '$BROKER_USER:$BROKER_PASS' -H 'X-Broker-API-Version: 2.17' -H 'Content-Type: application/json' -X PUT $BROKER_URL/v2/service_instances/$SI/service_bindings/\$(cat /proc/sys/kernel/random/uuid) -d '{$IDS,\"app_guid\":\"$(app_guid orders-venerable)\"}'"
say "The stack is up (api and paas-metric-exporter stay bound). Look at:"
{
    printf '  %-32s %s\n' "Broker (OSB API, basic auth)" "$BROKER_URL/v2/catalog  user $BROKER_USER password $BROKER_PASS"
    printf '  %-32s %s\n' "Broker health / metrics" "$BROKER_URL/health  $BROKER_URL/metrics"
    printf '  %-32s %s\n' "Updater health / metrics" "$UPDATER_URL/health  $UPDATER_URL/metrics"
    printf '  %-32s %s\n' "CF simulator (CC v3, UAA)" "$SIM_URL/v3/apps (token: admin/admin)  control API: $SIM_URL/sim"
    printf '  %-32s %s\n' "Simulated gorouter" "$ROUTER_URL"
    if [[ -n "$SD_SYNC_URL" ]]; then
        printf '  %-32s %s\n' "sd-sync http_sd / metrics" "$SD_SYNC_URL/targets  $SD_SYNC_URL/metrics"
    fi
    if [[ -n "$PROM_URL" ]]; then
        printf '  %-32s %s\n' "Prometheus" "$PROM_URL/targets  $PROM_URL/graph?g0.expr=up"
        printf '  %-32s %s\n' "Forward proxy ($SCRAPED_THROUGH)" "$PROXY_URL"
    fi
    printf '  %-32s %s\n' "Targets directory" "$TARGETS_DIR"
    printf '  %-32s %s\n' "Logs" "$LOGS"
    if [[ -n "$PROXY_URL" ]]; then
        printf '\n  A scrape as Prometheus sends it:\n'
        printf "    curl -s -x %s 'http://api.apps.example.com/internal/metrics?cf_app_guid=%s&cf_app_instance=%s%%3A1&cf_app_instance_index=1'\n" \
            "$PROXY_URL" "$API" "$API"
    fi
    printf '\n  Try:\n'
    printf '    curl -s -X POST %s/sim/apps/%s/scale -H "Content-Type: application/json" -d %s\n' \
        "$SIM_URL" "$API" "'{\"instances\": 5}'"
    printf '    curl -s -X DELETE %s/sim/apps/%s        # delete the app: its targets go\n' "$SIM_URL" "$API"
    printf '    %s\n' "$BIND_ORDERS"
    printf '\n  Ctrl-C stops everything.\n'
}
while :; do
    for i in "${!PIDS[@]}"; do
        kill -0 "${PIDS[i]}" 2>/dev/null || fail "${NAMES[i]} exited"
    done
    sleep 1
done
