"""LD_PRELOAD=libmcshim.so into unmodified libmemcached programs: a C program
of ours, Debian's pylibmc, PHP's memcached extension and libmemcached's own
tools, against four real memcached servers and a running mcwatchd. Where a
key really is is checked server by server."""

import os
import signal
import subprocess

import pytest

from conftest import BUILD, MCCTL, wait_until

import measurements  # noqa: E402 (tests/lib, on the path by conftest)
from sanitizers import plain_env, preload_env  # noqa: E402

SHIM = os.path.join(BUILD, "libmcshim.so")
CLIENTS_DIR = os.path.join(os.path.dirname(__file__), "..", "clients")
C_CLIENT = os.path.join(BUILD, "clients", "mc_client")
C_CLIENT_LINKED = os.path.join(BUILD, "clients", "mc_client_linked")

CLIENTS = {
    "c": [C_CLIENT],
    "pylibmc": ["/usr/bin/python3", os.path.join(CLIENTS_DIR, "pylibmc_client.py")],
    "php": ["php", os.path.join(CLIENTS_DIR, "php_client.php")],
}
# Recently-down window for these tests: long enough that no pause of a busy
# machine ends it in the middle of a scenario.
WINDOW_S = 60


def note(name, text):
    """A figure for tests/run to print at the end."""
    measurements.record(BUILD, name, text)


# LD_PRELOAD (and a sanitizer build's runtimes and options) for the shim.
PRELOAD = preload_env(SHIM)
# PHP dlopens opcache.so with RTLD_DEEPBIND, which sanitizer runtimes refuse.
SANITIZED = len(PRELOAD["LD_PRELOAD"].split()) > 1
PHP = pytest.param("php", marks=pytest.mark.skipif(SANITIZED, reason="PHP's RTLD_DEEPBIND dlopen is refused "
                                                                     "by sanitizer runtimes"))


def run_client(fleet, client, *args, shim=True, state=None, extra=None):
    """Runs a client command; returns (exit status, stdout, stderr)."""
    env = plain_env()
    if shim:
        env.update(PRELOAD)
        env["MCSHIM_STATE"] = state or fleet.state
    env.update(extra or {})
    servers = ",".join(m.address for m in fleet.servers)
    command = CLIENTS[client] if isinstance(client, str) else client
    result = subprocess.run(command + [servers] + [str(a) for a in args], capture_output=True, text=True,
                            timeout=60, env=env)
    return result.returncode, result.stdout, result.stderr


def client_says(fleet, client, *args, **kwargs):
    status, out, err = run_client(fleet, client, *args, **kwargs)
    assert status == 0, err
    assert err == "", err  # the shim never writes unless MCSHIM_DEBUG is set
    return out.strip()


def holders(fleet, keys):
    """key -> sorted addresses of the live servers holding it (one multi-key get each)."""
    found = {k: [] for k in keys}
    for m in fleet.servers:
        if m.process.poll() is not None:
            continue
        reply = m.command(b"get " + " ".join(keys).encode() + b"\r\n", expect_end=b"END\r\n")
        for line in reply.split(b"\r\n"):
            if line.startswith(b"VALUE "):
                found[line.split()[1].decode()].append(m.address)
    return found


def drain_holding(fleet, server, keys):
    """Drains `server` and returns those of `keys` that it alone held before."""
    before = holders(fleet, keys)
    held = [k for k in keys if before[k] == [server.address]]
    assert held, "the drained server held none of the keys"
    result = fleet.ctl("drain", server.address)
    assert result.returncode == 0, result.stderr
    fleet.wait_states({server.address: "draining"})
    return held


def flush_all(fleet):
    for m in fleet.servers:
        if m.process.poll() is None:
            assert m.command(b"flush_all\r\n") == b"OK\r\n"


def ttl_on(memcached, key):
    """Remaining TTL in seconds by memcached's meta get (-1: never expires)."""
    reply = memcached.command(f"mg {key} t\r\n".encode())
    assert reply.startswith(b"HD t"), reply
    return int(reply.split()[1][1:])


def native_placement(fleet, client, keys, prefix):
    """Where the client puts the keys without the shim."""
    flush_all(fleet)
    assert client_says(fleet, client, "set-many", prefix, len(keys), 0, shim=False) == f"stored {len(keys)}"
    placement = holders(fleet, keys)
    flush_all(fleet)
    return placement


@pytest.fixture
def shim_fleet(fleet):
    fleet.add_servers(4)
    fleet.write_config({"recently_down_window": f"{WINDOW_S}s", "writeback_ttl": "10m"})
    fleet.start_daemon()
    return fleet


@pytest.mark.parametrize("client", ["c", "pylibmc", PHP])
def test_outage_story(shim_fleet, client):
    """All live, a kill -9, the restart: placement, TTL caps, fallback reads,
    write-backs and invalidation, as each client sees them."""
    fleet = shim_fleet
    n = 120
    keys = [f"k{i}" for i in range(n)]
    native = native_placement(fleet, client, keys, "k")
    assert all(len(v) == 1 for v in native.values())

    # 1. All live: every key exactly where the client alone puts it.
    assert client_says(fleet, client, "set-many", "k", n, 0) == f"stored {n}"
    assert holders(fleet, keys) == native

    # 2. One server killed: only its keys move, to live servers, with a capped TTL.
    victim = fleet.servers[1]
    victim_keys = [k for k in keys if native[k] == [victim.address]]
    assert victim_keys
    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    flush_all(fleet)
    assert client_says(fleet, client, "set-many", "k", n, 0) == f"stored {n}"
    during = holders(fleet, keys)
    for k in keys:
        if k in victim_keys:
            assert len(during[k]) == 1 and during[k] != [victim.address], k
        else:
            assert during[k] == native[k], k
    by_address = {m.address: m for m in fleet.servers}
    ttls = [ttl_on(by_address[during[k][0]], k) for k in victim_keys]
    assert all(0 < t <= WINDOW_S for t in ttls), ttls
    moved = sum(1 for k in keys if during[k] != native[k])
    note(f"{client}: 1 of 4 servers killed", f"{moved} of {n} keys moved, all {len(victim_keys)} of them the dead "
         f"server's; TTLs on substitutes {min(ttls)}..{max(ttls)}s (window {WINDOW_S}s)")
    other = next(k for k in keys if k not in victim_keys)
    assert ttl_on(by_address[native[other][0]], other) == -1  # never expires: untouched
    # An explicit TTL longer than the window is capped too; a shorter one kept.
    assert client_says(fleet, client, "set", victim_keys[0], "long", 3600) == "SUCCESS"
    assert 0 < ttl_on(by_address[during[victim_keys[0]][0]], victim_keys[0]) <= WINDOW_S
    assert client_says(fleet, client, "set", victim_keys[1], "short", 5) == "SUCCESS"
    assert 0 < ttl_on(by_address[during[victim_keys[1]][0]], victim_keys[1]) <= 5
    assert client_says(fleet, client, "set-many", "k", n, 0) == f"stored {n}"

    # 3. It comes back empty: within the window, misses on it are read from
    # the server that covered for it, and written back.
    victim.start()
    fleet.wait_states({victim.address: "live"})
    assert fleet.server(victim.address)["recently_down_until"] is not None
    half = len(victim_keys) // 2
    assert client_says(fleet, client, "get-many", "k", n) == f"hits {n}"
    after = holders(fleet, keys)
    for k in victim_keys:
        assert victim.address in after[k], f"{k} not written back"
        assert 0 < ttl_on(victim, k) <= 600  # writeback_ttl
    written_back = sum(1 for k in keys if victim.address in after[k])
    note(f"{client}: restarted empty", f"gets hit {n} of {n}, {written_back} written back to it")
    # A multi-get finds them too (drop the write-backs of half the keys first
    # so that the multi-get itself has to fall back).
    for k in victim_keys[:half]:
        victim.command(f"delete {k}\r\n".encode())
    assert client_says(fleet, client, "mget-many", "k", n) == f"found {n}"
    after = holders(fleet, victim_keys[:half])
    assert all(victim.address in after[k] for k in victim_keys[:half])
    note(f"{client}: multi-get after the return", f"found {n} of {n}, {half} missing ones fetched from fallbacks "
         "and written back")

    # A write after the return deletes the copy on the fallback: no read can
    # go back to the older value.
    key = victim_keys[-1]
    fallback = during[key][0]
    assert client_says(fleet, client, "set", key, "new", 0) == "SUCCESS"
    assert holders(fleet, [key])[key] == [victim.address]
    assert client_says(fleet, client, "get", key) == "VALUE new"
    assert fallback != victim.address


def test_after_the_window_no_fallback(fleet):
    fleet.add_servers(2)
    fleet.write_config({"recently_down_window": "1s"})
    fleet.start_daemon()
    keys = [f"w{i}" for i in range(40)]
    victim = fleet.servers[0]
    native = native_placement(fleet, "c", keys, "w")
    on_victim = [k for k in keys if native[k] == [victim.address]]
    assert on_victim
    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    assert client_says(fleet, "c", "set-many", "w", 40, 0) == "stored 40"
    victim.start()
    fleet.wait_states({victim.address: "live"})
    # The window ends on the daemon's clock: wait until it says so.
    wait_until(lambda: fleet.server(victim.address)["recently_down_until"] is None, 10, "the window to end")
    # Keys of the returned server miss there and are not looked for elsewhere.
    assert client_says(fleet, "c", "get-many", "w", 40) == f"hits {40 - len(on_victim)}"
    assert all(victim.address not in v for v in holders(fleet, keys).values())


@pytest.mark.parametrize("client", ["c", "pylibmc", PHP])
def test_unusable_state_means_native_placement_and_same_output(shim_fleet, client, tmp_path):
    fleet = shim_fleet
    keys = [f"n{i}" for i in range(60)]
    native = native_placement(fleet, client, keys, "n")
    garbage = tmp_path / "garbage"
    garbage.write_bytes(os.urandom(3000))
    garbage.chmod(0o644)
    for state in [str(tmp_path / "missing"), str(garbage)]:
        flush_all(fleet)
        plain = run_client(fleet, client, "set-many", "n", 60, 0, shim=False)
        flush_all(fleet)
        assert run_client(fleet, client, "set-many", "n", 60, 0, state=state) == plain
        assert holders(fleet, keys) == native

    # A stale heartbeat (daemon frozen) with a server dead: native placement,
    # so the dead server's keys fail exactly as they would without the shim.
    victim = fleet.servers[2]
    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    fleet.daemon.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: subprocess.run([MCCTL, "-s", fleet.state, "status"], capture_output=True).returncode == 2,
                   10, "the state file to go stale")
        flush_all(fleet)
        plain = run_client(fleet, client, "set-many", "n", 60, 0, shim=False)
        flush_all(fleet)
        assert run_client(fleet, client, "set-many", "n", 60, 0) == plain
        placed = holders(fleet, keys)
        assert all(placed[k] == native[k] or (native[k] == [victim.address] and placed[k] == []) for k in keys)
    finally:
        fleet.daemon.send_signal(signal.SIGCONT)
    # When the daemon returns, clients follow it again.
    wait_until(lambda: subprocess.run([MCCTL, "-s", fleet.state, "status"], capture_output=True).returncode == 1,
               10, "the daemon's heartbeat to return")
    assert client_says(fleet, client, "set-many", "n", 60, 0) == "stored 60"


def test_all_dead_fails_at_once_with_libmemcached_error(shim_fleet):
    fleet = shim_fleet
    for m in fleet.servers:
        m.kill()
    fleet.wait_states({m.address: "dead" for m in fleet.servers})
    assert client_says(fleet, "c", "get", "anything") == "SERVER IS MARKED DEAD"
    assert client_says(fleet, "c", "set", "anything", "x", 0) == "SERVER IS MARKED DEAD"
    assert client_says(fleet, "c", "mget-many", "m", 5) == "found 0"


def test_all_dead_tools_say_why_not_fatal_error_success(shim_fleet, tmp_path):
    """With every server dead, libmemcached's tools printed "Fatal error for
    key 'foo': SUCCESS": the handle's last error must name the reason."""
    fleet = shim_fleet
    for m in fleet.servers:
        m.kill()
    fleet.wait_states({m.address: "dead" for m in fleet.servers})
    reason = "mcwatchd publishes every server this key may go to dead or draining (4 servers in this handle"
    said = client_says(fleet, "c", "last-error", "foo")
    assert said.startswith("SERVER IS MARKED DEAD: ") and reason in said and fleet.state in said, said
    servers = ",".join(m.address for m in fleet.servers)
    env = dict(os.environ, **PRELOAD, MCSHIM_STATE=fleet.state)
    cat = subprocess.run(["memccat", "--servers", servers, "foo"], capture_output=True, text=True, env=env,
                         timeout=30)
    assert cat.returncode != 0
    assert "Fatal error for key 'foo': SERVER IS MARKED DEAD, " + reason in cat.stderr, cat.stderr
    (tmp_path / "foo").write_text("content")
    cp = subprocess.run(["memccp", "--servers", servers, str(tmp_path / "foo")], capture_output=True, text=True,
                        env=env, timeout=30)
    assert cp.returncode != 0
    assert reason in cp.stderr and ": SUCCESS" not in cp.stderr, cp.stderr


def test_debug_lines_name_each_moved_key(shim_fleet):
    fleet = shim_fleet
    victim = fleet.servers[0]
    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    status, out, err = run_client(fleet, "c", "set-many", "d", 50, 0, extra={"MCSHIM_DEBUG": "1"})
    assert status == 0 and out == "stored 50\n"
    lines = err.splitlines()
    assert lines and all(line.startswith("mcshim: ") for line in lines)
    described = [line for line in lines if line.startswith("mcshim: handle ")]
    assert len(described) == 1 and "distribution=ketama hash=md5 servers=4" in described[0]
    lines = [line for line in lines if line not in described]
    assert all(f"native={victim.address}" in line and "substitute for dead native" in line for line in lines)
    moved = [k for k, v in holders(fleet, [f"d{i}" for i in range(50)]).items() if v]
    assert len(lines) == len([line for line in lines if "route key=d" in line]) > 0
    assert len(moved) == 50


def test_linked_mode_moves_keys_without_preload(shim_fleet):
    fleet = shim_fleet
    victim = fleet.servers[3]
    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    assert client_says(fleet, [C_CLIENT_LINKED], "set-many", "l", 80, 0, shim=False,
                       extra={"MCSHIM_STATE": fleet.state}) == "stored 80"
    assert all(len(v) == 1 for v in holders(fleet, [f"l{i}" for i in range(80)]).values())
    # The same program without the shim loses the dead server's keys.
    flush_all(fleet)
    out = client_says(fleet, "c", "set-many", "l", 80, 0, shim=False)
    assert out != "stored 80"


def test_binary_protocol_mget_execute_falls_back(shim_fleet):
    fleet = shim_fleet
    keys = [f"b{i}" for i in range(60)]
    victim = fleet.servers[0]
    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    assert client_says(fleet, [C_CLIENT, "--binary"], "set-many", "b", 60, 0) == "stored 60"
    victim.start()
    fleet.wait_states({victim.address: "live"})
    assert client_says(fleet, [C_CLIENT, "--binary"], "exec-many", "b", 60) == "found 60"
    written_back = [k for k, v in holders(fleet, keys).items() if victim.address in v]
    assert written_back  # the keys that lived elsewhere during the outage


@pytest.mark.parametrize("flags,stored_prefix", [(["--modula"], ""), (["--namespace", "app:"], "app:")])
def test_modula_and_namespace_move_only_dead_keys(shim_fleet, flags, stored_prefix):
    fleet = shim_fleet
    command = [C_CLIENT] + flags
    stored = [f"{stored_prefix}m{i}" for i in range(80)]
    assert client_says(fleet, command, "set-many", "m", 80, 0, shim=False) == "stored 80"
    native = holders(fleet, stored)
    flush_all(fleet)
    assert client_says(fleet, command, "set-many", "m", 80, 0) == "stored 80"
    assert holders(fleet, stored) == native
    victim = fleet.servers[1]
    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    flush_all(fleet)
    assert client_says(fleet, command, "set-many", "m", 80, 0) == "stored 80"
    during = holders(fleet, stored)
    assert all(during[k] == native[k] for k in stored if native[k] != [victim.address])
    assert all(len(during[k]) == 1 for k in stored)


def test_libmemcached_tools_under_preload(shim_fleet, tmp_path):
    """memccp/memccat (modula): native placement when all live; with a server
    dead, every file is stored and read back."""
    fleet = shim_fleet
    files = []
    for i in range(24):
        path = tmp_path / f"file{i}"
        path.write_text(f"content {i}")
        files.append(str(path))
    servers = ",".join(m.address for m in fleet.servers)
    env = dict(os.environ, **PRELOAD, MCSHIM_STATE=fleet.state)
    plain_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    keys = [os.path.basename(f) for f in files]
    subprocess.run(["memccp", "--servers", servers] + files, check=True, env=plain_env, timeout=30)
    native = holders(fleet, keys)
    flush_all(fleet)
    subprocess.run(["memccp", "--servers", servers] + files, check=True, env=env, timeout=30)
    assert holders(fleet, keys) == native

    fleet.servers[2].kill()
    fleet.wait_states({fleet.servers[2].address: "dead"})
    flush_all(fleet)
    subprocess.run(["memccp", "--servers", servers] + files, check=True, env=env, timeout=30)
    assert all(len(v) == 1 for v in holders(fleet, keys).values())
    got = subprocess.run(["memccat", "--servers", servers] + keys, capture_output=True, text=True, env=env,
                         timeout=30)
    assert got.returncode == 0
    assert got.stdout == "".join(f"content {i}\n" for i in range(24))


def test_threads_with_cloned_handles_and_a_forked_child(shim_fleet):
    fleet = shim_fleet
    victim = fleet.servers[2]
    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    assert client_says(fleet, "c", "threads", "t", 400, 8) == "hits 400"
    assert all(len(v) == 1 for v in holders(fleet, [f"t{i}" for i in range(400)]).values())
    # The child of a fork (no threads of the shim, no lock held) routes alike.
    assert client_says(fleet, "c", "fork", "f", 100) == "child hits 100"


def test_config_string_handles_and_behaviours_unchanged(shim_fleet):
    fleet = shim_fleet
    config = " ".join(f"--SERVER={m.address}" for m in fleet.servers) + " --DISTRIBUTION=consistent --HASH=md5"
    command = [C_CLIENT, "--config", config]
    keys = [f"s{i}" for i in range(60)]
    assert client_says(fleet, command, "set-many", "s", 60, 0, shim=False) == "stored 60"
    native = holders(fleet, keys)
    flush_all(fleet)
    assert client_says(fleet, command, "set-many", "s", 60, 0) == "stored 60"
    assert holders(fleet, keys) == native
    assert client_says(fleet, command, "behaviors") == client_says(fleet, command, "behaviors", shim=False)
    assert client_says(fleet, "c", "behaviors") == client_says(fleet, "c", "behaviors", shim=False)


def test_pylibmc_client_pool(shim_fleet):
    """pylibmc's ClientPool clones the handle per slot."""
    fleet = shim_fleet
    victim = fleet.servers[0]
    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    script = (
        "import pylibmc, sys\n"
        "mc = pylibmc.Client(sys.argv[1].split(','), behaviors={'ketama': True})\n"
        "pool = pylibmc.ClientPool(mc, 4)\n"
        "stored = 0\n"
        "for i in range(80):\n"
        "    with pool.reserve() as c:\n"
        "        stored += bool(c.set(f'p{i}', f'v{i}'))\n"
        "with pool.reserve() as c:\n"
        "    print('stored', stored, 'found', len(c.get_multi([f'p{i}' for i in range(80)])))\n")
    assert client_says(fleet, ["/usr/bin/python3", "-c", script], ) == "stored 80 found 80"


def test_programs_without_libmemcached_are_untouched(shim_fleet, tmp_path):
    env = dict(os.environ, **PRELOAD, MCSHIM_STATE=shim_fleet.state, MCSHIM_DEBUG="1")
    commands = [["echo", "hello"], ["/usr/bin/python3", "-c", "import json; print(json.dumps([1, 2]))"]]
    if not SANITIZED:
        commands.append(["php", "-r", "echo strtoupper('ok'), PHP_EOL;"])
    for command in commands:
        plain = subprocess.run(command, capture_output=True, text=True, timeout=30)
        shimmed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=30)
        assert (shimmed.returncode, shimmed.stdout, shimmed.stderr) == (plain.returncode, plain.stdout, plain.stderr)


def test_a_mistyped_MCSHIM_STATE_is_named_once_with_MCSHIM_DEBUG(shim_fleet, tmp_path):
    fleet = shim_fleet
    mistyped = str(tmp_path / "stat")  # the real one is .../state
    status, out, err = run_client(fleet, "c", "set-many", "t", 200, 0, state=mistyped,
                                  extra={"MCSHIM_DEBUG": "1"})
    assert status == 0 and out == "stored 200\n"
    said = [line for line in err.splitlines() if "placing keys natively" in line]
    assert said == [f"mcshim: state file {mistyped}: does not exist: placing keys natively"], err
    # Stale: once, with the reason, for a whole run of calls.
    fleet.daemon.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: subprocess.run([MCCTL, "-s", fleet.state, "status"], capture_output=True).returncode == 2,
                   10, "the state file to go stale")
        status, out, err = run_client(fleet, "c", "set-many", "t", 200, 0, extra={"MCSHIM_DEBUG": "1"})
    finally:
        fleet.daemon.send_signal(signal.SIGCONT)
    said = [line for line in err.splitlines() if "placing keys natively" in line]
    assert len(said) == 1 and f"mcshim: state file {fleet.state}: heartbeat" in said[0], err
