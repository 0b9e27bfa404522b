#!/bin/sh
# Installs every Debian package conveyor needs to build, test, fuzz and benchmark.
# Idempotent: packages already present are skipped, so a second run does nothing.
# Run as root on Debian 12 (bookworm). Nothing else is downloaded.
set -eu

PKGS="build-essential pkg-config clang libclang-rt-14-dev
      libjq-dev libonig-dev libfyaml-dev libcurl4-openssl-dev libsqlite3-dev
      libcriterion-dev libmicrohttpd-dev python3 ca-certificates curl
      liblinear-dev libssl-dev python3-sklearn libpcre2-dev libxgboost-dev weka
      chromium postgresql libpq-dev"
# chromium: the reviewer's web inbox is tested in headless Chromium
# (tests/web/test_inbox.sh, driven by npm's playwright-core; no browser download)

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

# Scripts in `run.script` with language js need node; the image may already carry
# a newer node than Debian's, which is fine: only install Debian's when none exists.
if ! command -v node >/dev/null 2>&1; then
    missing="$missing nodejs"
fi
# bench/bench_text.sh fetches its public corpus with `npm pack`; the image's
# node may come without npm.
if ! command -v npm >/dev/null 2>&1; then
    missing="$missing npm"
fi

if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps: missing packages:$missing (run as root to install them)" >&2
        exit 1
    fi
    echo "install-deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
else
    echo "install-deps: all packages present"
fi
