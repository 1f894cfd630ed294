#!/bin/sh
# HTTP against ZeroMQ throughput on the same worker: starts `vit serve` on
# an ipc:// endpoint and `vit http` in front of it, runs build/http_bench
# (a second process, on loopback), then stops both.
#   bench/http_bench.sh [MODEL_DIR [IMAGE [http_bench options]]]
set -eu
model=${1:-tests/fixtures/vit_tiny}
image=${2:-tests/fixtures/cli/gradient.jpg}
[ $# -gt 2 ] && shift 2 || set --
dir=$(mktemp -d)
trap 'kill $gw $w 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
build/vit serve --model "$model" --bind "ipc://$dir/w.sock" 2>"$dir/w.log" &
w=$!
build/vit http --connect "ipc://$dir/w.sock" --listen 127.0.0.1:0 \
    2>"$dir/http.log" &
gw=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' \
        "$dir/http.log")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { cat "$dir/http.log" >&2; exit 1; }
until build/vit client --connect "ipc://$dir/w.sock" health >/dev/null 2>&1
do sleep 0.1; done
build/http_bench "ipc://$dir/w.sock" "$port" "$image" "$@"
