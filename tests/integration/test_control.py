"""The control socket, as an operator uses it through mcctl: drain, undrain,
down, up, flush, ping, and who may use it."""

import json
import os
import pathlib
import shutil
import signal
import socket
import stat
import tempfile
import time

import pytest

from conftest import MCCTL, Fleet, record, run, wait_until


def keys_on(fleet, address, count=40):
    """Keys whose native server is `address` (mcctl route, all servers live)."""
    candidates = [f"user:{i}" for i in range(count * len(fleet.servers) * 3)]
    result = fleet.ctl("route", "--json", *candidates)
    assert result.returncode == 0, result.stderr
    routes = [json.loads(line) for line in result.stdout.splitlines()]
    keys = [r["key"] for r in routes if r["native"] == address][:count]
    assert len(keys) == count
    return keys


def set_keys(memcached, keys, value=b"v"):
    payload = b"".join(b"set %s 0 0 %d noreply\r\n%s\r\n" % (k.encode(), len(value), value) for k in keys)
    assert memcached.command(payload + b"mn\r\n") == b"MN\r\n"


def delete_keys(memcached, keys):
    payload = b"".join(b"delete %s noreply\r\n" % k.encode() for k in keys)
    assert memcached.command(payload + b"mn\r\n") == b"MN\r\n"


def items(fleet, address):
    return fleet.server(address)["curr_items"]


def test_drain_routes_keys_away_and_status_shows_the_items_still_held(fleet):
    fleet.add_servers(3)
    fleet.start_daemon()
    draining = fleet.servers[0]
    keys = keys_on(fleet, draining.address)
    set_keys(draining, keys)
    wait_until(lambda: items(fleet, draining.address) == len(keys), what="the probe to count the items")

    result = fleet.ctl("drain", draining.address)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{draining.address} draining (was live); {len(keys)} items held\n"
    server = fleet.server(draining.address)
    assert server["state"] == "draining"
    assert server["override"] == "drain"
    table = fleet.ctl("status")
    assert table.returncode == 1  # not every server is live
    assert f"draining by operator: {len(keys)} items still held" in table.stdout

    # Its keys go to substitutes now, the others stay put.
    route = json.loads(fleet.ctl("route", "--json", keys[0]).stdout)
    assert route["native"] == draining.address
    assert route["target"] != draining.address
    assert route["reason"] == "draining"

    # As clients move values off it, the count the operator watches drops.
    delete_keys(draining, keys[: len(keys) // 2])
    wait_until(lambda: items(fleet, draining.address) == len(keys) - len(keys) // 2, what="fewer items")
    assert f"draining by operator: {len(keys) - len(keys) // 2} items still held" in fleet.ctl("status").stdout
    assert (f"event=control command=drain server={draining.address} uid={os.geteuid()} pid=") in fleet.log_text()


def test_planned_reboot_drain_stop_start_undrain(fleet):
    fleet.add_servers(2)
    fleet.start_daemon()
    rebooted = fleet.servers[1]
    assert fleet.ctl("drain", rebooted.address).returncode == 0

    rebooted.kill()  # the maintenance: it stops answering
    fleet.wait_states({rebooted.address: "dead"})
    assert fleet.server(rebooted.address)["override"] == "drain"
    assert "drained by operator, not answering" in fleet.ctl("status").stdout

    rebooted.start()  # back, but still drained: not live until undrain
    fleet.wait_states({rebooted.address: "draining"})
    # Something wrote to it behind mcwatch's back: the rejoin flush removes it.
    assert rebooted.command(b"set stray 0 0 3\r\nold\r\n") == b"STORED\r\n"

    result = fleet.ctl("undrain", rebooted.address)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{rebooted.address} rejoining: the next probe sends flush_all, then it is live")
    fleet.wait_states({rebooted.address: "live"})
    back = fleet.server(rebooted.address)
    assert back["override"] is None
    assert back["recently_down_until"] is not None
    # One flush before it was draining again (it had been cut off), one at the rejoin.
    assert back["flushes"] == 2
    assert rebooted.command(b"get stray\r\n") == b"END\r\n"
    log = fleet.log_text()
    assert f"event=up server={rebooted.address} detail=\"operator override cleared\"" in log


def test_down_wins_over_probes_until_up(fleet):
    fleet.add_servers(2)
    fleet.start_daemon()
    forced = fleet.servers[0]
    result = fleet.ctl("down", forced.address)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{forced.address} down (was live) until `mcctl up`\n"
    server = fleet.server(forced.address)
    assert server["state"] == "dead"
    assert server["override"] == "down"
    probes = server["probes_ok"]
    wait_until(lambda: fleet.server(forced.address)["probes_ok"] > probes + 2, what="more good probes")
    assert fleet.server(forced.address)["state"] == "dead"  # good probes do not bring it back
    assert "down by operator" in fleet.ctl("status").stdout

    wrong = fleet.ctl("undrain", forced.address)
    assert wrong.returncode == 1
    assert wrong.stderr == f"mcctl: {forced.address} is not draining (it is dead, down by operator: use `mcctl up`)\n"

    assert fleet.ctl("up", forced.address).returncode == 0
    fleet.wait_states({forced.address: "live"})
    back = fleet.server(forced.address)
    assert back["override"] is None
    assert back["recently_down_until"] is not None  # keys went to substitutes meanwhile
    nothing = fleet.ctl("up", forced.address)
    assert nothing.stdout == f"{forced.address} no operator override: probes decide\n"


def test_draining_the_last_live_server_is_refused_below_min_live_servers(fleet):
    a, b = fleet.add_servers(2)
    fleet.start_daemon()
    assert fleet.ctl("drain", a.address).returncode == 0
    fleet.wait_states({a.address: "draining"})

    refused = fleet.ctl("drain", b.address)
    assert refused.returncode == 1
    assert refused.stderr == (f"mcctl: refused: drain {b.address} would leave 0 of 2 servers live, fewer than "
                              "min_live_servers = 1 (clients would fail); add --force to do it anyway\n")
    down = fleet.ctl("down", b.address)
    assert down.returncode == 1 and "would leave 0 of 2 servers live" in down.stderr
    assert fleet.states()[b.address] == "live"

    forced = fleet.ctl("drain", "--force", b.address)
    assert forced.returncode == 0, forced.stderr
    assert fleet.states()[b.address] == "draining"
    # Undoing is never refused.
    assert fleet.ctl("undrain", b.address).returncode == 0


def test_min_live_servers_zero_lets_every_server_be_taken_out(fleet):
    a, b = fleet.add_servers(2)
    fleet.write_config({"min_live_servers": "0"})
    fleet.start_daemon()
    assert fleet.ctl("down", a.address).returncode == 0
    assert fleet.ctl("down", b.address).returncode == 0
    assert set(fleet.states().values()) == {"dead"}


def test_flush_empties_a_server_once_memcached_acknowledged_it(fleet):
    fleet.add_servers(2)
    fleet.start_daemon()
    target, stopped = fleet.servers
    assert target.command(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
    result = fleet.ctl("flush", f"localhost:{target.port}")  # found by its numeric address
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{target.address} flushed\n"
    assert target.command(b"get k\r\n") == b"END\r\n"
    server = fleet.server(target.address)
    assert server["flushes"] == 1
    assert server["state"] == "live"
    assert server["recently_down_until"] is None

    stopped.kill()
    fleet.wait_states({stopped.address: "dead"})
    failed = fleet.ctl("flush", stopped.address)
    assert failed.returncode == 1
    assert failed.stderr == f"mcctl: {stopped.address}: flush_all failed: connection refused\n"


def test_operator_mistakes_are_answered_and_logged(fleet):
    fleet.add_servers(2)
    fleet.start_daemon()
    ping = fleet.ctl("ping")
    assert ping.returncode == 0
    assert ping.stdout.startswith(f"mcwatchd 0.1.0 pid {fleet.daemon.pid}: 2 servers")

    unknown = fleet.ctl("drain", "10.9.9.9:11211")
    assert unknown.returncode == 1
    assert unknown.stderr == ("mcctl: unknown server '10.9.9.9:11211' (configured: "
                              f"{fleet.servers[0].address}, {fleet.servers[1].address})\n")
    assert fleet.ctl("drain").returncode == 64
    assert fleet.ctl("reload", "now").returncode == 64

    # A client other than mcctl: garbage and floods get an error line, never a crash.
    control = os.path.join(os.path.dirname(fleet.state), "control")
    for sent, expected in [(b"format c:\n", b"error unknown command 'format'"),
                           (b"drain \x00\n", b"error request holds byte 0x00"),
                           (b"x" * 100_000, b"error request longer than 512 bytes")]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(control)
            try:
                s.sendall(sent)
            except (BrokenPipeError, ConnectionResetError):
                pass  # answered and closed before the flood was all sent
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        assert reply.startswith(expected), reply
    assert f"event=control command=- server=- uid={os.geteuid()}" in fleet.log_text()
    assert "status=bad_request" in fleet.log_text()
    assert fleet.daemon.poll() is None

    fleet.stop_daemon()
    gone = fleet.ctl("ping")
    assert gone.returncode == 2
    assert gone.stderr.startswith(f"mcctl: no control socket at {control}: is mcwatchd running?")


@pytest.mark.serial  # records how long mcctl ping takes
def test_commands_are_served_while_a_round_waits_for_a_frozen_server(fleet):
    fleet.add_servers(2)
    fleet.write_config({"probe_interval": "1s", "probe_timeout": "900ms", "stale_after": "5s"})
    fleet.start_daemon()
    frozen = fleet.servers[0]
    frozen.signal(signal.SIGSTOP)
    try:
        fleet.wait_states({frozen.address: "dead"})
        slowest = 0.0
        for _ in range(5):  # most of them land inside a round blocked on the frozen server
            started = time.monotonic()
            assert fleet.ctl("ping").returncode == 0
            slowest = max(slowest, time.monotonic() - started)
        record("slowest of 5 mcctl ping while rounds wait 900ms on a frozen server", slowest)
        # The other server is the last live one: past min_live_servers.
        assert fleet.ctl("drain", "--force", fleet.servers[1].address).returncode == 0
        assert fleet.states()[fleet.servers[1].address] == "draining"
    finally:
        frozen.signal(signal.SIGCONT)


# --- who may command: needs root, to act as other users

def as_user(user, group, *args):
    return run(["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups", *args])


@pytest.fixture
def open_fleet():
    """A fleet in a directory other users may traverse (pytest's tmp_path is
    private to root), for tests that act as other users."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as other users")
    directory = pathlib.Path(tempfile.mkdtemp(prefix="mcwatch-open-"))
    directory.chmod(0o755)
    f = Fleet(directory)
    yield f
    f.cleanup()
    shutil.rmtree(directory, ignore_errors=True)


def test_control_socket_refuses_other_users(open_fleet):
    fleet = open_fleet
    fleet.add_servers(1)
    fleet.start_daemon()
    control = os.path.join(os.path.dirname(fleet.state), "control")
    st = os.lstat(control)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (0, 0)

    refused = as_user("nobody", "nogroup", MCCTL, "-S", control, "drain", fleet.servers[0].address)
    assert refused.returncode == 2
    assert f"permission denied on {control}" in refused.stderr

    # Even if the socket's mode were opened by mistake, the daemon checks the
    # peer's credentials itself, and logs who tried.
    os.chmod(control, 0o666)
    denied = as_user("nobody", "nogroup", MCCTL, "-S", control, "drain", fleet.servers[0].address)
    assert denied.returncode == 1
    assert denied.stderr.startswith("mcctl: permission denied: uid 65534 is not root, mcwatchd's user (uid 0)")
    assert fleet.states()[fleet.servers[0].address] == "live"
    assert "event=control command=- server=- uid=65534" in fleet.log_text()
    assert "status=denied" in fleet.log_text()


def test_admin_group_members_may_command(open_fleet):
    fleet = open_fleet
    fleet.add_servers(1)
    fleet.write_config({"admin_group": "nogroup"})
    fleet.start_daemon()
    control = os.path.join(os.path.dirname(fleet.state), "control")
    assert os.lstat(control).st_gid == 65534  # nogroup
    # The only server: past min_live_servers.
    member = as_user("nobody", "nogroup", MCCTL, "-S", control, "drain", "--force", fleet.servers[0].address)
    assert member.returncode == 0, member.stderr
    assert "event=control command=drain server=%s uid=65534" % fleet.servers[0].address in fleet.log_text()
    outsider = as_user("nobody", "daemon", MCCTL, "-S", control, "undrain", fleet.servers[0].address)
    assert outsider.returncode == 2
    assert "permission denied" in outsider.stderr


def test_started_as_root_it_runs_as_its_user_and_owns_its_files(open_fleet):
    fleet = open_fleet
    fleet.add_servers(1)
    fleet.write_config({"user": "nobody"})
    os.chmod(fleet.config, 0o644)  # reloads read it as nobody
    fleet.start_daemon()
    with open(f"/proc/{fleet.daemon.pid}/status") as status:
        uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
    assert uids == ["65534"] * 4
    run_dir = os.path.dirname(fleet.state)
    for path in [run_dir, fleet.state, fleet.state + ".lock", os.path.join(run_dir, "control")]:
        assert os.lstat(path).st_uid == 65534, path
    assert stat.S_IMODE(os.lstat(fleet.state).st_mode) == 0o644
    # root trusts a file owned by its directory's owner; the daemon's user may command.
    assert fleet.ctl("status").returncode == 0
    assert as_user("nobody", "nogroup", MCCTL, "-s", fleet.state, "ping").returncode == 0
    # A reload still works without root.
    fleet.add_servers(1)
    fleet.write_config({"user": "nobody"})
    os.chmod(fleet.config, 0o644)
    reload = fleet.ctl("reload")
    assert reload.returncode == 0, reload.stderr
    fleet.wait_states({m.address: "live" for m in fleet.servers})
