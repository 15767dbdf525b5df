"""[routing] replicas = 2 (docs/DESIGN.md, "Replicas"): every write through
the shim reaches a key's two copies, or leaves the second without a value the
first does not hold; a killed server's keys are all still hits, and a server
restarted empty is refilled as it is read. Real memcached servers, read one
by one without the shim; real clients (C, pylibmc, PHP) under LD_PRELOAD."""

import json
import os
import subprocess

import pytest

from conftest import BUILD, MCCTL, Memcached
from test_preload import PHP, PRELOAD, client_says, holders, native_placement, ttl_on
from sanitizers import plain_env  # noqa: E402 (tests/lib, on the path by conftest)

WINDOW_S = 60

# Every write command once per key, through pylibmc under the shim; prints
# nothing (the test reads the servers).
WRITES_SCRIPT = """
import sys, pylibmc
servers, command, keys = sys.argv[1].split(","), sys.argv[2], sys.argv[3].split(",")
mc = pylibmc.Client(servers, behaviors={"ketama": True, "cas": True})
for k in keys:
    if command == "set":
        assert mc.set(k, "one-" + k, time=0)
    elif command == "add":
        assert mc.add(k, "added-" + k, time=0)
    elif command == "replace":
        assert mc.replace(k, "replaced-" + k, time=0)
    elif command == "cas":
        value, cas = mc.gets(k)
        assert mc.cas(k, "cas-" + k, cas)
    elif command == "append":
        assert mc.append(k, "-tail")
    elif command == "prepend":
        assert mc.prepend(k, "head-")
    elif command == "set-number":
        assert mc.set(k, "10")
    elif command == "incr":
        assert mc.incr(k, 5) == 15
    elif command == "decr":
        assert mc.decr(k, 3) == 7
    elif command == "touch":
        assert mc.touch(k, 300)
    elif command == "delete":
        assert mc.delete(k)
    elif command == "set-large":
        assert mc.set(k, "x" * 4000, time=0)
    elif command == "get":
        print(k, mc.get(k))
if command == "get_multi":
    got = mc.get_multi(keys)
    for k in keys:
        print(k, got.get(k))
"""



def preloaded(fleet, command):
    env = plain_env()
    env.update(PRELOAD)
    env["MCSHIM_STATE"] = fleet.state
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return result.stdout


def pylibmc_writes(fleet, command, keys):
    servers = ",".join(m.address for m in fleet.servers)
    return preloaded(fleet, ["/usr/bin/python3", "-c", WRITES_SCRIPT, servers, command, ",".join(keys)])


def pylibmc_reads(fleet, keys, how="get"):
    """key -> the value a preloaded pylibmc reads ("None" for a miss), key by
    key or (how="get_multi") in one multi-get."""
    return dict(line.split(" ", 1) for line in pylibmc_writes(fleet, how, keys).splitlines())


def values(fleet, keys):
    """key -> {address: value} over the live servers, read without the shim."""
    found = {k: {} for k in keys}
    for m in fleet.servers:
        if m.process.poll() is not None:
            continue
        reply = m.command(b"get " + " ".join(keys).encode() + b"\r\n", expect_end=b"END\r\n")
        lines = reply.split(b"\r\n")
        for i, line in enumerate(lines):
            if line.startswith(b"VALUE "):
                found[line.split()[1].decode()][m.address] = lines[i + 1].decode()
    return found


def replicated_fleet(fleet, count=4, routing=None, **settings):
    fleet.add_servers(count)
    fleet.write_config({"recently_down_window": f"{WINDOW_S}s", "writeback_ttl": "10m", **settings},
                       routing={"replicas": "2", **(routing or {})})
    fleet.start_daemon()
    return fleet


@pytest.fixture
def replicas_fleet(fleet):
    return replicated_fleet(fleet)


def test_every_write_command_leaves_both_copies_equal_or_only_the_first(replicas_fleet):
    fleet = replicas_fleet
    keys = [f"w{i}" for i in range(40)]
    native = native_placement(fleet, "pylibmc", keys, "w")

    def check(expected, copies=2):
        held = values(fleet, keys)
        for k in keys:
            assert len(held[k]) == copies, (k, held[k])
            assert {v.rstrip(" ") for v in held[k].values()} <= {expected(k)}, (k, held[k])  # decr pads with spaces
            if copies:
                assert native[k][0] in held[k], (k, held[k], native[k])
        return held

    pylibmc_writes(fleet, "set", keys)
    pairs = {k: sorted(a) for k, a in check(lambda k: "one-" + k).items()}
    pylibmc_writes(fleet, "replace", keys)
    assert {k: sorted(a) for k, a in check(lambda k: "replaced-" + k).items()} == pairs
    pylibmc_writes(fleet, "cas", keys)
    check(lambda k: "cas-" + k)
    pylibmc_writes(fleet, "touch", keys)
    for k in keys:
        for address in pairs[k]:
            server = next(m for m in fleet.servers if m.address == address)
            assert 0 < ttl_on(server, k) <= 300, (k, address)
    # The client does not know what append and prepend leave: the other copy goes.
    pylibmc_writes(fleet, "append", keys)
    check(lambda k: "cas-" + k + "-tail", copies=1)
    pylibmc_writes(fleet, "set", keys)
    pylibmc_writes(fleet, "prepend", keys)
    check(lambda k: "head-one-" + k, copies=1)
    pylibmc_writes(fleet, "set-number", keys)
    check(lambda k: "10")
    pylibmc_writes(fleet, "incr", keys)
    check(lambda k: "15", copies=1)
    pylibmc_writes(fleet, "set-number", keys)
    pylibmc_writes(fleet, "decr", keys)
    check(lambda k: "7", copies=1)
    pylibmc_writes(fleet, "set", keys)
    pylibmc_writes(fleet, "delete", keys)
    check(lambda k: None, copies=0)
    pylibmc_writes(fleet, "add", keys)
    check(lambda k: "added-" + k)


@pytest.mark.parametrize("client", ["c", PHP])
def test_sets_from_c_and_php_reach_both_copies(replicas_fleet, client):
    fleet = replicas_fleet
    n = 40
    keys = [f"p{i}" for i in range(n)]
    assert client_says(fleet, client, "set-many", "p", n, 0) == f"stored {n}"
    held = holders(fleet, keys)
    assert all(len(a) == 2 for a in held.values()), held


@pytest.mark.parametrize("client", ["c", "pylibmc", PHP])
def test_killed_server_keys_stay_hits_and_it_is_refilled_after_an_empty_restart(replicas_fleet, client):
    fleet = replicas_fleet
    n = 120
    keys = [f"k{i}" for i in range(n)]
    native = native_placement(fleet, client, keys, "k")
    assert client_says(fleet, client, "set-many", "k", n, 0) == f"stored {n}"
    first, second = fleet.servers[1], fleet.servers[2]
    first_keys = [k for k in keys if native[k] == [first.address]]
    assert first_keys

    # One server killed: every key still a hit, with no write in between.
    first.kill()
    fleet.wait_states({first.address: "dead"})
    assert client_says(fleet, client, "get-many", "k", n) == f"hits {n}"

    # Written during the outage (the first two live servers of each order),
    # then a second server killed: still every key a hit.
    assert client_says(fleet, client, "set-many", "k", n, 0) == f"stored {n}"
    second.kill()
    fleet.wait_states({second.address: "dead"})
    assert client_says(fleet, client, "get-many", "k", n) == f"hits {n}"

    # The first back, empty: every key a hit, its own written back as read.
    first.start()
    fleet.wait_states({first.address: "live"})
    assert client_says(fleet, client, "get-many", "k", n) == f"hits {n}"
    back = holders(fleet, first_keys)
    assert all(first.address in back[k] for k in first_keys), back


def test_a_store_the_second_copy_refuses_leaves_no_older_value_there(fleet):
    """One server takes items of at most 1 KB: a 4 KB set whose second copy
    is there is stored on the first copy and the older value on the second is
    deleted, never left behind."""
    fleet.servers.append(Memcached(extra_args=["-I", "1k", "-o", "slab_chunk_max=512"]).start())
    replicated_fleet(fleet, count=3)
    small = fleet.servers[0]
    keys = [f"s{i}" for i in range(80)]
    pylibmc_writes(fleet, "set", keys)
    before = values(fleet, keys)
    assert all(len(v) == 2 for v in before.values()), before
    second_on_small = [k for k in keys if small.address in before[k]]
    assert second_on_small
    native = native_placement(fleet, "pylibmc", keys, "s")
    pylibmc_writes(fleet, "set", keys)  # native_placement flushed every server
    large = [k for k in second_on_small if native[k] != [small.address]]
    assert large
    pylibmc_writes(fleet, "set-large", large)
    after = values(fleet, large)
    for k in large:
        assert list(after[k]) == native[k], (k, after[k])
        assert after[k][native[k][0]] == "x" * 4000


def test_replica_max_ttl_bounds_every_copy(fleet):
    replicated_fleet(fleet, routing={"replica_max_ttl": "100s"})
    keys = [f"t{i}" for i in range(30)]
    pylibmc_writes(fleet, "set", keys)
    by_address = {m.address: m for m in fleet.servers}
    for k, held in holders(fleet, keys).items():
        assert len(held) == 2, (k, held)
        for address in held:
            assert 0 < ttl_on(by_address[address], k) <= 100, (k, address)


def test_replicas_1_keeps_one_copy_as_before(fleet):
    fleet.add_servers(4)
    fleet.write_config({"recently_down_window": f"{WINDOW_S}s"})
    fleet.start_daemon()
    keys = [f"o{i}" for i in range(40)]
    native = native_placement(fleet, "pylibmc", keys, "o")
    pylibmc_writes(fleet, "set", keys)
    assert holders(fleet, keys) == native


def test_mcctl_route_prints_each_keys_copies_where_the_shim_stores_them(replicas_fleet):
    fleet = replicas_fleet
    n = 30
    keys = [f"r{i}" for i in range(n)]
    # The C client places keys as the daemon's [routing] says (ketama, md5).
    assert client_says(fleet, "c", "set-many", "r", n, 0) == f"stored {n}"
    held = holders(fleet, keys)
    result = subprocess.run([MCCTL, "-s", fleet.state, "route", "--json", "-"], input="\n".join(keys) + "\n",
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    routes = [json.loads(line) for line in result.stdout.splitlines()]
    for k, route in zip(keys, routes):
        assert route["key"] == k
        assert route["copies"][0] == route["target"]
        assert sorted(route["copies"]) == sorted(held[k]), (k, route, held[k])
    text = fleet.ctl("route", keys[0]).stdout
    copies = routes[0]["copies"]
    assert text.rstrip().endswith(f", copies {copies[0]} {copies[1]}"), text


def test_incr_decr_append_prepend_never_leave_a_stale_copy_to_read_when_the_first_dies(replicas_fleet):
    fleet = replicas_fleet
    keys = [f"a{i}" for i in range(120)]
    native = native_placement(fleet, "pylibmc", keys, "a")
    victim = fleet.servers[1]
    on_victim = [k for k in keys if native[k] == [victim.address]]
    assert len(on_victim) >= 8
    changed = {"incr": on_victim[0::5], "decr": on_victim[1::5], "append": on_victim[2::5],
               "prepend": on_victim[3::5]}
    untouched = on_victim[4::5]
    pylibmc_writes(fleet, "set-number", keys)
    for command, part in changed.items():
        pylibmc_writes(fleet, command, part)
    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    read = pylibmc_reads(fleet, on_victim)
    # The untouched keys are still hits on their second copy; a changed key
    # is a miss (its value lived only on the first), never the older "10".
    assert all(read[k] == "10" for k in untouched), read
    for part in changed.values():
        assert all(read[k] == "None" for k in part), read


def keys_only_on_a_draining_server(fleet):
    """Sets 300 keys through the shim; restarts server 1 empty (recently
    down from then on) and drains server 2 (no move). Returns the keys whose
    two copies were servers 1 and 2, the draining server's own and server 1's
    (the draining server holds their only copy now), and the two servers."""
    keys = [f"d{i}" for i in range(300)]
    native = native_placement(fleet, "pylibmc", keys, "d")
    pylibmc_writes(fleet, "set", keys)
    partner, draining = fleet.servers[1], fleet.servers[2]
    pairs = holders(fleet, keys)
    wanted = {"the draining server's own": [k for k in keys if native[k] == [draining.address] and
                                            partner.address in pairs[k]],
              "the empty server's own": [k for k in keys if native[k] == [partner.address] and
                                         draining.address in pairs[k]]}
    assert all(len(part) >= 3 for part in wanted.values()), pairs
    partner.kill()
    fleet.wait_states({partner.address: "dead"})
    partner.start()
    fleet.wait_states({partner.address: "live"})
    assert fleet.ctl("drain", draining.address).returncode == 0
    fleet.wait_states({draining.address: "draining"})
    both = wanted["the draining server's own"] + wanted["the empty server's own"]
    assert all(holders(fleet, both)[k] == [draining.address] for k in both)
    return wanted, partner, draining


@pytest.mark.parametrize("how", ["get", "get_multi"])
def test_a_draining_servers_only_copy_is_read_when_the_keys_first_copy_came_back_empty(replicas_fleet, how):
    # The miss on the empty first copy looks at the fallback (empty too:
    # nothing was written while that server was dead), then on the draining
    # server, which still holds the key: a hit, moved to the first copy and
    # off the draining server, as a draining server's key is with one copy.
    # A multi-get does the same in its second and third rounds.
    fleet = replicas_fleet
    wanted, partner, draining = keys_only_on_a_draining_server(fleet)
    for whose, keys in wanted.items():
        read = pylibmc_reads(fleet, keys, how)
        assert all(read[k] == "one-" + k for k in keys), (whose, read)
        after = holders(fleet, keys)
        assert all(partner.address in after[k] and draining.address not in after[k] for k in keys), (whose, after)


def test_a_write_deletes_the_copy_a_draining_server_holds_while_the_first_copy_is_recently_down(replicas_fleet):
    # Else the drain's move, or a reader's look there, would bring the
    # deleted or replaced value back.
    fleet = replicas_fleet
    wanted, partner, draining = keys_only_on_a_draining_server(fleet)
    servers = ",".join(m.address for m in fleet.servers)
    for whose, keys in wanted.items():
        deleted, written = keys[0::2], keys[1::2]
        # (The delete answers "not found": the first copy, where it goes, is empty.)
        preloaded(fleet, ["/usr/bin/python3", "-c", "import sys, pylibmc\n"
                          "mc = pylibmc.Client(sys.argv[1].split(','), behaviors={'ketama': True})\n"
                          "for k in sys.argv[2].split(','): mc.delete(k)\n", servers, ",".join(deleted)])
        pylibmc_writes(fleet, "set-number", written)
        held = values(fleet, keys)
        assert all(draining.address not in held[k] for k in keys), (whose, held)
        read = pylibmc_reads(fleet, keys)
        assert all(read[k] == "None" for k in deleted), (whose, read)
        assert all(read[k] == "10" for k in written), (whose, read)


# A long-lived pylibmc program: it sets keys from its main thread until both
# copies of each are written (the servers connected, published, and the
# shim's connections to them opened), then, with the resolver hung, from a
# new thread, whose further copies need connections of the shim's own.
# Prints how many the new thread stored.
HUNG_DNS_SCRIPT = """
import os, socket, sys, threading, time, pylibmc
servers, hold, n = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3])
mc = pylibmc.Client(servers, behaviors={"ketama": True})

def copies(keys):
    found = 0
    for server in servers:
        host, port = server.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(("get " + " ".join(keys) + "\\r\\n").encode())
            reply = b""
            while not reply.endswith(b"END\\r\\n"):
                reply += s.recv(65536)
        found += reply.count(b"VALUE ")
    return found

keys = [f"a{i}" for i in range(n)]
for attempt in range(100):  # the shim publishes a named server once it is looked up
    assert all(mc.set(k, "v") for k in keys)
    if copies(keys) == 2 * n:
        break
    time.sleep(0.1)
open(hold, "w").close()
stored = []
writer = threading.Thread(target=lambda: stored.append(sum(1 for i in range(n) if mc.set(f"b{i}", f"v{i}"))),
                          daemon=True)
writer.start()
writer.join(timeout=30)
print("stored", stored[0] if stored else "nothing: the thread is held", flush=True)
os.unlink(hold)
writer.join(timeout=30)
"""


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_further_copys_connection_never_waits_for_a_hung_resolver(fleet, tmp_path, host):
    # The shim's own connection to a further copy is opened per thread: it
    # must not look the server's name up on the client's call (a hung DNS
    # would hold the program's write for as long as it hangs). A numeric
    # address needs no lookup; a name is looked up once, off the call.
    fleet.add_servers(2)
    fleet.write_config({"recently_down_window": f"{WINDOW_S}s"}, routing={"replicas": "2"})
    fleet.start_daemon()
    env = plain_env()
    env.update(PRELOAD)
    env["LD_PRELOAD"] += " " + os.path.join(BUILD, "clients", "slow_dns.so")
    env["MCSHIM_STATE"] = fleet.state
    env["SLOW_DNS_HOLD"] = str(tmp_path / "hold-dns")
    names = ",".join(f"{host}:" + m.address.rsplit(":", 1)[1] for m in fleet.servers)
    n = 50
    result = subprocess.run(["/usr/bin/python3", "-c", HUNG_DNS_SCRIPT, names, env["SLOW_DNS_HOLD"], str(n)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip() == f"stored {n}"
    # Both copies written: the thread's connections used the addresses known.
    assert all(len(where) == 2 for where in holders(fleet, [f"b{i}" for i in range(n)]).values())


def test_errno_after_an_answered_call_is_what_the_program_had_before_it(replicas_fleet):
    # Every set also stores the further copy over the shim's own connection
    # (connect, sendmsg, recv: EINPROGRESS, EAGAIN); none of it, nor
    # libmemcached's own EAGAIN, shows in errno after a call that answered.
    fleet = replicas_fleet
    out = client_says(fleet, "c", "errno", "e", 100)
    assert out.splitlines()[0] == "errno changed 0 of 302 answered calls", out
