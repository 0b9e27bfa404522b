# tests/pg/pg.sh — a throw-away PostgreSQL server for tests and benchmarks
# (sourced). Debian's `postgresql` (initdb, postgres); PostgreSQL refuses to
# run as root, so as root the cluster belongs to the `postgres` user.
#
#   . tests/pg/pg.sh
#   pg_start || exit 1      # exports CONVEYOR_TEST_PG_URL (postgres://postgres@127.0.0.1:PORT/postgres)
#   ...
#   pg_stop                 # by its PID: fast shutdown, then SIGKILL; removes the directory
#
# PG_PID is the postmaster itself, read from its postmaster.pid: the PID of
# the background job ($!) is a subshell (as_pg is a function) or runuser, and
# neither passes SIGINT on (an asynchronous list ignores it), so stopping that
# PID would leave the server running. PG_LAUNCHER ($!) is reaped after.
#
# The server listens on 127.0.0.1 on a free port only (its socket in its own
# directory), trusts local connections, runs with fsync=off (a test's data
# need not survive a power loss) and logs to $PG_DIR/log. Every wait is
# bounded (30 s to start, 10 s to stop).
PG_DIR=""
PG_PID=""
PG_LAUNCHER=""

pg_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

# as_pg CMD...: CMD as the postgres user when we are root, else as ourselves
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_start() {
    bin=$(pg_bin)
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        echo "pg_start: PostgreSQL is not installed (scripts/install-deps.sh installs postgresql)" >&2
        return 1
    fi
    PG_DIR=$(mktemp -d /tmp/conveyor-pg.XXXXXX)
    [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
    if ! as_pg "$bin/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-sync >"$PG_DIR/initdb.log" 2>&1; then
        echo "pg_start: initdb failed: $(tail -3 "$PG_DIR/initdb.log")" >&2
        return 1
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_pg "$bin/postgres" -D "$PG_DIR/data" -k "$PG_DIR" -h 127.0.0.1 -p "$port" -c fsync=off \
        -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 >"$PG_DIR/log" 2>&1 &
    PG_LAUNCHER=$!
    i=0
    while [ $i -lt 300 ]; do
        # the postmaster writes its PID before it accepts connections
        [ -z "$PG_PID" ] && [ -s "$PG_DIR/data/postmaster.pid" ] &&
            PG_PID=$(head -1 "$PG_DIR/data/postmaster.pid")
        if [ -n "$PG_PID" ] && "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
            CONVEYOR_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
            export CONVEYOR_TEST_PG_URL
            return 0
        fi
        kill -0 "$PG_LAUNCHER" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    echo "pg_start: the server did not accept connections within 30 s: $(tail -3 "$PG_DIR/log")" >&2
    pg_stop
    return 1
}

pg_stop() {
    # a start that timed out may have a postmaster all the same
    if [ -z "$PG_PID" ] && [ -n "$PG_DIR" ] && [ -s "$PG_DIR/data/postmaster.pid" ]; then
        PG_PID=$(head -1 "$PG_DIR/data/postmaster.pid")
    fi
    if [ -n "$PG_PID" ]; then
        kill -INT "$PG_PID" 2>/dev/null # fast shutdown
        i=0
        while kill -0 "$PG_PID" 2>/dev/null && [ $i -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        kill -9 "$PG_PID" 2>/dev/null
    fi
    if [ -n "$PG_LAUNCHER" ]; then
        # exits with the postmaster; killed only if the postmaster never
        # started (then nothing of the server is left to orphan)
        kill -0 "$PG_LAUNCHER" 2>/dev/null && [ -z "$PG_PID" ] && kill -9 "$PG_LAUNCHER" 2>/dev/null
        wait "$PG_LAUNCHER" 2>/dev/null
    fi
    [ -n "$PG_DIR" ] && rm -rf "$PG_DIR"
    PG_PID=""
    PG_LAUNCHER=""
    PG_DIR=""
    unset CONVEYOR_TEST_PG_URL
}
