"""A server that a client lists and mcwatchd does not publish (never in its
config, or removed from it while clients still list it): nothing says it is
alive, so it never takes another server's keys; its own keys go to it as
libmemcached places them. MCSHIM_DEBUG says so, once per handle."""

import signal

from test_preload import client_says, flush_all, holders, native_placement, run_client


def test_unpublished_server_is_never_a_substitute_and_keeps_its_own_keys(fleet):
    fleet.add_servers(4)
    published, unpublished = fleet.servers[:3], fleet.servers[3]
    fleet.write_config(servers=[m.address for m in published])
    fleet.start_daemon(wait_live=False)
    fleet.wait_states({m.address: "live" for m in published})
    keys = [f"u{i}" for i in range(200)]
    native = native_placement(fleet, "c", keys, "u")
    victim = published[1]
    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    assert client_says(fleet, "c", "set-many", "u", len(keys), 0) == f"stored {len(keys)}"
    during = holders(fleet, keys)
    moved = [k for k in keys if native[k] == [victim.address]]
    own = [k for k in keys if native[k] == [unpublished.address]]
    assert moved and own
    landed_on_unpublished = [k for k in moved if during[k] == [unpublished.address]]
    assert landed_on_unpublished == [], f"{len(landed_on_unpublished)} of {len(moved)} moved keys"
    assert all(len(during[k]) == 1 for k in moved)
    assert all(during[k] == [unpublished.address] for k in own)


def test_server_removed_from_daemon_config_gets_no_other_keys(fleet):
    """issue 17 §15: removed from mcwatchd's config by a reload while the
    clients still list it, it got a dead server's keys again."""
    fleet.add_servers(4)
    fleet.start_daemon()
    keys = [f"r{i}" for i in range(200)]
    native = native_placement(fleet, "c", keys, "r")
    removed, victim = fleet.servers[3], fleet.servers[0]
    fleet.write_config(servers=[m.address for m in fleet.servers[:3]])
    fleet.daemon.send_signal(signal.SIGHUP)
    fleet.wait_states({removed.address: None})
    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    flush_all(fleet)
    assert client_says(fleet, "c", "set-many", "r", len(keys), 0) == f"stored {len(keys)}"
    during = holders(fleet, keys)
    moved = [k for k in keys if native[k] == [victim.address]]
    assert moved
    assert [k for k in moved if removed.address in during[k]] == []


def test_debug_describes_each_handle_once_with_its_real_routing(fleet):
    fleet.add_servers(3)
    fleet.write_config(servers=[m.address for m in fleet.servers[:2]], routing={"distribution": "modula",
                                                                                "hash": "one_at_a_time"})
    fleet.start_daemon(wait_live=False)
    fleet.wait_states({m.address: "live" for m in fleet.servers[:2]})
    status, out, err = run_client(fleet, "c", "set-many", "d", 30, 0, extra={"MCSHIM_DEBUG": "1"})
    assert status == 0 and out == "stored 30\n"
    lines = err.splitlines()
    described = [line for line in lines if "distribution=" in line]
    assert len(described) == 1, err
    assert ("distribution=ketama hash=md5 servers=3; state file [routing] distribution=modula hash=one_at_a_time "
            "(differs: mcctl route does not answer for this handle)") in described[0]
    unknown = [line for line in lines if "not published by mcwatchd" in line]
    assert len(unknown) == 1 and fleet.servers[2].address in unknown[0] and fleet.state in unknown[0], err
    assert fleet.servers[0].address not in unknown[0] and fleet.servers[1].address not in unknown[0]
    # Without MCSHIM_DEBUG, nothing.
    assert client_says(fleet, "c", "set-many", "d", 30, 0) == "stored 30"
