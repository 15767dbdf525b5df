"""A daemon that stops writing its heartbeat (hung, or gone) is ignored by
clients after stale_after: keys go where libmemcached alone would send them.
When the daemon is back, clients follow it again, without a restart."""

import signal
import time

from conftest import MCCTL, run, wait_until
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
