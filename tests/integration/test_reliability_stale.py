"""A daemon that stops writing its heartbeat (hung, or gone) is ignored by
clients after stale_after: keys go where libmemcached alone would send them.
When the daemon is back, clients follow it again, without a restart."""

import os
import signal
import subprocess
import time

import pytest

from conftest import MCCTL, MCWATCHD, run, wait_until
from reliability import CAPI_ROUTE, Background, record_value


def route_once(fleet, key):
    """(native, target, flags) of `key` for a fresh C API client."""
    servers = ",".join(m.address for m in fleet.servers)
    result = run([CAPI_ROUTE, "--state", fleet.state, "--servers", servers, key])
    assert result.returncode == 0, result
    fields = dict(word.split("=", 1) for word in result.stdout.split() if "=" in word)
    return int(fields["native"]), int(fields["target"]), fields["flags"]


def last_answer(client):
    lines = [line for line in client.lines() if line.startswith("target=")]
    return lines[-1] if lines else None


@pytest.mark.serial  # records the time from the daemon's SIGSTOP to native placement
def test_clients_place_natively_while_the_daemon_is_hung_or_gone_and_follow_it_when_back(fleet, tmp_path):
    fleet.add_servers(3)
    fleet.write_config({"stale_after": "1s"})  # probes every 200ms
    fleet.start_daemon()
    victim = 1
    key = next(k for k in (f"key-{i}" for i in range(1000)) if route_once(fleet, k)[0] == victim)
    fleet.servers[victim].kill()
    fleet.wait_states({fleet.servers[victim].address: "dead"})
    _, substitute, flags = route_once(fleet, key)
    assert flags == "substitute" and substitute != victim
    moved = f"target={substitute} flags=substitute"
    native = f"target={victim} flags=stale"

    servers = ",".join(m.address for m in fleet.servers)
    client = Background([CAPI_ROUTE, "--state", fleet.state, "--servers", servers, "--watch", key, "120"],
                        str(tmp_path / "client.out"))
    try:
        wait_until(lambda: last_answer(client) == moved, 10, "the client to route around the dead server")

        # Hung: the process is there, its heartbeat is not.
        fleet.daemon.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        wait_until(lambda: last_answer(client) == native, 10, "the client to place natively")
        record_value("daemon SIGSTOPped to client placing natively (stale_after 1s)",
                     f"{time.monotonic() - stopped:.2f}", "s")
        status = run([MCCTL, "-s", fleet.state, "status"])
        assert status.returncode == 2 and "STALE" in status.stdout

        fleet.daemon.send_signal(signal.SIGCONT)
        wait_until(lambda: last_answer(client) == moved, 10, "the client to follow the daemon again")

        # Gone: killed; then a new daemon publishes a new file.
        fleet.stop_daemon(signal.SIGKILL)
        wait_until(lambda: last_answer(client) == native, 10, "the client to place natively")
        fleet.start_daemon(wait_live=False)
        fleet.wait_states({fleet.servers[victim].address: "dead"})
        wait_until(lambda: last_answer(client) == moved, 10, "the client to follow the new daemon")
    finally:
        if fleet.daemon and fleet.daemon.poll() is None:
            fleet.daemon.send_signal(signal.SIGCONT)
        status = client.stop()
    assert status == 0, client.text()
    # What the client saw, in order. A new daemon starts with every server
    # unknown (placed as live) until its first probes: it may have shown
    # native placement unflagged for those rounds.
    answers = [line for line in client.lines() if line.startswith("target=")]
    unknown = f"target={victim} flags=-"
    assert [a for a in answers if a != unknown] == [moved, native, moved, native, moved], answers
    assert answers[:4] == [moved, native, moved, native], answers


def usable_changes(client):
    """capi_route --loop prints "usable=0|1 problem=..." at each change."""
    return [line.split()[0] for line in client.lines() if line.startswith("usable=")]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a time namespace")
@pytest.mark.parametrize("offset", ["3600", "-600"], ids=["monotonic_ahead", "monotonic_behind"])
def test_a_daemon_in_another_time_namespace_is_followed_and_goes_stale_when_killed(fleet, tmp_path, offset):
    fleet.add_servers(2)
    fleet.write_config({"stale_after": "1s"})
    with open(fleet.log, "a") as log:
        wrapper = subprocess.Popen(["unshare", "--time", "--monotonic", offset, "--fork",
                                    MCWATCHD, "-c", fleet.config, "-f"], stdout=log, stderr=log)
    try:
        pid = wait_until(lambda: (fleet.status() or {}).get("daemon", {}).get("pid"), 10, "the daemon's file")[0]
        client = Background([CAPI_ROUTE, "--state", fleet.state, "--servers",
                             ",".join(m.address for m in fleet.servers), "--loop", "60"], str(tmp_path / "client.out"))
        try:
            # Followed while it beats, whatever its monotonic clock says...
            wait_until(lambda: usable_changes(client)[-1:] == ["usable=1"], 10, "the client to use the file")
            assert run([MCCTL, "-s", fleet.state, "status"]).returncode == 0
            os.kill(pid, signal.SIGKILL)
            # ...and ignored once it stops.
            wait_until(lambda: run([MCCTL, "-s", fleet.state, "status"]).returncode == 2, 10, "mcctl to say stale")
            wait_until(lambda: usable_changes(client)[-1:] == ["usable=0"], 10, "the client to call it stale")
        finally:
            client.stop(signal.SIGKILL)
    finally:
        if wrapper.poll() is None:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, UnboundLocalError):
                pass
            wrapper.kill()
        wrapper.wait()
