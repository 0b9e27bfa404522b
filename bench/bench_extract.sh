#!/bin/sh
# bench/bench_extract.sh — builds and runs bench/bench_extract.c (the field
# extractor on short texts) against the library in $BUILD (default: build).
# Prints figures; never fails on a timing. Environment: BENCH_SECONDS.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PKGS=$(sed -n 's/^PKGS *:= *//p' Makefile)
NOPC_LIBS=$(sed -n 's/^NOPC_LIBS *:= *//p' Makefile)
[ -f "$BUILD/libconveyor.a" ] || make BUILD="$BUILD" "$BUILD/libconveyor.a"
mkdir -p "$BUILD/bench"
${CC:-cc} -std=c17 -O2 -g -Wall -Wextra -Wstrict-prototypes -Wno-unused-parameter -Werror \
    -Iinclude -Isrc -D_GNU_SOURCE $(pkg-config --cflags $PKGS) \
    bench/bench_extract.c "$BUILD/libconveyor.a" \
    -ljq $(pkg-config --libs $PKGS) $NOPC_LIBS -lpthread -lm -o "$BUILD/bench/bench_extract"
"$BUILD/bench/bench_extract"
