"""The managed server list (docs/DESIGN.md, "Managed list" and "Membership
changes"): with `[routing] managed_list = on`, every preloaded libmemcached
handle uses mcwatchd's server list, whatever the program gave it, and a
server added by reload is joined without a miss: a key whose server changed
reads its server before the change on a miss. Real memcached servers, a real
mcwatchd, and the three real clients (our C program, pylibmc, PHP)."""

import json
import signal
import subprocess
import time

import pytest

from conftest import MCCTL, Memcached, free_port, wait_until
from test_preload import CLIENTS, PHP, PRELOAD, holders, plain_env

WINDOW_S = 60
MODULA = {"distribution": "modula", "hash": "one_at_a_time"}


def say(fleet, client, servers, *args, flags=(), shim=True):
    """What a client given `servers` (its own list) prints; it must succeed quietly."""
    env = plain_env()
    if shim:
        env.update(PRELOAD)
        env["MCSHIM_STATE"] = fleet.state
    command = CLIENTS[client] + list(flags)
    result = subprocess.run(command + [",".join(servers)] + [str(a) for a in args], capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return result.stdout.strip()


def managed_fleet(fleet, count, routing=None):
    fleet.add_servers(count)
    fleet.write_config({"recently_down_window": f"{WINDOW_S}s"}, routing={"managed_list": "on", **(routing or {})})
    fleet.start_daemon()
    return fleet


def reload_with(fleet, servers, routing):
    fleet.write_config({"recently_down_window": f"{WINDOW_S}s"}, servers=[m.address for m in servers],
                       routing={"managed_list": "on", **routing})
    fleet.daemon.send_signal(signal.SIGHUP)
    wait_until(lambda: [s["address"] for s in (fleet.status() or {"servers": []})["servers"]] ==
               [m.address for m in servers], what="the new server list")
    fleet.servers = list(servers)
    fleet.wait_states({m.address: "live" for m in servers})


@pytest.mark.parametrize("client", ["c", "pylibmc", PHP])
@pytest.mark.parametrize("given", ["one wrong server", "a subset"])
def test_managed_list_replaces_the_list_the_program_gave(fleet, client, given):
    managed_fleet(fleet, 3)
    addresses = [m.address for m in fleet.servers]
    own = [addresses[0], f"127.0.0.1:{free_port()}"] if given == "one wrong server" else addresses[:2]
    assert say(fleet, client, own, "set-many", "m", 200, 0) == "stored 200"
    assert say(fleet, client, own, "get-many", "m", 200) == "hits 200"
    placed = holders(fleet, [f"m{i}" for i in range(200)])
    on = {a for where in placed.values() for a in where}
    assert on == set(addresses)  # every server of the file takes keys, the one outside it none
    # What the program sees of its handle's list: the file's.
    assert say(fleet, client, own, "servers").splitlines() == [f"server {a}" for a in addresses] + ["count 3"]


@pytest.mark.parametrize("client", ["c", "pylibmc", PHP])
def test_managed_list_off_leaves_the_application_list(fleet, client):
    fleet.add_servers(3)
    fleet.start_daemon()
    own = [m.address for m in fleet.servers[:2]]
    assert say(fleet, client, own, "set-many", "u", 200, 0) == "stored 200"
    placed = holders(fleet, [f"u{i}" for i in range(200)])
    assert {a for where in placed.values() for a in where} == set(own)
    assert say(fleet, client, own, "servers").splitlines() == [f"server {a}" for a in own] + ["count 2"]


@pytest.mark.parametrize("routing,flags", [({}, []), (MODULA, ["--modula"])], ids=["ketama", "modula"])
def test_server_added_by_reload_under_load_every_moved_key_still_hits(fleet, routing, flags):
    managed_fleet(fleet, 3, routing)
    listed = [m.address for m in fleet.servers]
    n = 400
    keys = [f"j{i}" for i in range(n)]
    assert say(fleet, "c", listed, "set-many", "j", n, 0, flags=flags) == "stored 400"
    before = holders(fleet, keys)
    env = plain_env()
    env.update(PRELOAD)
    env["MCSHIM_STATE"] = fleet.state
    load = subprocess.Popen(CLIENTS["c"] + flags + [",".join(listed), "load", "busy", "200", "4"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(1)
        added = Memcached().start()
        reload_with(fleet, fleet.servers + [added], routing)
        out, err = load.communicate(timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    assert err == ""
    assert out.splitlines()[0].endswith("errors 0"), out
    # Every key cached before the join is still a hit, through the program's
    # old list, on the file's new one.
    assert say(fleet, "c", listed, "get-many", "j", n, flags=flags) == f"hits {n}"
    after = holders(fleet, keys)
    moved = [k for k in keys if after[k] != before[k]]
    assert all(after[k] for k in keys)
    assert len(moved) > n // 10  # ketama about a quarter, modula most
    if routing:
        assert len(moved) > n // 2
    assert any(added.address in after[k] for k in moved)


def start_preloaded(fleet, program, servers):
    """A long-lived Python `program` under the shim, given `servers` as its
    first argument, its stdin, stdout and stderr pipes of text."""
    env = plain_env()
    env.update(PRELOAD)
    env["MCSHIM_STATE"] = fleet.state
    return subprocess.Popen(["/usr/bin/python3", "-c", program, ",".join(servers)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_a_client_started_before_the_change_reads_what_one_started_after_writes(fleet):
    managed_fleet(fleet, 3)
    listed = [m.address for m in fleet.servers]
    # A long-lived pylibmc program: "set KEY VALUE" / "get KEY..." lines on
    # stdin. It hashes with md5, as the file's [routing] and our C client do.
    program = ("import sys, pylibmc\n"
               "mc = pylibmc.Client(sys.argv[1].split(','), behaviors={'ketama': True, 'hash': 'md5'})\n"
               "for line in sys.stdin:\n"
               "    words = line.split()\n"
               "    if words[0] == 'get':\n"
               "        print(' '.join(str(v.decode() if isinstance(v, bytes) else v) for v in map(mc.get, words[1:])), flush=True)\n"
               "    else:\n"
               "        mc.set(words[1], words[2]); print('ok', flush=True)\n")
    old = start_preloaded(fleet, program, listed)
    try:
        keys = [f"c{i}" for i in range(100)]
        old.stdin.write("get " + " ".join(keys) + "\n")
        old.stdin.flush()
        assert old.stdout.readline().split() == ["None"] * 100
        added = Memcached().start()
        reload_with(fleet, fleet.servers + [added], {})
        # A program started after the change, given the new list, writes...
        new_list = listed + [added.address]
        assert say(fleet, "c", new_list, "set-many", "c", 100, 0) == "stored 100"
        # ...and the one started before reads every value at once.
        old.stdin.write("get " + " ".join(keys) + "\n")
        old.stdin.flush()
        assert old.stdout.readline().split() == [f"v{i}" for i in range(100)]
        # And the other way round.
        for i in range(0, 100, 10):
            old.stdin.write(f"set c{i} w{i}\n")
            old.stdin.flush()
            assert old.stdout.readline().strip() == "ok"
        for i in range(0, 100, 10):
            assert say(fleet, "c", new_list, "get", f"c{i}") == f"VALUE w{i}"
    finally:
        old.stdin.close()
        old.wait(timeout=10)
    assert old.stderr.read() == ""


def test_a_handle_hashing_otherwise_than_the_file_gets_no_fallback_after_a_join(fleet):
    managed_fleet(fleet, 3)  # [routing]: ketama, md5
    listed = [m.address for m in fleet.servers]
    added = Memcached().start()
    reload_with(fleet, fleet.servers + [added], {})
    # pylibmc's ketama hashes keys with one_at_a_time: the previous list's
    # md5 placement says nothing about where its keys were.
    n = 200
    assert say(fleet, "pylibmc", listed, "set-many", "h", n, 0) == f"stored {n}"
    before = holders(fleet, [f"h{i}" for i in range(n)])
    env = plain_env()
    env.update(PRELOAD)
    env["MCSHIM_STATE"] = fleet.state
    env["MCSHIM_DEBUG"] = "1"
    result = subprocess.run(CLIENTS["pylibmc"] + [",".join(listed), "get-many", "h", str(n)], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.stdout.strip() == f"hits {n}"
    assert "placement changed with the server list" not in result.stderr
    assert holders(fleet, [f"h{i}" for i in range(n)]) == before  # nothing moved, nothing deleted


def test_modula_server_removed_after_drain_move_every_key_still_hits(fleet):
    # The documented removal: drain --move (each key goes to its substitute,
    # modula's salted rehash), wait, remove by reload, stop the server. The
    # keys' new placement over the shorter list is another server: a miss
    # there must find the key where the drain put it.
    fleet.add_servers(3)
    fleet.write_config({"recently_down_window": f"{WINDOW_S}s", "stats_interval": "200ms", "drain_rate": "5000"},
                       routing={"managed_list": "on", **MODULA})
    fleet.start_daemon()
    listed = [m.address for m in fleet.servers]
    n = 300
    keys = [f"r{i}" for i in range(n)]
    assert say(fleet, "c", listed, "set-many", "r", n, 0, flags=["--modula"]) == f"stored {n}"
    removed = fleet.servers[2]
    drained_keys = [k for k, where in holders(fleet, keys).items() if removed.address in where]
    assert len(drained_keys) > n // 5
    waited = fleet.ctl("drain", "--move", "--wait", "--timeout", "60s", removed.address, timeout=90)
    assert waited.returncode == 0, waited.stderr
    fleet.write_config({"recently_down_window": f"{WINDOW_S}s", "stats_interval": "200ms", "drain_rate": "5000"},
                       servers=listed[:2], routing={"managed_list": "on", **MODULA})
    reloaded = fleet.ctl("reload")
    assert reloaded.returncode == 0, reloaded.stderr
    fleet.servers = fleet.servers[:2]
    wait_until(lambda: [s["address"] for s in fleet.status()["servers"]] == listed[:2], what="the shorter list")
    assert [s["took_keys"] for s in fleet.status()["membership_change"]["previous"]["servers"]] == [True, True, False]
    removed.stop()
    # The program still names the three servers it was started with.
    assert say(fleet, "c", listed, "get-many", "r", n, flags=["--modula"]) == f"hits {n}"
    after = holders(fleet, keys)
    assert all(after[k] for k in keys)


def routed_targets(fleet, keys):
    """key -> the address `mcctl route` says the key goes to."""
    out = subprocess.run([MCCTL, "-s", fleet.state, "route", "--json", "-"], input="\n".join(keys) + "\n",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {r["key"]: r["target"] for r in map(json.loads, out.stdout.splitlines())}


def test_a_reload_that_changes_only_a_weight_reaches_a_running_programs_handle(fleet):
    # libmemcached hides an instance's weight: a handle that already names
    # the file's servers would keep its old weights, and place keys where
    # neither mcctl route nor a program started after the reload does.
    routing = {"distribution": "ketama_weighted"}
    managed_fleet(fleet, 3, routing)
    listed = [m.address for m in fleet.servers]
    # A long-lived pylibmc program: "set PREFIX N" lines on stdin.
    program = ("import sys, pylibmc\n"
               "mc = pylibmc.Client(sys.argv[1].split(','), behaviors={'ketama_weighted': True, 'hash': 'md5'})\n"
               "for line in sys.stdin:\n"
               "    prefix, n = line.split()[1], int(line.split()[2])\n"
               "    print('stored', sum(1 for i in range(n) if mc.set(f'{prefix}{i}', f'v{i}')), flush=True)\n")
    running = start_preloaded(fleet, program, listed)
    n = 300
    try:
        running.stdin.write(f"set a {n}\n")
        running.stdin.flush()
        assert running.stdout.readline().strip() == f"stored {n}"
        before = [f"a{i}" for i in range(n)]
        assert holders(fleet, before) == {k: [where] for k, where in routed_targets(fleet, before).items()}
        after = [f"b{i}" for i in range(n)]
        unweighted = routed_targets(fleet, after)
        fleet.write_config({"recently_down_window": f"{WINDOW_S}s"},
                           servers=[f"{listed[0]} weight=5"] + listed[1:], routing={"managed_list": "on", **routing})
        reloaded = fleet.ctl("reload")
        assert reloaded.returncode == 0, reloaded.stderr
        wait_until(lambda: [s.get("weight") for s in fleet.status()["servers"]] == [5, 1, 1], what="the new weight")
        weighted = routed_targets(fleet, after)
        assert sum(1 for k in after if weighted[k] != unweighted[k]) > n // 10  # the weight moved keys
        running.stdin.write(f"set b {n}\n")
        running.stdin.flush()
        assert running.stdout.readline().strip() == f"stored {n}"
        # The running program's keys land where mcctl route says they go now.
        assert holders(fleet, after) == {k: [where] for k, where in weighted.items()}
    finally:
        running.stdin.close()
        running.wait(timeout=10)
    assert running.stderr.read() == ""
