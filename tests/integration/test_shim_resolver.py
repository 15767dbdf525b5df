"""issue 17 §12: host names in a client's server list and a slow resolver.
The shim resolved every name of the list, one after another, inside a
spinlock, on the client's first call (16 s against 2 s without it). A client's
call must never wait for the shim's name resolution.

The resolver is a real DNS server on a loopback address, seen by the client
alone through a private /etc/resolv.conf in a mount namespace (unshare -rm).
It holds every query until the test opens its gate: a call that returns while
the gate is closed did not resolve on the call path, whatever the timings."""

import os
import random
import select
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import BUILD, wait_until
from test_preload import C_CLIENT, PRELOAD
from sanitizers import plain_env  # noqa: E402 (tests/lib, on the path by conftest)

DOMAIN = ".mcwatch.test"


class GatedDns(threading.Thread):
    """Answers A queries for *.mcwatch.test with 127.0.0.1 (AAAA: no record,
    anything else: NXDOMAIN), but only once the gate is open; queries that
    come earlier are held and answered then."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):
            self.address = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.53"
            try:
                self.sock.bind((self.address, 53))
                break
            except PermissionError:
                pytest.skip("binding a DNS server on port 53 needs root")
            except OSError:
                continue
        self.gate = threading.Event()
        self.stop = threading.Event()
        self.queries = []  # (name, qtype) in arrival order
        self.answered = 0
        self.held = []

    def answer(self, packet, peer):
        qid, = struct.unpack("!H", packet[:2])
        end = 12
        labels = []
        while packet[end]:
            labels.append(packet[end + 1:end + 1 + packet[end]].decode())
            end += packet[end] + 1
        question = packet[12:end + 5]
        qtype, = struct.unpack("!H", packet[end + 1:end + 3])
        name = ".".join(labels)
        ours = name.endswith(DOMAIN)
        records = b""
        if ours and qtype == 1:
            records = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
        flags = 0x8180 if ours else 0x8183
        header = struct.pack("!HHHHHH", qid, flags, 1, 1 if records else 0, 0, 0)
        self.sock.sendto(header + question + records, peer)
        self.answered += 1

    def run(self):
        while not self.stop.is_set():
            if self.gate.is_set():
                for packet, peer in self.held:
                    self.answer(packet, peer)
                self.held = []
            ready, _, _ = select.select([self.sock], [], [], 0.02)
            if not ready:
                continue
            packet, peer = self.sock.recvfrom(4096)
            end = 12
            labels = []
            while packet[end]:
                labels.append(packet[end + 1:end + 1 + packet[end]].decode())
                end += packet[end] + 1
            self.queries.append((".".join(labels), struct.unpack("!H", packet[end + 1:end + 3])[0]))
            if self.gate.is_set():
                self.answer(packet, peer)
            else:
                self.held.append((packet, peer))


@pytest.fixture
def dns(tmp_path):
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -rm (user and mount namespaces) is not allowed here")
    server = GatedDns()
    server.start()
    server.resolv_conf = tmp_path / "resolv.conf"
    # One try, a long timeout: a held query is not sent again meanwhile.
    server.resolv_conf.write_text(f"nameserver {server.address}\noptions timeout:30 attempts:1\n")
    yield server
    server.gate.set()
    server.stop.set()
    server.join(timeout=5)
    server.sock.close()


class WhereClient:
    """mc_client `where` (memcached_server_by_key, answered by the shim) in
    its own mount namespace with the private resolv.conf, kept running."""

    def __init__(self, fleet, dns, servers):
        script = f'mount --bind {dns.resolv_conf} /etc/resolv.conf && exec "$@"'
        env = dict(os.environ, **PRELOAD, MCSHIM_STATE=fleet.state)
        self.process = subprocess.Popen(["unshare", "-rm", "sh", "-c", script, "sh", C_CLIENT, servers, "where"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.pending = b""

    def where(self, keys, timeout):
        """key -> server, or None if not every key was answered within timeout."""
        self.process.stdin.write("".join(k + "\n" for k in keys).encode())
        self.process.stdin.flush()
        answers = {}
        deadline = time.monotonic() + timeout
        out = self.process.stdout.fileno()
        while len(answers) < len(keys) and time.monotonic() < deadline:
            ready, _, _ = select.select([out], [], [], 0.1)
            if not ready:
                continue
            chunk = os.read(out, 65536)
            if not chunk:
                break
            *lines, self.pending = (self.pending + chunk).split(b"\n")
            for line in lines:
                key, server = line.decode().split()
                answers[key] = server
        return answers if len(answers) == len(keys) else None

    def close(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def test_slow_resolver_never_delays_a_call_and_each_name_is_resolved_once(fleet, dns):
    fleet.add_servers(3)
    fleet.start_daemon()
    ports = [m.port for m in fleet.servers]
    names = [f"slow-a{DOMAIN}", f"slow-b{DOMAIN}"]
    # The daemon knows the servers by number, the client two of them by name.
    servers = f"127.0.0.1:{ports[0]},{names[0]}:{ports[1]},{names[1]}:{ports[2]}"
    dead = f"{names[0]}:{ports[1]}"
    fleet.servers[1].kill()
    fleet.wait_states({fleet.servers[1].address: "dead"})
    keys = [f"k{i}" for i in range(300)]
    client = WhereClient(fleet, dns, servers)
    try:
        # Generous: an answer either comes without DNS or not before the gate opens.
        before = client.where(keys, timeout=15)
        assert before is not None, "the client answered no key while the resolver held the shim's queries"
        assert dns.answered == 0
        wait_until(lambda: any(name in names for name, _ in dns.queries), 10, "the shim's background query")
        # Until its name is resolved, nothing says the dead server is that slot:
        # its keys go where libmemcached puts them.
        native_on_dead = [k for k in keys if before[k] == dead]
        assert native_on_dead
        dns.gate.set()

        def moved():
            now = client.where(keys, timeout=15)
            return now if now and all(now[k] != dead for k in keys) else None
        after, _ = wait_until(moved, 15, "the dead server's keys to move once its name resolved", interval=0.1)
        assert all(after[k] == before[k] for k in keys if k not in native_on_dead)
    finally:
        dns.gate.set()
        client.close()
    # One resolution per name for the process (A and AAAA), however many calls.
    for name in names:
        for qtype in (1, 28):
            assert dns.queries.count((name, qtype)) <= 1, dns.queries


FORK_SCRIPT = """
import os, socket, sys, time, pylibmc
servers, hold, drained = sys.argv[1].split(","), sys.argv[2], sys.argv[3]

def keys_left_on_drained(mc, attempt):
    keys = [f"f{attempt}-{i}" for i in range(30)]
    for k in keys:
        mc.set(k, "v")
    host, port = drained.rsplit(":", 1)  # asked directly: the shim would route around it
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(("get " + " ".join(keys) + "\\r\\n").encode())
        reply = b""
        while not reply.endswith(b"END\\r\\n"):
            reply += s.recv(65536)
    return reply.count(b"VALUE ")

open(hold, "w").close()
mc = pylibmc.Client(servers, behaviors={"ketama": True})
keys_left_on_drained(mc, 0)  # starts the shim's lookup of the name: held
child = os.fork()
if child == 0:
    os.unlink(hold)  # this process's lookups answer from now on
    for attempt in range(1, 150):  # bounded: 15 s at least
        if keys_left_on_drained(mc, attempt) == 0:
            os._exit(0)
        time.sleep(0.1)
    os._exit(1)
_, status = os.waitpid(child, 0)
print("child writes around the drained server" if os.waitstatus_to_exitcode(status) == 0
      else "child writes to the drained server")
"""


def test_a_child_forked_while_the_name_lookup_runs_looks_the_name_up_itself(fleet, tmp_path):
    # The client names a server by a host name (in its own /etc/hosts), the
    # daemon by 127.0.0.1: the shim matches the two once its own thread has
    # resolved the name ("localhost" needs no lookup). A fork while that
    # thread runs leaves the child without it: the child, with the handle it
    # inherited, must start its own, or the server stays unpublished there
    # and its keys keep going to it although it is draining.
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -rm (user and mount namespaces) is not allowed here")
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 fork{DOMAIN}\n")
    fleet.add_servers(3)
    fleet.start_daemon()
    drained = fleet.servers[1]
    assert fleet.ctl("drain", drained.address).returncode == 0
    fleet.wait_states({drained.address: "draining"})
    servers = [m.address for m in fleet.servers]
    servers[1] = f"fork{DOMAIN}:" + drained.address.rsplit(":", 1)[1]
    env = plain_env()
    env.update(PRELOAD)
    env["LD_PRELOAD"] += " " + os.path.join(BUILD, "clients", "slow_dns.so")
    env["MCSHIM_STATE"] = fleet.state
    env["SLOW_DNS_HOLD"] = str(tmp_path / "hold-dns")
    env["SLOW_DNS_THREADS_ONLY"] = "1"  # the shim's lookup thread, not libmemcached's own connections
    private_hosts = f'mount --bind {hosts} /etc/hosts && exec "$@"'
    result = subprocess.run(["unshare", "-rm", "sh", "-c", private_hosts, "sh", "/usr/bin/python3", "-c", FORK_SCRIPT,
                             ",".join(servers), env["SLOW_DNS_HOLD"], drained.address],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.stderr == ""
    assert result.stdout.strip() == "child writes around the drained server"
