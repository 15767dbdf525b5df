#!/usr/bin/env bash
# make demo: a small local fleet of memcached servers watched by mcwatchd.
# Everything runs on loopback, in a temporary directory, and is stopped at
# the end (or on Ctrl-C).
set -euo pipefail
build=${MCWATCH_BUILD:-$PWD/build}
work=$(mktemp -d /tmp/mcwatch-demo.XXXXXX)
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
as_root=(); [ "$(id -u)" -eq 0 ] && as_root=(-u root)

start_memcached() {  # port -> pid
    memcached -l 127.0.0.1 -p "$1" -U 0 -m 16 "${as_root[@]}" >/dev/null 2>&1 &
    echo $!
}

wait_state() {  # address state: poll mcctl for up to 10 s
    local status
    for _ in $(seq 100); do
        # mcctl exits 1 while a server is not live: that is not a failure here.
        status=$("$build/mcctl" -s "$work/run/state" status --json 2>/dev/null || true)
        if /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if any(s["address"]==sys.argv[1] and s["state"]==sys.argv[2] for s in d["servers"]) else 1)' "$1" "$2" <<<"$status" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "demo: $1 did not become $2 within 10 s" >&2
    return 1
}

say "starting three memcached servers on loopback"
ports=()
mc_pids=()
for _ in 1 2 3; do
    port=$(free_port)
    pid=$(start_memcached "$port")
    ports+=("$port"); mc_pids+=("$pid"); pids+=("$pid")
    echo "memcached pid $pid on 127.0.0.1:$port"
done

cat >"$work/mcwatchd.conf" <<CONF
[mcwatchd]
state_file = $work/run/state
probe_interval = 200ms
probe_timeout = 150ms
fail_after = 2
recover_after = 3
recently_down_window = 1m

[servers]
server = 127.0.0.1:${ports[0]}
server = 127.0.0.1:${ports[1]}
server = 127.0.0.1:${ports[2]}
CONF

say "mcwatchd -t: checking the configuration"
"$build/mcwatchd" -t -c "$work/mcwatchd.conf"

say "starting mcwatchd (log: $work/mcwatchd.log)"
"$build/mcwatchd" -f -c "$work/mcwatchd.conf" 2>"$work/mcwatchd.log" &
pids+=($!)
for port in "${ports[@]}"; do wait_state "127.0.0.1:$port" live; done
"$build/mcctl" -s "$work/run/state" status

servers="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
keys=3000
app() {  # the read-through application, with the shim preloaded
    LD_PRELOAD="$build/libmcshim.so" MCSHIM_STATE="$work/run/state" /usr/bin/python3 tools/demo_client.py "$servers" "$keys"
}
items() {  # items per server, as mcwatchd last probed them
    local status
    status=$("$build/mcctl" -s "$work/run/state" status --json || true)  # exit 1 while one is dead
    /usr/bin/python3 -c '
import json, sys
servers = json.loads(sys.argv[1])["servers"]
print("  ".join("%s: %s" % (s["address"], "dead" if s["state"] == "dead" else "%s items" % s["curr_items"])
                for s in servers))' "$status"
}

say "a read-through application warms the cache (pylibmc, LD_PRELOAD=libmcshim.so)"
app
sleep 0.5; items
app

victim="127.0.0.1:${ports[1]}"
say "kill -9 memcached on $victim"
kill -9 "${mc_pids[1]}"
started=$(date +%s%N)
wait_state "$victim" dead
echo "mcwatchd marked it dead after $(( ($(date +%s%N) - started) / 1000000 )) ms"
"$build/mcctl" -s "$work/run/state" status || true
say "the application reads again: only the dead server's keys miss, and are re-cached on the others"
app
app
sleep 0.5; items

say "restarting memcached on $victim (empty)"
pid=$(start_memcached "${ports[1]}")
pids+=("$pid")
started=$(date +%s%N)
wait_state "$victim" live
echo "live again after $(( ($(date +%s%N) - started) / 1000000 )) ms, flushed first and recently down for the window"
"$build/mcctl" -s "$work/run/state" status
say "the application reads: misses on the returned server are found where they lived meanwhile, and written back"
app
sleep 0.5; items

planned="127.0.0.1:${ports[2]}"
say "planned maintenance of $planned: mcctl drain"
"$build/mcctl" -s "$work/run/state" drain "$planned"
wait_state "$planned" draining
items
say "the application reads: each of the draining server's keys is read there once and moved"
app
sleep 0.5; items
say "its own keys have moved (what it still holds are outage copies that expire with the window): stop it, start it again, mcctl undrain"
kill "${mc_pids[2]}"
for _ in $(seq 100); do kill -0 "${mc_pids[2]}" 2>/dev/null || break; sleep 0.05; done  # port free again
pid=$(start_memcached "${ports[2]}")
pids+=("$pid")
"$build/mcctl" -s "$work/run/state" undrain "$planned"
wait_state "$planned" live
"$build/mcctl" -s "$work/run/state" status
say "the application reads: no database read, the moved keys are found and copied back"
app
sleep 0.5; items

say "what mcwatchd logged"
cat "$work/mcwatchd.log"
say "done: stopping everything"
