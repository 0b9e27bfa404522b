#!/bin/sh
# bench/run.sh — builds and runs the benchmarks against the library in $BUILD
# (default: build): the interpreter (bench/bench_interp.c), then durable
# checkpoints on the SQLite store (bench/bench_store.c). Prints figures;
# never fails on a timing. `make bench` runs it (and every other executable
# bench/*.sh) with BUILD set.
# Environment: BENCH_SECONDS, BENCH_LOADS, BENCH_TASKS (see bench/bench_interp.c),
# BENCH_STORE_DIR, BENCH_BATCHES (see bench/bench_store.c), BENCH_ENGINE_* (see
# bench/bench_engine.c), BENCH_SKIP (a list among interp, store, engine).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
# the library's packages, as the Makefile lists them
PKGS=$(sed -n 's/^PKGS *:= *//p' Makefile)
NOPC_LIBS=$(sed -n 's/^NOPC_LIBS *:= *//p' Makefile)
[ -f "$BUILD/libconveyor.a" ] || make BUILD="$BUILD" "$BUILD/libconveyor.a"
mkdir -p "$BUILD/bench"
for b in bench_interp bench_store bench_engine; do
    ${CC:-cc} -std=c17 -O2 -g -Wall -Wextra -Wstrict-prototypes -Wno-unused-parameter -Werror \
        -Iinclude -Isrc -D_GNU_SOURCE $(pkg-config --cflags $PKGS) \
        "bench/$b.c" "$BUILD/libconveyor.a" \
        -ljq $(pkg-config --libs $PKGS) $NOPC_LIBS -lpthread -lm -o "$BUILD/bench/$b"
done
case ",${BENCH_SKIP:-}," in *,interp,*) ;; *) "$BUILD/bench/bench_interp" ;; esac
case ",${BENCH_SKIP:-}," in *,store,*) ;; *)
    echo
    echo "== durable checkpoints (bench/bench_store.c)"
    "$BUILD/bench/bench_store"
    ;;
esac
case ",${BENCH_SKIP:-}," in *,engine,*) ;; *)
    echo
    echo "== the durable engine (bench/bench_engine.c)"
    "$BUILD/bench/bench_engine"
    ;;
esac
