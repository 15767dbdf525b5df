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

wait_state() {  # address state [state file]: poll mcctl for up to 10 s
    local status
    for _ in $(seq 100); do
        # mcctl exits 1 while a server is not live: that is not a failure here.
        status=$("$build/mcctl" -s "${3:-$work/run/state}" status --json 2>/dev/null || true)
        if /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if any(s["address"]==sys.argv[1] and s["state"]==sys.argv[2] for s in d["servers"]) else 1)' "$1" "$2" <<<"$status" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "demo: $1 did not become $2 within 10 s${3:+ in $3}" >&2
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

# The fleet view (docs/DESIGN.md, "The fleet view"): two hosts' daemons share
# what they see through etcd and publish the fleet's verdict.
stats() {  # port field: one figure of memcached's `stats`
    /usr/bin/python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"stats\r\n"); reply = b""
while not reply.endswith(b"END\r\n"):
    chunk = s.recv(65536)
    if not chunk: break
    reply += chunk
print(dict(l.split()[1:3] for l in reply.decode().splitlines() if l.startswith("STAT "))[sys.argv[2]])' "$1" "$2"
}
mc() {  # port text: one memcached command (\r\n written as such), its reply's first line
    /usr/bin/python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode()); print(s.recv(4096).decode().splitlines()[0])' "$1" "$2"
}
downs() {  # host address: how many times the host's own probes saw the server go
    grep -c "event=down server=$2" "$work/$1/mcwatchd.log" || true
}
server_states() {  # host: its state file's servers, "address state, ..."
    "$build/mcctl" -s "$work/$1/run/state" status --json | /usr/bin/python3 -c 'import json, sys
print(", ".join("%s %s" % (s["address"], s["state"]) for s in json.load(sys.stdin)["servers"]))'
}

say "the fleet view: a 1-member etcd and two hosts' mcwatchd with [fleet] (hosts a and b)"
etcd_port=$(free_port); peer_port=$(free_port)
/usr/bin/etcd --name demo --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "demo=http://127.0.0.1:$peer_port" >"$work/etcd.log" 2>&1 &
pids+=($!)
echo "etcd pid $! on 127.0.0.1:$etcd_port"
for _ in $(seq 100); do
    /usr/bin/python3 -c 'import json, sys, urllib.request; sys.exit(0 if json.load(urllib.request.urlopen(sys.argv[1], timeout=1)).get("health") == "true" else 1)' \
        "http://127.0.0.1:$etcd_port/health" 2>/dev/null && break
    sleep 0.1
done
fleet_ports=()
fleet_mc_pids=()
for _ in 1 2; do
    port=$(free_port)
    pid=$(start_memcached "$port")
    fleet_ports+=("$port"); fleet_mc_pids+=("$pid"); pids+=("$pid")
    echo "memcached pid $pid on 127.0.0.1:$port"
done
# Host a gives up on a server after one 20 ms timeout; host b after ten
# failed probes (a refused connection fails at once, a stalled server only
# after each 150 ms timeout): so a short stall is seen by a alone.
for host in a b; do
    if [ "$host" = a ]; then tuning="probe_timeout = 20ms
fail_after = 1"; else tuning="probe_timeout = 150ms
fail_after = 10"; fi
    mkdir -p "$work/$host"
    cat >"$work/$host/mcwatchd.conf" <<CONF
[mcwatchd]
state_file = $work/$host/run/state
probe_interval = 200ms
$tuning
recover_after = 3

[fleet]
etcd = http://127.0.0.1:$etcd_port
name = demo
host = $host

[servers]
server = 127.0.0.1:${fleet_ports[0]}
server = 127.0.0.1:${fleet_ports[1]}
CONF
    "$build/mcwatchd" -t -c "$work/$host/mcwatchd.conf"
    "$build/mcwatchd" -f -c "$work/$host/mcwatchd.conf" 2>"$work/$host/mcwatchd.log" &
    pids+=($!)
    echo "host $host: mcwatchd pid $!, state file $work/$host/run/state"
done
for host in a b; do
    for port in "${fleet_ports[@]}"; do wait_state "127.0.0.1:$port" live "$work/$host/run/state"; done
done
# Both hosts' observations in etcd before anything happens: a host counts
# in the verdict from its first published observation on.
for _ in $(seq 100); do
    "$build/mcctl" -c "$work/a/mcwatchd.conf" fleet --json 2>/dev/null | /usr/bin/python3 -c 'import json, sys
sys.exit(0 if all(len(s["observations"]) == 2 for s in json.load(sys.stdin)["servers"]) else 1)' 2>/dev/null && break
    sleep 0.1
done
"$build/mcctl" -c "$work/a/mcwatchd.conf" fleet

shared="127.0.0.1:${fleet_ports[0]}"
say "kill -9 memcached on $shared: dead for the fleet once more than half of the hosts (both of two) see it dead"
kill -9 "${fleet_mc_pids[0]}"
started=$(date +%s%N)
for host in a b; do
    wait_state "$shared" dead "$work/$host/run/state"
    echo "host $host's state file: dead after $(( ($(date +%s%N) - started) / 1000000 )) ms"
done
say "restarting it (empty): one daemon flushes it for the fleet, then both publish it live"
pid=$(start_memcached "${fleet_ports[0]}")
pids+=("$pid")
for host in a b; do wait_state "$shared" live "$work/$host/run/state"; done
sleep 1  # the rounds in which a second flush would come
echo "cmd_flush on $shared: $(stats "${fleet_ports[0]}" cmd_flush) (one for the fleet; two daemons alone would flush it twice)"
grep -h 'event=fleet_rejoin' "$work/a/mcwatchd.log" "$work/b/mcwatchd.log" || true

say "kill -STOP memcached on $shared for a moment: host a notices, host b does not"
echo "set kept: $(mc "${fleet_ports[0]}" 'set kept 0 0 4\r\nkept\r\n')"
flushes_before=$(stats "${fleet_ports[0]}" cmd_flush)
seen=$(downs a "$shared")
kill -STOP "$pid"
for _ in $(seq 200); do [ "$(downs a "$shared")" -gt "$seen" ] && break; sleep 0.05; done
# Read while it is stopped, printed once it runs again: the stall stays short.
fleet_view=$("$build/mcctl" -c "$work/a/mcwatchd.conf" fleet || true)  # exits 1 while a server is not published live
state_a=$(server_states a || true); state_b=$(server_states b || true)
kill -CONT "$pid"
echo "host a's own probes: $(grep "event=down server=$shared" "$work/a/mcwatchd.log" | tail -1)"
echo "mcctl fleet during the stall:"
echo "$fleet_view"
echo "host a's state file during the stall: $state_a"
echo "host b's state file during the stall: $state_b"
for _ in $(seq 200); do grep -q "event=up server=$shared" <(tail -n 3 "$work/a/mcwatchd.log") && break; sleep 0.05; done
sleep 1  # a flush for the stall would come within these rounds
echo "cmd_flush on $shared: $flushes_before before the stall, $(stats "${fleet_ports[0]}" cmd_flush) after (host a's daemon alone would have flushed it); get kept: $(mc "${fleet_ports[0]}" 'get kept\r\n')"
say "done: stopping everything"
