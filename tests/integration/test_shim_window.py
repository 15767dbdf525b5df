"""The shim's operations while a server P is recently down ("the window"):
P is back and live, and a miss on P is looked up on S, where P's keys went
during the outage. Real memcached servers, a real mcwatchd, and the three
real clients (our C program, pylibmc, PHP's memcached extension). Where the
values on P are the newest, a client must read exactly what it reads
without the shim."""

import threading

import pytest

from conftest import wait_until
from test_preload import C_CLIENT, PHP, client_says, flush_all, holders

WINDOW_S = 60


@pytest.fixture
def window_fleet(fleet):
    fleet.add_servers(3)
    fleet.write_config({"recently_down_window": f"{WINDOW_S}s", "writeback_ttl": "10m"})
    fleet.start_daemon()
    return fleet


def command_for(client, flags):
    return [C_CLIENT] + flags if client == "c" else client


def outage_then_return(fleet, client, prefix, n, flags=()):
    """Writes PREFIX0..PREFIX(n-1) through the shim while P (servers[1]) is
    dead, then brings P back: returns (P, P's keys, S of each of P's keys),
    with the window open."""
    command = command_for(client, list(flags))
    keys = [f"{prefix}{i}" for i in range(n)]
    stored = [("ns:" if "--namespace" in flags else "") + k for k in keys]
    assert client_says(fleet, command, "set-many", prefix, n, 0, shim=False) == f"stored {n}"
    placed = holders(fleet, stored)
    native = {k: placed[s] for k, s in zip(keys, stored)}
    flush_all(fleet)
    p = fleet.servers[1]
    on_p = [k for k in keys if native[k] == [p.address]]
    assert on_p
    p.kill()
    fleet.wait_states({p.address: "dead"})
    assert client_says(fleet, command, "set-many", prefix, n, 0) == f"stored {n}"
    during = holders(fleet, stored)
    s_of = {k: during[s][0] for k, s in zip(keys, stored) if k in on_p}
    p.start()
    fleet.wait_states({p.address: "live"})
    assert fleet.server(p.address)["recently_down_until"] is not None
    return p, on_p, s_of


def in_order(output):
    """A multi-get's lines with its results sorted: libmemcached hands them
    back in the order the servers' replies arrive."""
    lines = output.splitlines()
    return "\n".join(sorted(line for line in lines if line.startswith("VALUE ")) +
                     [line for line in lines if not line.startswith("VALUE ")])


def outputs(fleet, command, *args):
    """What the client prints with the shim and without it."""
    return (in_order(client_says(fleet, command, *args)),
            in_order(client_says(fleet, command, *args, shim=False)))


# --- 17 §1: a key named twice in one multi-get


@pytest.mark.parametrize("client,flags,verb", [
    ("c", [], "mget"),
    ("c", ["--namespace", "ns:"], "mget"),
    ("c", ["--binary"], "exec"),
    ("c", [], "mget-by-key"),
    ("pylibmc", [], "mget"),
    pytest.param("php", [], "mget", marks=PHP.marks),
    pytest.param("php", [], "delayed", marks=PHP.marks),
])
def test_multi_get_naming_a_key_twice_in_the_window(window_fleet, client, flags, verb):
    """Before the fix: pylibmc died of SIGABRT (double free), PHP returned S's
    older copy, the C loop got three results for two keys."""
    fleet = window_fleet
    command = command_for(client, flags)
    p, on_p, _ = outage_then_return(fleet, client, "dup", 30, flags)
    k, other = on_p[0], f"dup{next(i for i in range(30) if f'dup{i}' not in on_p)}"
    # Read through the shim: written back to P, S keeps its copy; then P's is
    # made newer (as a write from a host without the shim would).
    assert client_says(fleet, command, "get", k).startswith("VALUE ")
    stored = ("ns:" if flags[:1] == ["--namespace"] else "") + k
    assert p.command(f"set {stored} 0 0 5\r\nnewer\r\n".encode()) == b"STORED\r\n"
    for keys in ([k, k], [k, other, k], [other, k, k]):
        # By key: grouped under k itself, so that k is where it always is.
        args = [k] + keys if verb == "mget-by-key" else keys
        with_shim, without = outputs(fleet, command, verb, *args)
        assert with_shim == without, keys
        assert f"VALUE {k} newer" in with_shim and f"VALUE {k} v" not in with_shim


# --- 17 §13: the code that ends a multi-get


@pytest.mark.parametrize("client,flags,verb", [
    ("c", [], "mget"),
    ("c", [], "mget-by-key"),
    ("c", ["--binary"], "exec"),
    ("pylibmc", [], "mget"),
    pytest.param("php", [], "mget", marks=PHP.marks),
    pytest.param("php", [], "delayed", marks=PHP.marks),
    pytest.param("php", [], "mget-by-key", marks=PHP.marks),
])
def test_multi_get_in_the_window_with_keys_missing_everywhere_ends_as_libmemcached(window_fleet, client, flags,
                                                                                    verb):
    """Before the fix: the C loop ended with NOT FOUND instead of END, PHP's
    getMulti said 16 NOT FOUND instead of SUCCESS, getDelayed + fetchAll()
    returned false instead of the values (the second look found nothing and
    its ending replaced the stream's)."""
    fleet = window_fleet
    command = command_for(client, flags)
    n = 30
    p, on_p, _ = outage_then_return(fleet, client, "end", n, flags)
    assert client_says(fleet, command, "get-many", "end", n) == f"hits {n}"  # all written back to P
    gone = on_p[:2]
    for k in gone:
        assert client_says(fleet, command, "delete", k) == "SUCCESS"
    everything = [f"end{i}" for i in range(n)]
    # By key: P's keys grouped under one that is there.
    batches = ([on_p[-1]] + on_p, [on_p[-1]] + gone) if verb == "mget-by-key" else (everything, gone[:1])
    for batch in batches:
        with_shim, without = outputs(fleet, command, verb, *batch)
        assert with_shim == without, batch
    assert with_shim.count("VALUE ") == 0
    with_shim, _ = outputs(fleet, command, verb, *batches[0])
    found = n - 2 if verb != "mget-by-key" else len(on_p) - 2
    assert with_shim.count("VALUE ") == found


# --- 17 §14: an empty group key


@pytest.mark.parametrize("client", ["c", PHP])
def test_empty_group_key_routes_as_libmemcached_hashes(window_fleet, client):
    """Before the fix: with a server dead, getByKey('', k) and
    getMultiByKey('', keys) of its keys failed (the shim routed the empty
    string; libmemcached takes it for no group key and hashes each key)."""
    fleet = window_fleet
    n = 30
    keys = [f"grp{i}" for i in range(n)]
    # All live: a store by an empty group key goes where libmemcached hashes
    # the empty string, with the shim as without it.
    placed = []
    for shim in (False, True):
        flush_all(fleet)
        for k in keys[:5]:
            assert client_says(fleet, client, "set-by-key", "", k, "x", 0, shim=shim) == "SUCCESS"
        placed.append(holders(fleet, keys[:5]))
    assert placed[0] == placed[1]
    p = fleet.servers[1]
    # The keys that failed are the dead server's: each is read by a process
    # of its own below (the others are read by the multi-get at the end).
    flush_all(fleet)
    assert client_says(fleet, client, "set-many", "grp", n, 0) == f"stored {n}"
    on_p = [k for k, where in holders(fleet, keys).items() if where == [p.address]]
    assert on_p
    flush_all(fleet)
    p.kill()
    fleet.wait_states({p.address: "dead"})
    assert client_says(fleet, client, "set-many", "grp", n, 0) == f"stored {n}"
    for k in on_p:
        assert client_says(fleet, client, "get-by-key", "", k) == f"VALUE v{k[3:]}", k
    got = client_says(fleet, client, "mget-by-key", "", *keys)
    assert got.count("VALUE ") == n, got
    assert got.splitlines()[-1] in ("END SERVER END", "END 0 SUCCESS")


# --- 17 §15: counters and touch in the window


@pytest.mark.parametrize("client,flags,initial", [
    ("c", [], None),
    ("c", ["--binary"], 0),
    ("pylibmc", [], None),
    pytest.param("php", [], None, marks=PHP.marks),
])
def test_counter_incremented_in_the_window_keeps_every_acknowledged_increment(window_fleet, client, flags, initial):
    """Before the fix: the first increment on P (which lacks the counter)
    answered NOT FOUND and deleted S's count, or, with an initial value,
    restarted the count at 0 on P; acknowledged increments were lost."""
    fleet = window_fleet
    command = command_for(client, flags)
    count = ["count"] + ([] if initial is None else [initial])
    keys = [f"cnt{i}" for i in range(30)]
    assert client_says(fleet, command, "set-many", "cnt", 30, 0, shim=False) == "stored 30"
    p = fleet.servers[1]
    counter = next(k for k, v in holders(fleet, keys).items() if v == [p.address])
    flush_all(fleet)
    p.kill()
    fleet.wait_states({p.address: "dead"})
    assert client_says(fleet, command, "set", counter, "0", 0) == "SUCCESS"
    assert client_says(fleet, command, *count[:1], counter, 100, *count[1:]) == "acknowledged 100"
    p.start()
    fleet.wait_states({p.address: "live"})
    assert fleet.server(p.address)["recently_down_until"] is not None
    # Increments first (P lacks the counter), then two counting processes
    # and a reader at once.
    assert client_says(fleet, command, *count[:1], counter, 5, *count[1:]) == "acknowledged 5"
    results = {}

    def run(name, *args):
        results[name] = client_says(fleet, *args)

    threads = [threading.Thread(target=run, args=(f"count{i}", command, count[0], counter, 10, *count[1:]))
               for i in range(2)]
    threads.append(threading.Thread(target=run, args=("read", command, "get", counter)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert results["count0"] == results["count1"] == "acknowledged 10", results
    assert results["read"].startswith("VALUE "), results  # written back or moved: either way served
    # Every increment counted, on P, and no older count left to be read back.
    assert holders(fleet, [counter])[counter] == [p.address]
    assert p.command(f"get {counter}\r\n".encode(), expect_end=b"END\r\n").split(b"\r\n")[1] == b"125"


def test_multi_get_in_the_window_survives_other_handles_used_between_fetches(window_fleet):
    """Before the fix, the multi-get's second round used the handle's routing
    by a bare pointer, freed once five other handles had taken its place in
    the per-thread cache (AddressSanitizer: heap-use-after-free)."""
    fleet = window_fleet
    p, on_p, _ = outage_then_return(fleet, "c", "ch", 40)
    keys = [f"ch{i}" for i in range(40)]
    # First: P's keys are still only on S, so the stream has its second round.
    churned = client_says(fleet, [C_CLIENT], "mget-churn", *keys)
    assert in_order(churned) == in_order(client_says(fleet, [C_CLIENT], "mget", *keys))
    assert churned.count("VALUE ") == 40 and churned.splitlines()[-1] == "END SERVER END", churned


def test_counter_whose_move_fails_in_the_window_keeps_its_count(window_fleet):
    """A count on S that the write-back cannot move (a key with a space,
    which the binary protocol carries and the meta protocol cannot): before
    the fix, increment_with_initial created the key on P at the initial
    value and then deleted S's count (the counter read 4, not 99)."""
    fleet = window_fleet
    command = [C_CLIENT, "--binary"]
    keys = [f"spaced key {i}" for i in range(24)]
    p = fleet.servers[1]
    p.kill()
    fleet.wait_states({p.address: "dead"})
    for k in keys:
        assert client_says(fleet, command, "count", k, 100, 0) == "acknowledged 100", k
    p.start()
    fleet.wait_states({p.address: "live"})
    acknowledged = {k: client_says(fleet, command, "count", k, 5, 0) for k in keys}
    values = {k: client_says(fleet, command, "get", k) for k in keys}
    # The keys of live servers counted on; P's kept their count on S, where
    # reads find it, and said NOT FOUND rather than restart it.
    moved_nowhere = [k for k in keys if acknowledged[k] == "acknowledged 0"]
    assert moved_nowhere, acknowledged  # some of the keys are P's
    for k in keys:
        # The first increment_with_initial creates the key at 0: 100 calls count 99.
        expected = "VALUE 99" if k in moved_nowhere else "VALUE 104"
        assert values[k] == expected, (k, acknowledged[k], values[k])


@pytest.mark.parametrize("client", ["c", "pylibmc", PHP])
def test_touch_in_the_window_acts_on_the_copy_readers_are_served(window_fleet, client):
    """Before the fix: touch(k, 1) of a key still on S only answered NOT
    FOUND, and a key on both P and S was served from S after P's copy
    expired."""
    fleet = window_fleet
    p, on_p, _ = outage_then_return(fleet, client, "tch", 30)
    assert len(on_p) >= 2
    only_on_s, on_both = on_p[0], on_p[1]
    assert client_says(fleet, client, "get", on_both).startswith("VALUE ")  # written back to P
    for k in (only_on_s, on_both):
        assert client_says(fleet, client, "touch", k, 1) == "SUCCESS", k
    wait_until(lambda: all(client_says(fleet, client, "get", k) == "NOT FOUND" for k in (only_on_s, on_both)),
               8, "the touched keys to expire")


def test_multi_get_in_the_window_into_an_allocated_result_uses_no_freed_memory(window_fleet):
    """libmemcached frees a result from memcached_result_create(memc, NULL)
    when the stream ends: the end of the first round must not free it while
    the second round still fills it (MALLOC_PERTURB_ makes a use after free
    show)."""
    fleet = window_fleet
    p, on_p, _ = outage_then_return(fleet, "c", "heap", 30)
    keys = [f"heap{i}" for i in range(30)]
    extra = {"MALLOC_PERTURB_": "165", "MALLOC_CHECK_": "3"}
    got = in_order(client_says(fleet, [C_CLIENT], "mget-heap", *keys, extra=extra))
    assert got == "\n".join(sorted(f"VALUE {k} v{k[4:]}" for k in keys) + ["END SERVER END"])
