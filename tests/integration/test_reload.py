"""Reloading the configuration (SIGHUP, mcctl reload): kept servers keep
their state and history, added ones start unknown, removed ones vanish, a
layout change publishes a new file, a broken file is refused."""

import os
import re
import signal
import struct

from conftest import Memcached, wait_until

SUPERSEDED_OFFSET = 168  # Header::superseded, pinned in libshim/state_format.hpp


def addresses(fleet):
    status = fleet.status()
    return [s["address"] for s in status["servers"]] if status else []


def superseded(fd):
    return struct.unpack("<I", os.pread(fd, 4, SUPERSEDED_OFFSET))[0]


def test_sighup_adds_and_removes_servers_and_kept_ones_keep_their_history(fleet):
    kept_drained, removed, kept = fleet.add_servers(3)
    fleet.start_daemon()
    assert fleet.ctl("drain", kept_drained.address).returncode == 0
    before = {s["address"]: s for s in fleet.status()["servers"]}
    old_file = os.open(fleet.state, os.O_RDONLY)  # as a client's mapping would hold it
    try:
        added = Memcached().start()
        fleet.servers.append(added)
        fleet.write_config(servers=[kept_drained.address, kept.address, added.address])
        fleet.daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: addresses(fleet) == [kept_drained.address, kept.address, added.address],
                   what="the new server list")
        assert superseded(old_file) == 1  # readers of the old file know to remap
        assert os.fstat(old_file).st_ino != os.stat(fleet.state).st_ino
    finally:
        os.close(old_file)

    fleet.wait_states({added.address: "live", kept.address: "live", kept_drained.address: "draining"})
    after = {s["address"]: s for s in fleet.status()["servers"]}
    assert removed.address not in after
    # The drain survives the reload; history is the same server's.
    assert after[kept_drained.address]["override"] == "drain"
    for address in (kept_drained.address, kept.address):
        assert after[address]["since"] == before[address]["since"]
        assert after[address]["transitions"] == before[address]["transitions"]
        assert after[address]["probes_ok"] >= before[address]["probes_ok"]
    assert after[added.address]["transitions"] == 1  # unknown -> live, nothing before
    assert after[added.address]["recently_down_until"] is None
    assert re.search(r"event=reload status=ok servers=3 added=1 removed=1 republished=yes", fleet.log_text())


def test_broken_config_is_refused_with_file_and_line_and_the_old_one_keeps_running(fleet):
    fleet.add_servers(2)
    fleet.start_daemon()
    with open(fleet.config) as f:
        good = f.read()
    with open(fleet.config, "a") as f:
        f.write("server = 127.0.0.1:99999\n")
    line = good.count("\n") + 1
    fleet.daemon.send_signal(signal.SIGHUP)
    expected = f"{fleet.config}:{line}: server 127.0.0.1:99999: port '99999' out of range (1-65535)"
    wait_until(lambda: "event=reload status=refused" in fleet.log_text(), what="the refusal")
    assert f'error="{expected}"' in fleet.log_text()

    # Through mcctl, the operator reads the same reason.
    result = fleet.ctl("reload")
    assert result.returncode == 1
    assert result.stderr == f"mcctl: {expected}\n"

    # Still probing and publishing with the old configuration.
    rounds = fleet.status()["daemon"]["rounds"]
    wait_until(lambda: fleet.status()["daemon"]["rounds"] > rounds + 2, what="more rounds")
    assert fleet.daemon.poll() is None
    assert addresses(fleet) == [m.address for m in fleet.servers]
    assert fleet.status()["daemon"]["stale"] is False

    with open(fleet.config, "w") as f:
        f.write(good)
    fixed = fleet.ctl("reload")
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout == f"reloaded {fleet.config}: 2 servers (0 added, 0 removed)\n"


def test_a_reload_listing_one_server_twice_as_localhost_and_127_0_0_1_is_refused(fleet):
    (server,) = fleet.add_servers(1)
    fleet.start_daemon()
    fleet.write_config(servers=[server.address, f"localhost:{server.port}"])
    line = open(fleet.config).read().count("\n")
    result = fleet.ctl("reload")
    assert result.returncode == 1
    assert result.stderr == (f"mcctl: {fleet.config}:{line}: server localhost:{server.port} is {server.address}, "
                             f"the same server as {server.address} on line {line - 1}\n")
    assert addresses(fleet) == [server.address]


def test_settings_that_readers_do_not_see_keep_the_file(fleet):
    fleet.add_servers(1)
    fleet.start_daemon()
    inode = os.stat(fleet.state).st_ino
    fleet.write_config({"fail_after": "5", "probe_timeout": "100ms"})
    assert fleet.ctl("reload").returncode == 0
    assert os.stat(fleet.state).st_ino == inode
    assert "republished=no" in fleet.log_text()

    fleet.write_config({"recently_down_window": "10m"})  # in the file's header: a new file
    result = fleet.ctl("reload")
    assert result.stdout.endswith(", new state file published\n")
    assert os.stat(fleet.state).st_ino != inode
    assert fleet.states() == {fleet.servers[0].address: "live"}


def test_a_reload_that_changes_replicas_publishes_them(fleet):
    """Every client reads the copies' count from the file's header: a reload
    that changes only replicas or replica_max_ttl must publish a new file."""
    fleet.add_servers(2)
    fleet.start_daemon()
    assert fleet.status()["daemon"]["replicas"] == 1
    fleet.write_config(routing={"replicas": "2", "replica_max_ttl": "1d"})
    result = fleet.ctl("reload")
    assert result.stdout.endswith(", new state file published\n"), result.stdout
    daemon = fleet.status()["daemon"]
    assert (daemon["replicas"], daemon["replica_max_ttl_s"]) == (2, 86400)


def test_what_was_set_up_at_start_cannot_change_on_reload(fleet):
    fleet.add_servers(1)
    fleet.start_daemon()
    fleet.write_config({"state_file": str(fleet.dir / "elsewhere" / "state")})
    result = fleet.ctl("reload")
    assert result.returncode == 1
    assert "state_file cannot change on reload" in result.stderr
    assert "restart mcwatchd" in result.stderr
    assert fleet.daemon.poll() is None
