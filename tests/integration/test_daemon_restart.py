"""A restart of mcwatchd (an upgrade, a crash) or a reload changes nothing for
clients: what the replaced file said about each server (state, recently-down
window, the flush a rejoin owes, restart counts, operator overrides) carries
over, matched by address, and the generation only moves forward."""

import signal
import time

from conftest import wait_until

KEYS = [f"key{i}" for i in range(20)]


def set_keys(server, value=b"old"):
    for key in KEYS:
        assert server.command(b"set %s 0 0 %d\r\n%s\r\n" % (key.encode(), len(value), value)) == b"STORED\r\n"


def keys_held(server):
    return sum(server.command(f"get {key}\r\n".encode(), expect_end=b"END\r\n") != b"END\r\n" for key in KEYS)


def restart_daemon(fleet, sig=signal.SIGKILL, wait_live=False):
    fleet.stop_daemon(sig)
    return fleet.start_daemon(wait_live=wait_live)


def states_during(fleet, address, seconds):
    """Every state the file shows for `address` over `seconds` (bounded polls)."""
    seen = []
    deadline = time.monotonic() + seconds
    for _ in range(200):
        if time.monotonic() >= deadline:
            break
        seen.append(fleet.states().get(address))
        time.sleep(0.02)
    return seen


def test_a_partition_that_heals_while_the_daemon_restarts_is_flushed_before_live(fleet):
    cut_off, _, _ = fleet.add_servers(3)
    fleet.start_daemon()
    set_keys(cut_off)
    cut_off.signal(signal.SIGSTOP)  # unreachable, keeps its pre-outage values
    fleet.wait_states({cut_off.address: "dead"})
    fleet.stop_daemon(signal.SIGKILL)
    cut_off.signal(signal.SIGCONT)  # heals while no daemon watches
    fleet.start_daemon(wait_live=False)
    fleet.wait_states({cut_off.address: "live"})
    assert keys_held(cut_off) == 0
    assert fleet.server(cut_off.address)["flushes"] == 1
    assert "detail=\"flush_all before rejoin\"" in fleet.log_text()


def test_a_dead_server_is_still_dead_the_moment_a_restarted_daemon_publishes(fleet):
    dead, _ = fleet.add_servers(2)
    fleet.start_daemon()
    dead.kill()
    fleet.wait_states({dead.address: "dead"})
    before = fleet.server(dead.address)
    restart_daemon(fleet)
    seen = states_during(fleet, dead.address, 1.0)
    assert set(seen) == {"dead"}, seen
    after = fleet.server(dead.address)
    assert after["since"] == before["since"]
    assert after["transitions"] == before["transitions"]
    assert "event=carry_over servers=2 of=2" in fleet.log_text()


def test_the_recently_down_window_and_restart_count_survive_a_daemon_restart(fleet):
    back, _ = fleet.add_servers(2)
    fleet.write_config({"recently_down_window": "10m"})
    fleet.start_daemon()
    back.kill()
    fleet.wait_states({back.address: "dead"})
    back.start()
    fleet.wait_states({back.address: "live"})
    before = fleet.server(back.address)
    assert before["recently_down_until"] is not None and before["restarts"] == 1
    restart_daemon(fleet, signal.SIGTERM)
    seen = states_during(fleet, back.address, 0.5)
    assert set(seen) == {"live"}, seen
    after = fleet.server(back.address)
    # Still recently down (the shim looks on the substitute for keys written
    # during the outage, and deletes its copies on writes), ending no later
    # and not much earlier than before.
    assert after["recently_down_until"] is not None
    assert after["restarts"] == 1
    assert after["flushes"] == before["flushes"]


def test_drain_and_down_survive_a_daemon_restart(fleet):
    drained, downed, _ = fleet.add_servers(3)
    fleet.start_daemon()
    assert fleet.ctl("drain", drained.address).returncode == 0
    assert fleet.ctl("down", downed.address).returncode == 0
    restart_daemon(fleet)
    assert fleet.states()[drained.address] == "draining"
    assert fleet.states()[downed.address] == "dead"
    assert fleet.server(drained.address)["override"] == "drain"
    assert fleet.server(downed.address)["override"] == "down"
    result = fleet.ctl("undrain", drained.address)
    assert result.returncode == 0, result.stderr
    fleet.wait_states({drained.address: "live"})
    assert fleet.server(drained.address)["flushes"] == 1


def test_a_reload_that_removes_and_re_adds_a_cut_off_server_flushes_it_before_live(fleet):
    cut_off, a, b = fleet.add_servers(3)
    fleet.start_daemon()
    set_keys(cut_off)
    cut_off.signal(signal.SIGSTOP)
    fleet.wait_states({cut_off.address: "dead"})
    fleet.write_config(servers=[a.address, b.address])
    assert fleet.ctl("reload").returncode == 0
    cut_off.signal(signal.SIGCONT)
    fleet.write_config(servers=[cut_off.address, a.address, b.address])
    # A second membership change within the first's window: forced.
    assert fleet.ctl("reload", "--force").returncode == 0
    fleet.wait_states({cut_off.address: "live"})
    assert keys_held(cut_off) == 0
    assert fleet.server(cut_off.address)["flushes"] == 1


def test_the_generation_never_goes_backwards_on_reload_or_restart(fleet):
    a, b = fleet.add_servers(2)
    fleet.start_daemon()
    for _ in range(3):  # each drain and undrain changes routing
        assert fleet.ctl("drain", a.address).returncode == 0
        assert fleet.ctl("undrain", a.address).returncode == 0
        fleet.wait_states({a.address: "live"})
    seen = [fleet.status()["daemon"]["generation"]]
    assert seen[0] > 3
    fleet.write_config(servers=[b.address])  # a new file
    assert fleet.ctl("reload").returncode == 0
    seen.append(fleet.status()["daemon"]["generation"])
    restart_daemon(fleet, signal.SIGTERM)
    seen.append(fleet.status()["daemon"]["generation"])
    restart_daemon(fleet, signal.SIGKILL)
    seen.append(fleet.status()["daemon"]["generation"])
    assert seen == sorted(seen) and len(set(seen)) == len(seen), seen
    wait_until(lambda: fleet.status()["daemon"]["generation"] >= seen[-1], what="the generation")
