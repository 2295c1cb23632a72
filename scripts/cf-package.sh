#!/usr/bin/env bash
# Builds the broker and the updater for Cloud Foundry and stages each binary in its own
# directory, the `path:` of its manifest:
#
#   scripts/cf-package.sh     # -> target/cf/broker/broker, target/cf/updater/updater
#   cf push -f manifests/cf/broker.yml --vars-file manifests/cf/vars/eu-west-1.yml
#
# The manifests push them with the binary buildpack onto the cflinuxfs4 stack (Ubuntu 22.04,
# x86_64, glibc 2.35). The binaries are x86_64-unknown-linux-gnu release builds that link
# only glibc (libc, libm, libgcc_s: TLS is rustls, so there is no OpenSSL), so they run
# there when the glibc symbol versions they need are no newer than 2.35: true when built
# on Debian 12 (glibc 2.36; the binaries need GLIBC_2.34) or Ubuntu 22.04. This script
# checks that with objdump and refuses to stage a binary cflinuxfs4 could not start.
# Elsewhere (macOS, arm64, a newer distribution), run it in a debian:12 container.
set -euo pipefail

CFLINUXFS4_GLIBC=2.35

log() { printf 'cf-package: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

cd "$(dirname "$0")/.."

[[ "$(uname -s)-$(uname -m)" == Linux-x86_64 ]] \
    || die "build on x86_64 Linux (cflinuxfs4 is x86_64 Linux), e.g. in a debian:12 container"

cargo build --release --locked --bin broker --bin updater

for bin in broker updater; do
    binary="target/release/$bin"
    if command -v objdump >/dev/null; then
        needed="$(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
        newest="$(printf '%s\n%s\n' "$needed" "$CFLINUXFS4_GLIBC" | sort -V | tail -1)"
        [[ "$newest" == "$CFLINUXFS4_GLIBC" ]] \
            || die "$binary needs glibc $needed; cflinuxfs4 has $CFLINUXFS4_GLIBC: build on Debian 12 or Ubuntu 22.04"
        log "$bin needs glibc >= $needed (cflinuxfs4: $CFLINUXFS4_GLIBC)"
    else
        log "objdump not found (apt-get install binutils): glibc requirement of $bin not checked"
    fi
    rm -rf "target/cf/$bin"
    mkdir -p "target/cf/$bin"
    cp "$binary" "target/cf/$bin/$bin"
    log "staged target/cf/$bin/$bin ($(du -h "target/cf/$bin/$bin" | cut -f1))"
done
