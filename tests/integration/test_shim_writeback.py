"""What the shim writes back during a recently-down window or a drain, seen
server by server with meta commands: a copy never outlives the original, and
no interleaving of a fallback read with a write or delete leaves an older
value behind."""

from test_preload import client_says, holders, native_placement, shim_fleet, ttl_on  # noqa: F401 (a fixture)


def kill_and_restart_with_outage_copies(fleet, prefix, n, ttl):
    """Kills a server, sets n keys through the shim with `ttl` (the dead
    server's keys go to their fallback), restarts it empty and waits until it
    is live and recently down. Returns (server, its keys)."""
    keys = [f"{prefix}{i}" for i in range(n)]
    native = native_placement(fleet, "c", keys, prefix)
    victim = fleet.servers[1]
    victim_keys = [k for k in keys if native[k] == [victim.address]]
    assert victim_keys
    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    assert client_says(fleet, "c", "set-many", prefix, n, ttl) == f"stored {n}"
    victim.start()
    fleet.wait_states({victim.address: "live"})
    assert fleet.server(victim.address)["recently_down_until"] is not None
    return victim, victim_keys


def test_value_set_with_10s_in_an_outage_is_written_back_with_10s_not_writeback_ttl(shim_fleet):
    fleet = shim_fleet
    n = 60
    victim, victim_keys = kill_and_restart_with_outage_copies(fleet, "t", n, 10)
    # Half by single gets, half by a multi-get: both write back.
    single = victim_keys[: len(victim_keys) // 2]
    for k in single:
        assert client_says(fleet, "c", "get", k) == f"VALUE v{k[1:]}"
    assert client_says(fleet, "c", "mget-many", "t", n) == f"found {n}"
    ttls = {k: ttl_on(victim, k) for k in victim_keys if victim.address in holders(fleet, [k])[k]}
    assert sorted(ttls) == sorted(victim_keys), "every key written back"
    assert all(0 < t <= 10 for t in ttls.values()), ttls


def test_value_without_expiration_is_written_back_with_writeback_ttl(shim_fleet):
    fleet = shim_fleet
    n = 40
    victim, victim_keys = kill_and_restart_with_outage_copies(fleet, "u", n, 0)
    # The outage copy lives at most the window (60 s): the write-back is
    # capped by what it has left, not given writeback_ttl (600 s) afresh.
    assert client_says(fleet, "c", "get-many", "u", n) == f"hits {n}"
    ttls = [ttl_on(victim, k) for k in victim_keys]
    assert all(0 < t <= 60 for t in ttls), ttls


def test_value_set_with_5s_moved_by_a_drain_keeps_5s(shim_fleet):
    fleet = shim_fleet
    n = 60
    keys = [f"d{i}" for i in range(n)]
    assert client_says(fleet, "c", "set-many", "d", n, 5, shim=False) == f"stored {n}"
    draining = fleet.servers[2]
    before = holders(fleet, keys)
    on_draining = [k for k in keys if before[k] == [draining.address]]
    assert on_draining
    result = fleet.ctl("drain", draining.address)
    assert result.returncode == 0, result.stderr
    fleet.wait_states({draining.address: "draining"})
    assert client_says(fleet, "c", "get-many", "d", n) == f"hits {n}"
    after = holders(fleet, on_draining)
    by_address = {m.address: m for m in fleet.servers}
    ttls = {}
    for k in on_draining:
        assert len(after[k]) == 1 and after[k] != [draining.address], k
        ttls[k] = ttl_on(by_address[after[k][0]], k)
    assert all(0 < t <= 5 for t in ttls.values()), ttls
