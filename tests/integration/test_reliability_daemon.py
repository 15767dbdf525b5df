"""mcwatchd survives every way a server can misbehave: each such server is
published dead with the reason, the others keep being probed and published,
the daemon's memory stays bounded, and flapping servers do not flap the
published state (fail_after/recover_after hysteresis). There is no backoff:
a dead server is probed every interval like the others."""

import json
import subprocess

import pytest

from conftest import MCCTL, free_port, wait_until
from reliability import FakeServers, proc_stat, record_value

SETTINGS = {"probe_interval": "200ms", "probe_timeout": "150ms", "fail_after": "2", "recover_after": "3",
            "stale_after": "2s"}
MODES = ["stats", "trickle", "silent", "garbage", "close_mid", "endless"]



@pytest.fixture
def fakes(tmp_path):
    servers = FakeServers(tmp_path, [(mode, 1) for mode in MODES] + [("flap:GF", 1), ("flap:FFGG", 1)])
    yield servers
    servers.stop()


def test_misbehaving_servers_are_published_dead_with_the_reason_and_the_others_stay_live(fleet, fakes):
    real = fleet.add_servers(1)[0].address
    refused = f"127.0.0.1:{free_port()}"
    one = {mode: fakes.addresses(mode)[0] for mode in MODES}
    fleet.write_config(SETTINGS, servers=[real] + [one[m] for m in MODES] + [refused])
    fleet.start_daemon(wait_live=False)
    fleet.wait_states({real: "live", one["stats"]: "live", one["trickle"]: "live", one["silent"]: "dead",
                       one["garbage"]: "dead", one["close_mid"]: "dead", one["endless"]: "dead", refused: "dead"},
                      timeout=20)
    reasons = {
        one["silent"]: "timeout after 150ms (no reply)",
        one["garbage"]: 'garbage reply: "HTTP/1.1 400 Bad Request"',
        one["close_mid"]: "closed mid-reply (",
        one["endless"]: "oversized reply: no END in 65536 bytes",
        refused: "connection refused",
    }
    for address, reason in reasons.items():
        assert reason in fleet.server(address)["last_error"], (address, fleet.server(address))
        assert f"event=down server={address} reason=" in fleet.log_text()

    # Many more rounds against the endless peer: the daemon's memory stays
    # put (the reply buffer is bounded), heartbeats go on, all are probed.
    rounds_before = fleet.status()["daemon"]["rounds"]
    _, rss_before = proc_stat(fleet.daemon.pid)
    wait_until(lambda: fleet.status()["daemon"]["rounds"] >= rounds_before + 25, 30, "25 more rounds")
    _, rss_after = proc_stat(fleet.daemon.pid)
    status = fleet.status()
    assert status["daemon"]["stale"] is False
    assert {s["address"]: s["state"] for s in status["servers"]}[real] == "live"
    assert fleet.server(one["endless"])["probes_failed"] >= 25
    assert fleet.daemon.poll() is None
    record_value("mcwatchd RSS over 25 rounds with a peer sending an endless reply",
                 f"{rss_before} -> {rss_after}", "KiB")


def test_a_name_that_does_not_resolve_is_logged_and_retried_while_the_others_are_probed(fleet):
    real = fleet.add_servers(1)[0].address
    name = "no-such-host.invalid:11211"
    fleet.write_config(SETTINGS, servers=[name, real])
    fleet.start_daemon(wait_live=False)
    fleet.wait_states({real: "live", name: "dead"})
    assert "cannot resolve name" in fleet.server(name)["last_error"]
    assert f"event=down server={name} reason=\"cannot resolve name" in fleet.log_text()
    failed = fleet.server(name)["probes_failed"]
    wait_until(lambda: fleet.server(name)["probes_failed"] >= failed + 3, 10, "the name to be looked up again")
    assert fleet.states()[real] == "live"


def test_flapping_servers_do_not_flap_the_published_state(fleet, fakes):
    # flap:GF answers every other probe: never fail_after (2) failures in a
    # row, so it stays live. flap:FFGG fails twice then answers twice: dead
    # at once, and never recover_after (3) good probes in a row to come back.
    alternating = fakes.addresses("flap:GF")[0]
    bursty = fakes.addresses("flap:FFGG")[0]
    fleet.write_config(SETTINGS, servers=[alternating, bursty])
    fleet.start_daemon(wait_live=False)
    fleet.wait_states({alternating: "live", bursty: "dead"})
    wait_until(lambda: fleet.server(alternating)["probes_failed"] >= 10 and fleet.server(bursty)["probes_ok"] >= 10,
               30, "ten flaps of each")
    a, b = fleet.server(alternating), fleet.server(bursty)
    assert (a["state"], a["transitions"]) == ("live", 1)  # unknown -> live, and nothing since
    assert (b["state"], b["transitions"]) == ("dead", 1)  # unknown -> dead, and nothing since
    log = fleet.log_text()
    assert f"event=down server={alternating}" not in log
    assert f"event=up server={bursty}" not in log


def test_a_server_whose_version_is_not_ascii_leaves_status_json_valid(fleet, tmp_path):
    weird = FakeServers(tmp_path, [("nonascii", 1)])
    try:
        address = weird.addresses("nonascii")[0]
        fleet.write_config(SETTINGS, servers=[address])
        fleet.start_daemon(wait_live=False)
        # The table (no version column) says when the probe was judged.
        def judged():
            table = subprocess.run([MCCTL, "-s", fleet.state, "status"], capture_output=True)
            return table.returncode in (0, 1) and b" unknown " not in table.stdout
        wait_until(judged, 10, "the server to be probed")
        raw = subprocess.run([MCCTL, "-s", fleet.state, "status", "--json"], capture_output=True).stdout
        status = json.loads(raw.decode("utf-8"))
        assert status["servers"][0]["address"] == address
    finally:
        weird.stop()
