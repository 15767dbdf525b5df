"""The move after a membership change (docs/DESIGN.md, "Membership
changes"): mcwatchd moves the keys a change placed elsewhere to their new
server, with all the time they have left, deletes the old copy when the new
server's value superseded it, and stops when a later change is forced."""

import json
import re
import subprocess

from conftest import wait_until
from test_membership import routes, without_move
from test_preload import PRELOAD, holders, plain_env, ttl_on

# pylibmc's defaults (no behaviors): modula over libmemcached's default hash.
MODULA = {"distribution": "modula", "hash": "one_at_a_time"}
DAY = 24 * 3600
# Time to live by key number: never expires, an hour, 40 days (beyond 30
# days memcached reads an expiration as a unix time).
TTLS = [0, 3600, 40 * DAY]

WRITE = (
    "import pylibmc, sys, time\n"
    "mc = pylibmc.Client(sys.argv[1].split(','))\n"
    "ttls = [int(t) for t in sys.argv[3].split(',')]\n"
    "for i in range(int(sys.argv[2])):\n"
    "    ttl = ttls[i % len(ttls)]\n"
    "    assert mc.set(f'key{i}', f'value{i}', time=ttl if ttl <= 30 * 86400 else int(time.time()) + ttl)\n"
    "print('ok')\n")

# A value written raw (flags 0) comes back as bytes.
READ = (
    "import json, pylibmc, sys\n"
    "mc = pylibmc.Client(sys.argv[1].split(','))\n"
    "values = {f'key{i}': mc.get(f'key{i}') for i in range(int(sys.argv[2]))}\n"
    "print(json.dumps({k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}))\n")


def pylibmc(script, servers, *args):
    """Runs a pylibmc script (no shim: libmemcached's own placement, what
    every client does once a change's window is over) with `servers`."""
    result = subprocess.run(["/usr/bin/python3", "-c", script, ",".join(s.address for s in servers),
                             *map(str, args)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def read_all(servers, count):
    """{key: value or None} as a client with `servers` reads them."""
    return json.loads(pylibmc(READ, servers, count))


def move(fleet):
    """The latest change's move, from `mcctl status --json`."""
    return fleet.status()["membership_change"]["move"]


def wait_move(fleet, states, timeout=60.0):
    wait_until(lambda: move(fleet)["state"] in states, timeout, f"the move to be {' or '.join(states)}")
    return move(fleet)


def start_modula(fleet, count, rate, window="60s"):
    """Two servers listed, `count` keys written by a client, a third server
    joined by reload: (first, second, joining, keys, where each key was)."""
    first, second, joining = fleet.add_servers(3)
    settings = {"recently_down_window": window, "drain_rate": str(rate)}
    fleet.write_config(settings=settings, servers=[first.address, second.address], routing=MODULA)
    fleet.start_daemon(wait_live=False)
    fleet.wait_states({first.address: "live", second.address: "live"})
    assert pylibmc(WRITE, [first, second], count, ",".join(map(str, TTLS))).strip() == "ok"
    keys = [f"key{i}" for i in range(count)]
    before = {k: where[0] for k, where in holders(fleet, keys).items()}
    fleet.write_config(settings=settings, servers=[first.address, second.address, joining.address],
                       routing=MODULA)
    result = fleet.ctl("reload")
    assert result.returncode == 0, result.stderr
    return first, second, joining, keys, before


def test_after_a_modula_join_every_moved_key_is_at_its_new_server_with_its_time_left(fleet):
    first, second, joining, keys, before = start_modula(fleet, 300, 2000)
    ended = wait_move(fleet, ["done", "failed", "stopped"])
    assert ended["state"] == "done", ended
    now = {k: r["target"] for k, r in routes(fleet, keys).items()}
    moved = [k for k in keys if now[k] != before[k]]
    assert len(moved) > len(keys) // 2  # modula: most keys
    assert (ended["moved"], ended["skipped"], ended["remaining"], ended["sources"]) == (len(moved), 0, 0, 2)

    # Each key has one copy, at its server now: the old copies are gone.
    assert holders(fleet, keys) == {k: [now[k]] for k in keys}
    by_address = {s.address: s for s in fleet.servers}
    for k in moved:
        ttl, left = TTLS[int(k[3:]) % len(TTLS)], ttl_on(by_address[now[k]], k)
        if ttl == 0:
            assert left == -1, k
        else:
            # (+2: an absolute expiration is counted from memcached's clock, which ticks each second)
            assert ttl - 120 < left <= ttl + 2, (k, ttl, left)
    # What a client with the new list reads once the window is over: every value.
    assert read_all([first, second, joining], len(keys)) == {k: f"value{k[3:]}" for k in keys}

    text = fleet.ctl("status").stdout
    assert f"  keys moved: done, {len(moved)} moved, 0 skipped (from 2 servers)\n" in text
    assert re.search(rf"event=membership_move_end outcome=done sources=2 moved={len(moved)} skipped=0 remaining=0 ",
                     fleet.log_text())


def test_a_key_written_at_its_new_server_during_the_move_keeps_its_value_and_loses_its_old_copy(fleet):
    first, second, joining, keys, before = start_modula(fleet, 100, 2)  # one key a second per source
    wait_move(fleet, ["moving"])
    now = {k: r["target"] for k, r in routes(fleet, keys).items()}
    moved = [k for k in keys if now[k] != before[k]]
    written = moved[-8:]
    by_address = {s.address: s for s in fleet.servers}
    # Written where the key goes now (after the window a client's write
    # there does not delete the old copy), before the move reaches most of them.
    for k in written:
        assert by_address[now[k]].command(f"set {k} 0 0 5\r\nnewer\r\n".encode()) == b"STORED\r\n"
    ended = wait_move(fleet, ["done", "failed", "stopped"])
    assert ended["state"] == "done", ended
    assert ended["skipped"] >= 1, ended  # at least one of them reached after its write
    found = holders(fleet, written)
    for k in written:
        assert found[k] == [now[k]], (k, found[k], before[k])
        assert by_address[now[k]].command(f"get {k}\r\n".encode(), expect_end=b"END\r\n") == \
            f"VALUE {k} 0 5\r\nnewer\r\nEND\r\n".encode()

    # A later change that places the keys on their old servers again (the
    # joined server removed, forced: its keys are lost) reads no older value.
    fleet.write_config(settings={"recently_down_window": "60s", "drain_rate": "2"},
                       servers=[first.address, second.address], routing=MODULA)
    forced = fleet.ctl("reload", "--force")
    assert forced.returncode == 0, forced.stderr
    values = read_all([first, second], len(keys))
    # A miss, or the newer value (the move after this change may bring it
    # back), never the one before it.
    assert {k: values[k] for k in written if values[k] not in (None, "newer")} == {}


def test_a_forced_second_change_stops_the_first_move(fleet):
    first, second, joining, keys, before = start_modula(fleet, 200, 2)
    first_change = fleet.status()["membership_change"]
    wait_move(fleet, ["moving"])
    third = fleet.add_servers(1)[-1]
    fleet.write_config(settings={"recently_down_window": "60s", "drain_rate": "2"},
                       servers=[first.address, second.address, joining.address, third.address], routing=MODULA)
    refused = fleet.ctl("reload")
    assert refused.returncode == 1
    assert "reload once its move is done (`mcctl status`) or after that" in refused.stderr
    assert without_move(fleet.status()["membership_change"]) == without_move(first_change)

    forced = fleet.ctl("reload", "--force")
    assert forced.returncode == 0, forced.stderr
    log = fleet.log_text()
    for server in (first, second):
        assert re.search(rf"event=membership_move_source_end server={re.escape(server.address)} outcome=stopped "
                         r".* reason=\"a later membership change\"", log), log
    assert re.search(r"event=membership_move_end outcome=stopped sources=2 ", log)
    # The second change has a move of its own, from the three servers listed before it.
    change = fleet.status()["membership_change"]
    assert change["added"] == [third.address]
    assert change["move"]["sources"] == 3
    assert change["move"]["state"] in ("listing", "moving", "done")


def test_a_key_the_join_fallback_moves_keeps_all_its_time_left_even_past_30_days(fleet):
    # drain_rate 1: the daemon's move barely starts, so clients' reads in the
    # window move the keys (the shim's join fallback), not the daemon.
    first, second, joining, keys, before = start_modula(fleet, 90, 1)
    env = plain_env()
    env.update(PRELOAD)
    env["MCSHIM_STATE"] = fleet.state
    result = subprocess.run(["/usr/bin/python3", "-c", READ, ",".join(s.address for s in (first, second, joining)),
                             str(len(keys))], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {k: f"value{k[3:]}" for k in keys}
    now = {k: r["target"] for k, r in routes(fleet, keys).items()}
    by_address = {s.address: s for s in fleet.servers}
    long_lived = [k for k in keys if now[k] != before[k] and TTLS[int(k[3:]) % len(TTLS)] == 40 * DAY]
    assert len(long_lived) > 10
    # Each is at its new server with its 40 days, not expired at once (a
    # relative number past 30 days is a unix time in 1970 to memcached).
    assert {k: holders(fleet, [k])[k] for k in long_lived} == {k: [now[k]] for k in long_lived}
    for k in long_lived:
        assert 40 * DAY - 120 < ttl_on(by_address[now[k]], k) <= 40 * DAY + 2, k


def test_a_change_after_the_window_is_refused_while_the_move_runs(fleet):
    first, second, joining, keys, before = start_modula(fleet, 200, 2, window="2s")
    wait_move(fleet, ["moving"])
    wait_until(lambda: not fleet.status()["membership_change"]["counts"], 30, "the join's window to end")
    assert move(fleet)["state"] == "moving"  # 2 keys a second: the move outlasts the window
    third = fleet.add_servers(1)[-1]
    fleet.write_config(settings={"recently_down_window": "2s", "drain_rate": "2"},
                       servers=[first.address, second.address, joining.address, third.address], routing=MODULA)
    refused = fleet.ctl("reload")
    assert refused.returncode == 1, refused.stdout
    assert re.search(r"refused: the move after the membership change of \S+ still runs \(\d+ keys moved, \d+ left "
                     r"to move\)", refused.stderr), refused.stderr
    assert move(fleet)["state"] == "moving"  # nothing changed
    forced = fleet.ctl("reload", "--force")
    assert forced.returncode == 0, forced.stderr
    assert fleet.status()["membership_change"]["added"] == [third.address]


def test_a_move_cut_short_by_a_daemon_restart_is_run_again_and_every_key_arrives(fleet):
    first, second, joining, keys, before = start_modula(fleet, 100, 10)  # 5 keys a second per source
    wait_move(fleet, ["moving"])
    fleet.stop_daemon()
    cut = move(fleet)
    assert cut["state"] in ("listing", "moving") and cut["remaining"] > 0, cut
    fleet.start_daemon(wait_live=False)
    assert re.search(r"event=membership_move_resume change=\S+ moved_before=\d+ remaining_before=[1-9]\d* ",
                     fleet.log_text()), fleet.log_text()
    ended = wait_move(fleet, ["done", "failed", "stopped"])
    assert ended["state"] == "done", ended
    # Every key at its server now, one copy: none left where no client looks.
    now = {k: r["target"] for k, r in routes(fleet, keys).items()}
    assert holders(fleet, keys) == {k: [now[k]] for k in keys}
    assert read_all([first, second, joining], len(keys)) == {k: f"value{k[3:]}" for k in keys}
