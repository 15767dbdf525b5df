"""`mcctl drain --move` in a fleet (docs/DESIGN.md, "The fleet view",
operator commands): one host moves the draining server's keys, the one the
fleet's ops/ record names; when that host's daemon dies, another host
takes the move over and every key reaches its destination. Several
mcwatchd on this machine with real memcached and etcd (test_fleet.py's
fixtures); what a user sees: where the keys are, each daemon's log and
`mcctl status --json`, and `mcctl fleet --json`."""

import signal

from conftest import wait_until
from test_fleet import fleet_report, local_hosts, servers  # noqa: F401 (pytest fixtures)
from test_fleet_operator import PATIENT, ok

KEYS = 300
# Slow enough that the move is midway when its host is killed (12 s in all).
MOVE = {**PATIENT, "drain_rate": "25", "recently_down_window": "1h"}


def value(i):
    return f"value-{i}-" + "x" * (i % 50)


def get(server, key):
    reply = server.command(f"get {key}\r\n".encode(), b"END\r\n").decode().split("\r\n")
    return reply[1] if reply[0].startswith("VALUE ") else None


def drain_move(daemon, server):
    return next(s for s in daemon.status()["servers"] if s["address"] == server.address)["drain_move"]


def started_moves(daemon):
    return daemon.log_text().count("event=drain_move_start")


def test_a_drain_move_whose_host_dies_is_taken_over_by_another_host_and_every_key_arrives(local_hosts, servers):
    for name in ("h1", "h2", "h3"):
        local_hosts.start(name, MOVE)
    a, b = servers
    local_hosts.wait_all({a.address: "live", b.address: "live"})
    for i in range(KEYS):
        v = value(i)
        assert a.command(f"set mv{i} 0 0 {len(v)}\r\n{v}\r\n".encode()) == b"STORED\r\n"
    h1 = local_hosts.daemons["h1"]
    assert "recorded for the fleet" in ok(h1.ctl("drain", "--move", a.address))
    local_hosts.wait_all({a.address: "draining"})
    wait_until(lambda: drain_move(h1, a)["moved"] >= 25, 30, "h1 moving keys")
    # One mover: the host the command was given on.
    assert [started_moves(local_hosts.daemons[h]) for h in ("h2", "h3")] == [0, 0]
    operator = fleet_report(local_hosts.daemons["h2"])["servers"][0]["operator"]
    assert (operator["host"], operator["move"], operator["mover"]) == ("h1", True, "h1")

    h1.stop(signal.SIGKILL)
    del local_hosts.daemons["h1"]
    others = list(local_hosts.daemons.values())

    def taken_over_and_done():
        return any("event=drain_move_end" in d.log_text() and "outcome=done" in d.log_text() for d in others)
    wait_until(taken_over_and_done, 90, "another host finishing the move")
    # Exactly one of the others took it over and moved what was left.
    assert sorted(started_moves(d) for d in others) == [0, 1]
    mover = next(d for d in others if started_moves(d) == 1)
    # Its state file shows it once the daemon's loop has seen the move's end (after the log line).
    wait_until(lambda: drain_move(mover, a)["state"] == "done", 30, "the mover's state file showing the move done")
    # Every key at its destination (the other server: a drains), none left on a.
    assert [get(b, f"mv{i}") for i in range(KEYS)] == [value(i) for i in range(KEYS)]
    assert [i for i in range(KEYS) if get(a, f"mv{i}") is not None] == []
    operator = fleet_report(mover)["servers"][0]["operator"]
    assert (operator["host"], operator["mover"]) == ("h1", None)  # the move ended: no host takes it again
    local_hosts.wait_all({a.address: "draining", b.address: "live"})
