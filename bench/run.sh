#!/bin/sh
# bench/run.sh — builds and runs the interpreter benchmark against the library
# in $BUILD (default: build). Prints figures; never fails on a timing.
# `make bench` runs it (and every other executable bench/*.sh) with BUILD set.
# Environment: BENCH_SECONDS, BENCH_LOADS, BENCH_TASKS (see bench/bench_interp.c).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PKGS="libfyaml libcurl oniguruma sqlite3"
[ -f "$BUILD/libconveyor.a" ] || make BUILD="$BUILD" "$BUILD/libconveyor.a"
mkdir -p "$BUILD/bench"
${CC:-cc} -std=c17 -O2 -g -Wall -Wextra -Wstrict-prototypes -Wno-unused-parameter -Werror \
    -Iinclude -Isrc -D_GNU_SOURCE $(pkg-config --cflags $PKGS) \
    bench/bench_interp.c "$BUILD/libconveyor.a" \
    -ljq $(pkg-config --libs $PKGS) -lpthread -lm -o "$BUILD/bench/bench_interp"
"$BUILD/bench/bench_interp"
