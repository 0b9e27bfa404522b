# tests/pg/pg.sh — a throw-away PostgreSQL server for tests and benchmarks
# (sourced). Debian's `postgresql` (initdb, postgres); PostgreSQL refuses to
# run as root, so as root the cluster belongs to the `postgres` user.
#
#   . tests/pg/pg.sh
#   pg_start || exit 1      # exports CONVEYOR_TEST_PG_URL (postgres://postgres@127.0.0.1:PORT/postgres)
#   ...
#   pg_stop                 # by its PID: fast shutdown, then SIGKILL; removes the directory
#
# The server listens on 127.0.0.1 on a free port only (its socket in its own
# directory), trusts local connections, runs with fsync=off (a test's data
# need not survive a power loss) and logs to $PG_DIR/log. Every wait is
# bounded (30 s to start, 10 s to stop).
PG_DIR=""
PG_PID=""

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
    PG_PID=$!
    i=0
    while [ $i -lt 300 ]; do
        if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
            CONVEYOR_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
            export CONVEYOR_TEST_PG_URL
            return 0
        fi
        kill -0 "$PG_PID" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    echo "pg_start: the server did not accept connections within 30 s: $(tail -3 "$PG_DIR/log")" >&2
    pg_stop
    return 1
}

pg_stop() {
    if [ -n "$PG_PID" ]; then
        kill -INT "$PG_PID" 2>/dev/null # fast shutdown
        i=0
        while kill -0 "$PG_PID" 2>/dev/null && [ $i -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        kill -9 "$PG_PID" 2>/dev/null
        wait "$PG_PID" 2>/dev/null
    fi
    [ -n "$PG_DIR" ] && rm -rf "$PG_DIR"
    PG_PID=""
    PG_DIR=""
    unset CONVEYOR_TEST_PG_URL
}
