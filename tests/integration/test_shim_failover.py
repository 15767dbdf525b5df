"""In-band failover (docs/DESIGN.md, "In-band failover"): when a server P
fails under an operation before the daemon has published it dead, a read is
served by the key's substitute at once, and a write goes there once the
daemon's verdict is in the state file; without a verdict, or after a
timeout, the write keeps its error. A failure also sends the daemon a hint.
Real memcached servers, a real mcwatchd, real clients (our C program,
pylibmc)."""

import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import PYLIBMC_SESSION, wait_until
from test_preload import C_CLIENT, CLIENTS, PHP, PRELOAD, SHIM, client_says, holders, ttl_on

import netns  # noqa: E402 (tests/lib, on the path by conftest)
from sanitizers import shim_env  # noqa: E402

WINDOW_S = 60


def keys_on(fleet, server, prefix, n=40, client="c"):
    """Sets PREFIX0..PREFIX(n-1) without the shim (every server live) and
    returns those P holds."""
    assert client_says(fleet, client, "set-many", prefix, n, 0, shim=False) == f"stored {n}"
    placed = holders(fleet, [f"{prefix}{i}" for i in range(n)])
    on_p = [k for k, where in placed.items() if where == [server.address]]
    assert on_p, "P holds none of the keys"
    return on_p


def plant_elsewhere(fleet, server, key, value):
    """`key` = `value` on every server but `server`: where a read lands shows."""
    for m in fleet.servers:
        if m is not server:
            assert m.command(f"set {key} 0 0 {len(value)}\r\n{value}\r\n".encode()) == b"STORED\r\n"


def slow_verdict_fleet(fleet, interval, hints=True):
    """Three servers and a daemon whose verdicts come only from its rounds
    when `hints` is off (a test that shows what happens before any verdict)."""
    fleet.add_servers(3)
    fleet.write_config({"probe_interval": interval, "probe_timeout": "150ms", "fail_after": "2",
                        "stale_after": "60s", "recently_down_window": f"{WINDOW_S}s",
                        "hint_socket": "on" if hints else "off"})
    fleet.start_daemon()
    return fleet


def test_a_read_on_a_refused_server_is_served_by_its_substitute_before_any_verdict(fleet):
    slow_verdict_fleet(fleet, "30s", hints=False)  # no verdict during the test
    p = fleet.servers[1]
    key = keys_on(fleet, p, "read")[0]
    plant_elsewhere(fleet, p, key, "sub")
    p.kill()
    assert client_says(fleet, "c", "get", key) == "VALUE sub"
    assert client_says(fleet, "c", "get", key, shim=False) != "VALUE sub"
    # A miss on the substitute is an ordinary miss.
    for m in fleet.servers:
        if m is not p:
            m.command(f"delete {key}\r\n".encode())
    assert client_says(fleet, "c", "get", key) == "NOT FOUND"
    assert fleet.states()[p.address] == "live"  # all of it before the daemon decided


def test_a_write_on_a_refused_server_waits_for_the_verdict_and_lands_on_the_substitute(fleet):
    # The verdict comes 0.6 to 1.2 s after the kill: within the wait.
    slow_verdict_fleet(fleet, "600ms")
    p = fleet.servers[1]
    key = keys_on(fleet, p, "write")[0]
    p.kill()
    assert fleet.states()[p.address] == "live"
    assert client_says(fleet, "c", "set", key, "new", 0) == "SUCCESS"
    assert fleet.states()[p.address] == "dead"
    placed = holders(fleet, [key])[key]
    assert len(placed) == 1 and placed != [p.address]
    # Written as during any outage: with the window's capped expiration.
    s = next(m for m in fleet.servers if m.address == placed[0])
    assert 0 < ttl_on(s, key) <= WINDOW_S
    assert client_says(fleet, "c", "get", key) == "VALUE new"


def test_a_write_without_a_verdict_keeps_its_error(fleet):
    slow_verdict_fleet(fleet, "300ms")
    p = fleet.servers[1]
    key = keys_on(fleet, p, "stopped")[0]
    fleet.daemon.send_signal(signal.SIGSTOP)  # the daemon decides nothing
    try:
        p.kill()
        said = client_says(fleet, "c", "set", key, "new", 0)
        assert said != "SUCCESS"
        assert holders(fleet, [key])[key] == []  # nowhere: P is gone, and nothing was diverted
    finally:
        fleet.daemon.send_signal(signal.SIGCONT)


def test_a_write_that_timed_out_on_a_blackholed_server_keeps_its_error_and_a_read_is_served(fleet):
    slow_verdict_fleet(fleet, "30s", hints=False)
    p = fleet.servers[1]
    config = " ".join(f"--SERVER={m.address}" for m in fleet.servers) + " --POLL-TIMEOUT=300"
    key = keys_on(fleet, p, "frozen", client=[C_CLIENT, "--config", config])[0]
    plant_elsewhere(fleet, p, key, "sub")
    p.process.send_signal(signal.SIGSTOP)
    try:
        status, said, err = run(fleet, [C_CLIENT, "--config", config], "set", key, "new", 0,
                                extra={"MCSHIM_DEBUG": "1"})
        assert said.strip() != "SUCCESS", err
        assert "new" not in str([m.command(f"get {key}\r\n".encode(), b"END\r\n") for m in fleet.servers
                                 if m is not p])
        assert client_says(fleet, [C_CLIENT, "--config", config], "get", key) == "VALUE sub"
    finally:
        p.process.send_signal(signal.SIGCONT)


def multi_get_keys(fleet, client, prefix):
    """A fleet without verdicts during the test, its server P, two keys the
    client places on P (each also planted, as "sub", where it goes without
    P) and two keys placed elsewhere (holding v<i>)."""
    slow_verdict_fleet(fleet, "30s", hints=False)
    p = fleet.servers[1]
    placed = keys_on(fleet, p, prefix, client=client)
    on_p = placed[:2]
    for key in on_p:
        plant_elsewhere(fleet, p, key, "sub")
    others = [f"{prefix}{i}" for i in range(40) if f"{prefix}{i}" not in placed][:2]
    return p, on_p, others


@pytest.mark.parametrize("client,verb", [("c", "mget"), ("c", "mget-by-key"), ("pylibmc", "mget"), 
                                         pytest.param("php", "mget", marks=PHP.marks)])
def test_a_multi_get_asks_a_refused_servers_keys_of_their_substitutes(fleet, client, verb):
    p, on_p, others = multi_get_keys(fleet, client, "multi")
    p.kill()
    if verb == "mget-by-key":  # one group key: every key goes where the group does
        said = client_says(fleet, client, verb, on_p[0], *on_p)
        lines = said.splitlines()
        assert sorted(lines[:-1]) == sorted(f"VALUE {k} sub" for k in on_p) and lines[-1] == "END SERVER END"
        return
    said = client_says(fleet, client, verb, *on_p, *others)
    lines = sorted(line for line in said.splitlines() if line.startswith("VALUE "))
    expected = sorted([f"VALUE {k} sub" for k in on_p] + [f"VALUE {k} v{k[len('multi'):]}" for k in others])
    assert lines == expected, said
    assert fleet.states()[p.address] == "live"


@pytest.mark.parametrize("client", ["c", "pylibmc", PHP])
def test_a_multi_get_whose_connection_is_lost_before_the_replies_is_served_by_the_substitutes(fleet, client):
    p, on_p, others = multi_get_keys(fleet, client, "lost")
    # P, stopped, takes the request in its socket but never answers; killed
    # while the program waits for the replies, it resets the connection.
    p.signal(signal.SIGSTOP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCSHIM_") and k != "LD_PRELOAD"}
    env.update(PRELOAD)
    env["MCSHIM_STATE"] = fleet.state
    servers = ",".join(m.address for m in fleet.servers)
    program = subprocess.Popen(CLIENTS[client] + [servers, "mget", *on_p, *others], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(0.5)  # the request sent (sent later, it is refused: the same answer)
    p.kill()
    said, err = program.communicate(timeout=60)
    assert program.returncode == 0, err
    lines = sorted(line for line in said.splitlines() if line.startswith("VALUE "))
    expected = sorted([f"VALUE {k} sub" for k in on_p] + [f"VALUE {k} v{k[len('lost'):]}" for k in others])
    assert lines == expected, said
    assert fleet.states()[p.address] == "live"


def test_not_stored_and_a_miss_are_answers_never_retried(fleet):
    slow_verdict_fleet(fleet, "300ms")
    p = fleet.servers[1]
    key, missing = keys_on(fleet, p, "answer")[:2]
    debug = {"MCSHIM_DEBUG": "1"}
    status, out, err = run(fleet, [C_CLIENT], "add", key, "x", 0, extra=debug)
    assert out.strip() == "NOT STORED" and "failed" not in err
    # A miss on P stays a miss, whatever the other servers hold.
    assert p.command(f"delete {missing}\r\n".encode()) == b"DELETED\r\n"
    plant_elsewhere(fleet, p, missing, "sub")
    status, out, err = run(fleet, [C_CLIENT], "get", missing, extra=debug)
    assert out.strip() == "NOT FOUND" and "failed" not in err


def run(fleet, command, *args, extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCSHIM_") and k != "LD_PRELOAD"}
    env.update(PRELOAD)
    env["MCSHIM_STATE"] = fleet.state
    env.update(extra or {})
    servers = ",".join(m.address for m in fleet.servers)
    result = subprocess.run(command + [servers] + [str(a) for a in args], capture_output=True, text=True,
                            timeout=60, env=env)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("client", ["c", "pylibmc", PHP])
def test_kill_9_under_a_steady_load_returns_no_error_to_the_program(fleet, client):
    slow_verdict_fleet(fleet, "300ms")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCSHIM_") and k != "LD_PRELOAD"}
    env.update(PRELOAD)
    env["MCSHIM_STATE"] = fleet.state
    servers = ",".join(m.address for m in fleet.servers)
    load = subprocess.Popen(CLIENTS[client] + [servers, "load", "steady", "200", "4"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(1.5)
    p = fleet.servers[1]
    p.kill()
    out, err = load.communicate(timeout=60)
    assert load.returncode == 0, err
    assert fleet.states()[p.address] == "dead"
    lines = out.splitlines()
    ops = int(lines[0].split()[1])
    assert ops > 0
    assert lines[0].endswith(" errors 0"), out


def test_a_failed_operation_sends_one_hint_per_100ms_per_server(fleet):
    slow_verdict_fleet(fleet, "300ms")
    p = fleet.servers[1]
    keys_on(fleet, p, "hint")
    fleet.daemon.send_signal(signal.SIGSTOP)  # the file stays as published, fresh for stale_after
    path = os.path.join(os.path.dirname(fleet.state), "hints")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        if os.path.exists(path):
            os.unlink(path)
        receiver.bind(path)
        receiver.setblocking(False)
        p.kill()
        started = time.monotonic()
        said = client_says(fleet, "c", "get-many", "hint", 2000)
        elapsed = time.monotonic() - started
        assert said.startswith("hits ")
        hints = []
        while True:
            try:
                hints.append(receiver.recv(1000))
            except BlockingIOError:
                break
        assert hints, "no hint arrived"
        assert set(hints) == {f"hint {p.address}\n".encode()}
        assert len(hints) <= elapsed / 0.1 + 1, (len(hints), elapsed)
    finally:
        receiver.close()
        fleet.daemon.send_signal(signal.SIGCONT)


def test_a_write_with_every_server_dead_fails_at_once_with_debug_on(fleet):
    slow_verdict_fleet(fleet, "300ms")
    for m in fleet.servers:
        m.kill()
    fleet.wait_states({m.address: "dead" for m in fleet.servers})
    status, out, err = run(fleet, [C_CLIENT], "set", "anything", "v", 0, extra={"MCSHIM_DEBUG": "1"})
    assert status == 0, err
    assert out.strip() == "SERVER IS MARKED DEAD"
    assert "all servers dead, failing" in err


@pytest.mark.parametrize("command", ["set", "delete"])
def test_a_quiet_clients_first_write_after_its_server_restarted_is_sent_again_not_failed(fleet, command):
    """A long-lived client (pylibmc, connections kept) that made no call on
    P during its outage: its connection to P is closed, found so by the
    next write, which the shim sends once more (libmemcached reconnects)
    instead of returning the loss. Without the resend the first write on P
    fails with ConnectionError."""
    fleet.add_servers(2)
    fleet.start_daemon()
    p = fleet.servers[0]
    servers = ",".join(m.address for m in fleet.servers)
    session = netns.Session(subprocess.Popen(["/usr/bin/python3", PYLIBMC_SESSION, servers], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, env=shim_env(SHIM, fleet.state)))
    try:
        keys = [f"quiet{i}" for i in range(20)]
        assert [session.ask(f"set {key} 1") for key in keys] == ["STORED"] * len(keys)
        on_p = [key for key, where in holders(fleet, keys).items() if where == [p.address]]
        assert on_p
        p.kill()
        fleet.wait_states({p.address: "dead"})
        p.start()
        fleet.wait_states({p.address: "live"})
        replies = [session.ask(f"{command} {key} 2" if command == "set" else f"{command} {key}") for key in on_p]
        assert replies == (["STORED"] if command == "set" else ["NOT FOUND"]) * len(on_p)
    finally:
        session.stop()
