"""What the shim writes back during a recently-down window or a drain, seen
server by server with meta commands: a copy never outlives the original, and
no interleaving of a fallback read with a write or delete leaves an older
value behind."""

import os
import socket
import subprocess
import threading

import pytest

from conftest import BUILD
from test_preload import (C_CLIENT, PRELOAD, WINDOW_S, client_says, drain_holding, holders, native_placement, note, shim_fleet,  # noqa: F401 (a fixture)
                          ttl_on)
from sanitizers import plain_env  # noqa: E402 (tests/lib, on the path by conftest)

RACE = os.path.join(BUILD, "clients", "mc_race")
LEASE_FLAGS = 0x6d634c53  # libshim/preload/writeback.hpp


def kill_and_restart_with_outage_copies(fleet, prefix, n, ttl, client="c"):
    """Kills a server, sets n keys through the shim with `ttl` (the dead
    server's keys go to their fallback), restarts it empty and waits until it
    is live and recently down. Returns (server, its keys)."""
    keys = [f"{prefix}{i}" for i in range(n)]
    native = native_placement(fleet, client, keys, prefix)
    victim = fleet.servers[1]
    victim_keys = [k for k in keys if native[k] == [victim.address]]
    assert victim_keys
    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    assert client_says(fleet, client, "set-many", prefix, n, ttl) == f"stored {n}"
    victim.start()
    fleet.wait_states({victim.address: "live"})
    assert fleet.server(victim.address)["recently_down_until"] is not None
    return victim, victim_keys


def test_value_set_with_10s_in_an_outage_is_written_back_with_10s_not_writeback_ttl(shim_fleet):
    fleet = shim_fleet
    n = 60
    victim, victim_keys = kill_and_restart_with_outage_copies(fleet, "t", n, 10)
    # Half by single gets, half by a multi-get: both write back.
    single = victim_keys[: len(victim_keys) // 2]
    for k in single:
        assert client_says(fleet, "c", "get", k) == f"VALUE v{k[1:]}"
    assert client_says(fleet, "c", "mget-many", "t", n) == f"found {n}"
    ttls = {k: ttl_on(victim, k) for k in victim_keys if victim.address in holders(fleet, [k])[k]}
    assert sorted(ttls) == sorted(victim_keys), "every key written back"
    assert all(0 < t <= 10 for t in ttls.values()), ttls


def test_outage_copy_without_expiration_is_written_back_with_what_it_has_left_not_writeback_ttl(shim_fleet):
    fleet = shim_fleet
    n = 40
    victim, victim_keys = kill_and_restart_with_outage_copies(fleet, "u", n, 0)
    # The outage copy lives at most the window (60 s): the write-back is
    # capped by what it has left, not given writeback_ttl (600 s) afresh.
    assert client_says(fleet, "c", "get-many", "u", n) == f"hits {n}"
    ttls = [ttl_on(victim, k) for k in victim_keys]
    assert all(0 < t <= 60 for t in ttls), ttls


def test_value_set_with_5s_moved_by_a_drain_keeps_5s(shim_fleet):
    fleet = shim_fleet
    n = 60
    keys = [f"d{i}" for i in range(n)]
    assert client_says(fleet, "c", "set-many", "d", n, 5, shim=False) == f"stored {n}"
    draining = fleet.servers[2]
    on_draining = drain_holding(fleet, draining, keys)
    assert client_says(fleet, "c", "get-many", "d", n) == f"hits {n}"
    after = holders(fleet, on_draining)
    by_address = {m.address: m for m in fleet.servers}
    ttls = {}
    for k in on_draining:
        assert len(after[k]) == 1 and after[k] != [draining.address], k
        ttls[k] = ttl_on(by_address[after[k][0]], k)
    assert all(0 < t <= 5 for t in ttls.values()), ttls


@pytest.mark.parametrize("read", ["get-many", "mget-many"])
def test_another_readers_lease_is_a_miss_not_an_empty_value(shim_fleet, read):
    """A key whose returned server holds a write-back lease (an empty item
    with the lease flags) reads as a miss there: the value comes from the
    fallback, and the other reader's lease is left alone."""
    fleet = shim_fleet
    n = 40
    victim, victim_keys = kill_and_restart_with_outage_copies(fleet, "l", n, 0, client="pylibmc")
    for k in victim_keys:
        assert victim.command(f"ms {k} 0 F{LEASE_FLAGS} T30 ME\r\n\r\n".encode()) == b"HD\r\n"
    counted = "hits" if read == "get-many" else "found"
    assert client_says(fleet, "pylibmc", read, "l", n) == f"{counted} {n}"
    for k in victim_keys:
        assert victim.command(f"mg {k} s f\r\n".encode()) == f"HD s0 f{LEASE_FLAGS}\r\n".encode()


@pytest.mark.parametrize("read", ["get", "mget", "exec"])
@pytest.mark.parametrize("state", ["usable", "absent"])
def test_a_lease_reads_as_a_miss_on_every_path_never_as_an_empty_value(shim_fleet, tmp_path, read, state):
    """Another reader's lease (an empty item with the lease flags) on a key
    with no other copy (every server live, or no usable state file: native
    placement) reads through the shim exactly as a key that is not there."""
    fleet = shim_fleet
    keys = [f"e{i}" for i in range(4)]
    for m in fleet.servers:  # wherever the key goes, a lease is there
        for k in keys:
            assert m.command(f"ms {k} 0 F{LEASE_FLAGS} T30 ME\r\n\r\n".encode()) == b"HD\r\n"
    path = fleet.state if state == "usable" else str(tmp_path / "absent")
    args = keys if read != "get" else keys[:1]
    absent = [f"absent{i}" for i in range(len(args))]
    client = [C_CLIENT, "--binary"] if read == "exec" else "c"  # mget_execute is binary only
    assert (client_says(fleet, client, read, *args, state=path) ==
            client_says(fleet, client, read, *absent, state=path).replace("absent", "e"))
    for m in fleet.servers:  # the other reader's lease is left alone
        for k in keys:
            assert m.command(f"mg {k} s f\r\n".encode()) == f"HD s0 f{LEASE_FLAGS}\r\n".encode()


FORK_SCRIPT = """
import os, sys, pylibmc
servers, keys = sys.argv[1].split(","), sys.argv[2].split(",")
client = lambda: pylibmc.Client(servers, behaviors={"ketama": True})
hits = lambda mc, part: sum(1 for k in part if mc.get(k) == "v" + k[1:])
mc = client()
first = hits(mc, keys[:10])  # write-backs: this thread's meta connections open
child = os.fork()
if child == 0:  # a handle of its own, as after any fork; writes back alongside the parent
    os._exit(0 if hits(client(), keys[10::2]) == len(keys[10::2]) else 1)
parent = hits(mc, keys[11::2])
_, status = os.waitpid(child, 0)
print(first, parent, os.waitstatus_to_exitcode(status))
"""


def run_preloaded_script(fleet, script, keys):
    """A pylibmc script under the shim, given the servers and the keys: its
    stdout, after checking it wrote nothing on stderr."""
    env = plain_env()
    env.update(PRELOAD)
    env["MCSHIM_STATE"] = fleet.state
    servers = ",".join(m.address for m in fleet.servers)
    result = subprocess.run(["/usr/bin/python3", "-c", script, servers, ",".join(keys)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.stderr == ""
    return result


def test_write_backs_from_a_forked_child_and_its_parent_at_once(shim_fleet):
    """The shim's meta connections are per process: a child never talks on
    its parent's socket."""
    fleet = shim_fleet
    victim, victim_keys = kill_and_restart_with_outage_copies(fleet, "f", 160, 0, client="pylibmc")
    assert len(victim_keys) > 20
    result = run_preloaded_script(fleet, FORK_SCRIPT, victim_keys)
    assert result.stdout.split() == ["10", str(len(victim_keys[11::2])), "0"]
    assert all(victim.address in v for v in holders(fleet, victim_keys).values())


CLOSED_AFTER_FORK_SCRIPT = """
import os, sys, pylibmc
servers, keys = sys.argv[1].split(","), sys.argv[2].split(",")
client = lambda: pylibmc.Client(servers, behaviors={"ketama": True})
hits = lambda mc, part: sum(1 for k in part if mc.get(k) == "v" + k[1:])
first = hits(client(), keys[:10])  # write-backs: this thread's meta connections open
child = os.fork()
if child == 0:
    # As a daemonizing child does: close every inherited descriptor, then
    # reuse the numbers (the parent's meta connections' among them).
    os.closerange(3, 1024)
    mine = {fd: os.fstat(fd).st_ino for _ in range(20) for fd in os.pipe()}
    found = hits(client(), keys[10:])  # write-backs from the child
    lost = 0  # closed, or closed and the number taken by something else
    for fd, inode in mine.items():
        try:
            lost += os.fstat(fd).st_ino != inode
        except OSError:
            lost += 1
    print(found, lost, flush=True)
    os._exit(0)
_, status = os.waitpid(child, 0)
print(first, os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_that_reused_its_descriptors_keeps_them_through_write_backs(shim_fleet):
    """Before the fix, the child's first write-back closed the descriptor
    number of its parent's meta connection: by then one of the child's own
    pipes."""
    fleet = shim_fleet
    victim, victim_keys = kill_and_restart_with_outage_copies(fleet, "r", 160, 0, client="pylibmc")
    assert len(victim_keys) > 20
    result = run_preloaded_script(fleet, CLOSED_AFTER_FORK_SCRIPT, victim_keys)
    # child: every key found, none of its 40 descriptors closed; parent: 10 hits, child exit 0
    assert result.stdout.split() == [str(len(victim_keys) - 10), "0", "10", "0"]


def race(fleet, mode, read, keys, readers=2):
    """tests/clients/mc_race under the shim: `mode` (delete or set) of each
    key against `readers` threads reading it by `read` (get or mget)."""
    env = plain_env()
    env.update(PRELOAD)
    env["MCSHIM_STATE"] = fleet.state
    servers = ",".join(m.address for m in fleet.servers)
    result = subprocess.run([RACE, servers, mode, read, str(readers)], input="\n".join(keys) + "\n",
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    words = result.stdout.split()
    figures = dict(zip(words[::2], map(int, words[1::2])))
    assert figures["keys"] == len(keys)
    assert figures["after"] >= len(keys)  # every key read after its write returned
    return figures


def left_anywhere(fleet, keys, unless=None):
    """Keys some live server still holds (with a value other than `unless`)."""
    left = []
    for m in fleet.servers:
        if m.process.poll() is not None:
            continue
        for i in range(0, len(keys), 100):
            reply = m.command(("get " + " ".join(keys[i:i + 100]) + "\r\n").encode(), expect_end=b"END\r\n")
            lines = reply.split(b"\r\n")
            for j, line in enumerate(lines):
                if line.startswith(b"VALUE ") and (unless is None or lines[j + 1] != unless):
                    left.append((line.split()[1].decode(), m.address))
    return left


@pytest.mark.parametrize("mode, read", [("delete", "get"), ("delete", "mget"), ("set", "get")])
def test_delete_or_set_during_the_window_never_brings_the_older_value_back(shim_fleet, mode, read):
    """Readers falling back to S race a delete (or set) of each key: none
    started after the write returned sees the older value, and none of the
    older values is left on P or S."""
    fleet = shim_fleet
    prefix = f"r{mode[0]}{read[0]}"
    victim, victim_keys = kill_and_restart_with_outage_copies(fleet, prefix, 3000, 0)
    figures = race(fleet, mode, read, victim_keys)
    left = left_anywhere(fleet, victim_keys, unless=None if mode == "delete" else b"new")
    note(f"writeback race, {mode} vs 2 readers by {read}, recently down",
         f"{figures['keys']} keys, {figures['reads']} reads, {figures['after']} after the {mode} returned: "
         f"{figures['stale']} stale, {len(left)} older values left")
    assert fleet.server(victim.address)["recently_down_until"] is not None, "the window outlived the race"
    assert figures["stale"] == 0
    assert left == []


def test_delete_while_draining_never_brings_the_older_value_back(shim_fleet):
    """Readers moving a draining server's keys race a delete of each key."""
    fleet = shim_fleet
    n = 3000
    keys = [f"q{i}" for i in range(n)]
    assert client_says(fleet, "c", "set-many", "q", n, 0, shim=False) == f"stored {n}"
    on_draining = drain_holding(fleet, fleet.servers[2], keys)
    figures = race(fleet, "delete", "get", on_draining)
    left = left_anywhere(fleet, on_draining)
    note("writeback race, delete vs 2 readers, draining",
         f"{figures['keys']} keys, {figures['after']} reads after the delete returned: {figures['stale']} stale, "
         f"{len(left)} older values left")
    assert figures["stale"] == 0
    assert left == []


class HoldingProxy:
    """A TCP proxy in front of a memcached that forwards every connection
    but one whose first request is a meta store (`ms`: a write-back's lease
    on the server the key belongs to): that one is held, never answered,
    and counted, as a hung server would hold it."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.held = 0
        self.sockets = [self.listener]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self.lock:
                self.sockets.append(client)
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def intercept(self, first, client):
        """True: this connection is the proxy's own, not forwarded."""
        if not first.startswith(b"ms "):
            return False
        with self.lock:
            self.held += 1
        return True

    def serve(self, client):
        try:
            first = client.recv(65536)
            if self.intercept(first, client):
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            client.close()  # the server is down: so is the proxy, for this connection
            return
        with self.lock:
            self.sockets.append(upstream)
        upstream.settimeout(None)
        upstream.sendall(first)
        threading.Thread(target=self.pump, args=(upstream, client), daemon=True).start()
        self.pump(client, upstream)

    @staticmethod
    def pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        with self.lock:
            for s in self.sockets:
                s.close()


def start_with_window(fleet, listed):
    """mcwatchd over the servers `listed` (proxies), with a long window."""
    fleet.write_config({"recently_down_window": f"{WINDOW_S}s", "writeback_ttl": "10m"}, servers=listed)
    fleet.start_daemon(wait_live=False)
    fleet.wait_states({a: "live" for a in listed})


def placed_on(listed, server, prefix):
    """Those of prefix0..prefix59 that the client alone places on `server` of `listed`."""
    keys = [f"{prefix}{i}" for i in range(60)]
    mine = subprocess.run([C_CLIENT, ",".join(listed), "where"], input="\n".join(keys) + "\n", env=plain_env(),
                          capture_output=True, text=True, check=True, timeout=60).stdout
    return [k for k, where in (line.split() for line in mine.splitlines()) if where == server]


def test_a_multi_gets_write_backs_to_a_hung_server_hold_its_last_fetch_once_not_once_per_key(fleet):
    # The server the keys belong to takes connections but never answers a
    # write-back's lease: each write-back waits the handle's poll timeout.
    # A multi-get's write-backs share one: the first spends it, the others
    # are skipped (the values are served all the same).
    fleet.add_servers(3)
    victim = fleet.servers[1]
    proxy = HoldingProxy(victim.port)
    try:
        listed = [fleet.servers[0].address, proxy.address, fleet.servers[2].address]
        start_with_window(fleet, listed)
        victim_keys = placed_on(listed, proxy.address, "h")[:3]
        assert len(victim_keys) == 3
        env = plain_env()
        victim.kill()
        fleet.wait_states({proxy.address: "dead"})
        env.update(PRELOAD)
        env["MCSHIM_STATE"] = fleet.state
        for k in victim_keys:  # to their fallback, while the server is dead
            assert subprocess.run([C_CLIENT, ",".join(listed), "set", k, "v-" + k, "0"], env=env, capture_output=True,
                                  text=True, timeout=60).stdout.strip() == "SUCCESS"
        victim.start()
        fleet.wait_states({proxy.address: "live"})
        read = subprocess.run([C_CLIENT, ",".join(listed), "mget"] + victim_keys, env=env, capture_output=True,
                              text=True, timeout=120)
        assert read.returncode == 0 and read.stderr == "", read.stderr
        lines = read.stdout.splitlines()
        assert sorted(lines[:-1]) == [f"VALUE {k} v-{k}" for k in sorted(victim_keys)], read.stdout
        assert lines[-1].startswith("END"), read.stdout
        assert proxy.held == 1  # one write-back waited; the other two were skipped
    finally:
        proxy.close()


class FloodingProxy(HoldingProxy):
    """A proxy whose server answers the shim's meta read of a copy (`mg`,
    a write-back's source) with a reply without end: a huge value, or a
    line that never ends. Sends until the reader closes (4 GiB at most)."""

    def __init__(self, upstream_port, reply):
        self.reply = reply
        super().__init__(upstream_port)

    def intercept(self, first, client):
        if not first.startswith(b"mg "):
            return False
        with self.lock:
            self.held += 1
        chunk = b"x" * (1 << 20)
        try:
            client.sendall(b"VA 1073741000 f0 t-1 c1\r\n" if self.reply == "huge value" else b"VA ")
            for _ in range(4096):
                client.sendall(chunk)
        except OSError:
            pass  # the reader gave up: what the test wants
        return True


@pytest.mark.parametrize("reply", ["huge value", "endless line"])
def test_a_write_backs_source_sending_a_reply_without_end_costs_the_program_no_memory(fleet, tmp_path, reply):
    # A key read from its fallback (its server back from an outage) is
    # written back: the shim reads the fallback's copy again over its meta
    # connection. A server that answers that read with a reply without end
    # must not make the program buffer it: the write-back gives up at the
    # size limit, saying why, and the program has its value.
    fleet.add_servers(3)
    proxies = [FloodingProxy(m.port, reply) for m in fleet.servers]
    try:
        listed = [p.address for p in proxies]
        start_with_window(fleet, listed)
        key = placed_on(listed, listed[1], "w")[0]
        env = plain_env()
        victim = fleet.servers[1]
        victim.kill()
        fleet.wait_states({listed[1]: "dead"})
        env.update(PRELOAD)
        env["MCSHIM_STATE"] = fleet.state
        assert subprocess.run([C_CLIENT, ",".join(listed), "set", key, "v", "0"], env=env, capture_output=True,
                              text=True, timeout=60).stdout.strip() == "SUCCESS"
        victim.start()
        fleet.wait_states({listed[1]: "live"})
        env["MCSHIM_DEBUG"] = "1"
        with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
            read = subprocess.Popen([C_CLIENT, ",".join(listed), "get", key], env=env, stdout=out, stderr=err)
        watchdog = threading.Timer(120, read.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(read.pid, 0)  # its own peak memory, which Popen.wait would not tell
        finally:
            watchdog.cancel()
        read.returncode = os.waitstatus_to_exitcode(status)
        said = (tmp_path / "err").read_text()
        assert read.returncode == 0, said
        assert (tmp_path / "out").read_text().strip() == "VALUE v"
        assert sum(p.held for p in proxies) == 1
        # A client's usual few MB (more under a sanitizer), not the flood's.
        assert usage.ru_maxrss < 256 * 1024, f"peak RSS {usage.ru_maxrss} KiB"
        assert "not written back: source's reply too large" in said, said
    finally:
        for p in proxies:
            p.close()
