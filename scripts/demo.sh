#!/usr/bin/env bash
# `make demo`: runs what exists of the system on one machine and shows what it serves.
#
# Today: the Cloud Foundry simulator with sample apps, and the target file the broker
# writes for each app (through the real Cloud Controller client and target model).
# The stack stays up until Ctrl-C.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SIM_PORT="${CF_SIM_PORT:-9292}"

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo is missing: install Rust 1.95 (https://rustup.rs), then run make demo again"
command -v curl >/dev/null || die "curl is missing: apt-get install curl"

say "Building (the first build takes a few minutes)..."
cargo build --locked -q -p cf-sim --bin cf-sim
cargo build --locked -q -p gds-cf --example print-targets

LOG="$(mktemp -t cf-sim.XXXXXX.log)"
cleanup() { [[ -n "${SIM_PID:-}" ]] && kill "$SIM_PID" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Starting the Cloud Foundry simulator (CC API v3 + UAA) with the demo apps"
target/debug/cf-sim --demo --listen "127.0.0.1:$SIM_PORT" >"$LOG.out" 2>"$LOG" &
SIM_PID=$!
for _ in $(seq 1 100); do
    grep -q 'listening on' "$LOG.out" 2>/dev/null && break
    kill -0 "$SIM_PID" 2>/dev/null || die "cf-sim failed to start: $(tail -n 3 "$LOG") (port $SIM_PORT busy? set CF_SIM_PORT)"
    sleep 0.1
done
SIM_URL="$(sed -n 's/.*listening on //p' "$LOG.out")"
[[ -n "$SIM_URL" ]] || die "cf-sim did not report its address; log: $LOG"
echo "  $SIM_URL"

say "What a tenant's apps look like to the Cloud Controller"
TOKEN="$(curl -s -u cf: -d grant_type=password -d username=admin -d password=admin "$SIM_URL/oauth/token" \
    | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')"
if ! command -v python3 >/dev/null; then
    curl -s -H "Authorization: bearer $TOKEN" "$SIM_URL/v3/apps?include=space.organization"; echo
else curl -s -H "Authorization: bearer $TOKEN" "$SIM_URL/v3/apps?include=space.organization" \
    | python3 -c '
import json, sys
page = json.load(sys.stdin)
for app in page["resources"]:
    print("  %-22s %-8s %s" % (app["name"], app["state"], app["guid"]))
'
fi

say "The target file the broker writes for each app on bind"
API_ENDPOINT="$SIM_URL" UAA_USERNAME=admin UAA_PASSWORD=admin PAAS_DOMAIN=apps.example.com \
    target/debug/examples/print-targets

say "The stack is up. Try:"
cat <<TXT
  curl -s $SIM_URL/sim                       # the simulator's control API
  curl -s -X POST $SIM_URL/sim/apps/0e9c9b69-5fb6-46cf-a53f-9c94b49b1bb3/scale -H 'Content-Type: application/json' -d '{"instances": 4}'
  API_ENDPOINT=$SIM_URL UAA_USERNAME=admin UAA_PASSWORD=admin PAAS_DOMAIN=apps.example.com target/debug/examples/print-targets

  Simulator log: $LOG
  Ctrl-C stops everything.
TXT
wait "$SIM_PID"
