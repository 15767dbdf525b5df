"""Client hosts as network namespaces: several hosts, each with its own
mcwatchd, state file and clients, reaching the same memcached servers over
their own links, so that one server can be cut from one host only.

    servers namespace                      host namespaces
    +--------------------------+           +-------------------+
    | br0  10.250.0.11, .12... |--host0 ---| veth0 10.250.0.101|
    |      memcached on each   |--host1 ---| veth0 10.250.0.102|
    +--------------------------+   ...     +-------------------+

Every link is made inside the namespaces (`ip link add ... netns`), never in
this process's: deleting the namespaces deletes the links, and a crash in
the middle leaves nothing behind here. Traffic stays inside the namespaces
(and loopback). Names are `mcwnet-<pid>-<run>-...`: unique per test run, and
a dead pid's leftovers (after a crash) are removed by the next Network."""

import os
import re
import select
import signal
import subprocess
import sys
import time
from itertools import count

from mcwatchd import Mcwatchd, write_config
from memcached_server import Memcached, in_netns
from processes import pid_alive, stop_process, wait_until

PREFIX = "mcwnet"
SUBNET = "10.250.0"  # a fixed private /24: it exists only inside the namespaces
SERVER_BASE = 11  # servers are .11 to .50,
SERVICE_BASE = 51  # other services of the servers' namespace (etcd...) .51 to .100,
HOST_BASE = 101  # hosts .101 to .254
MEMCACHED_PORT = 11211  # every server has its own address, so all share the port
IP_TIMEOUT = 10  # seconds for one `ip` command
CUT_PREF = "10"  # the servers' namespace's routing rules: the cuts first,
LOCAL_PREF = "100"  # then the local table

_runs = count()


def ip(*args, check=True):
    """One `ip` command; raises with its stderr if it fails (check)."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def namespaces(prefix=PREFIX):
    """The names of `ip netns list` that start with `prefix`."""
    names = [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix)]


def links(prefix=PREFIX):
    """The links of this process's namespace whose names start with `prefix`."""
    names = [line.split(":")[1].strip().split("@")[0] for line in ip("-o", "link", "show").stdout.splitlines()]
    return [n for n in names if n.startswith(prefix)]


def delete_namespace(name):
    """Kills what still runs inside namespace `name` (by pid: `ip netns
    pids`), then deletes it and, with it, its links."""
    for pid in ip("netns", "pids", name, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    ip("netns", "delete", name, check=False)


def remove_leftovers(prefix=PREFIX):
    """Deletes the namespaces and links of runs whose process is dead (a
    test run killed before its teardown)."""
    owner = re.compile(re.escape(prefix) + r"-(\d+)-")

    def dead(name):
        match = owner.match(name)
        return match and not pid_alive(int(match.group(1)))

    for name in filter(dead, namespaces(prefix)):
        delete_namespace(name)
    for name in filter(dead, links(prefix)):
        ip("link", "delete", name, check=False)


def _address(base, index, limit):
    if base + index >= limit:
        raise ValueError(f"{SUBNET}.{base}: at most {limit - base} addresses")
    return f"{SUBNET}.{base + index}"


def _server_ip(server):
    """The IP address of a server: a Memcached, or "ip:port", or "ip"."""
    address = server.address if isinstance(server, Memcached) else server
    return address.rsplit(":", 1)[0] if ":" in address else address


class Namespace:
    """A network namespace by its name, and programs run inside it."""

    def __init__(self, name):
        self.name = name

    def argv(self, argv):
        return in_netns(self.name, argv)

    def run(self, argv, timeout=60, **kwargs):
        """subprocess.run of argv inside this namespace (text output
        captured unless the caller says otherwise)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.argv(argv), timeout=timeout, **kwargs)

    def popen(self, argv, **kwargs):
        """subprocess.Popen of argv inside this namespace; its pid is the
        program's (stop it by that pid)."""
        return subprocess.Popen(self.argv(argv), **kwargs)


class Session:
    """A client process that answers each line written to its stdin with
    one line (tests/clients/pylibmc_session.py), so a test interleaves the
    operations of clients on several hosts; stopped by its pid."""

    def __init__(self, process):
        self.process = process
        self._pending = b""

    def ask(self, line, timeout=30.0):
        """Sends one request line and returns the reply line; fails if none
        comes within timeout seconds, or the process exits."""
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.process.stdout], [], [], left)[0]:
                raise TimeoutError(f"no reply to {line!r} within {timeout}s")
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"the client exited ({self.process.wait()}) on {line!r}")
            self._pending += chunk
        reply, self._pending = self._pending.split(b"\n", 1)
        return reply.decode()

    def stop(self):
        if self.process.poll() is None:
            self.process.stdin.close()
        status = stop_process(self.process, signal.SIGTERM, timeout=5)
        self.process.stdout.close()
        return status


def holder(network, key):
    """The addresses of the servers of `network` holding `key`, and its
    value on each (read from each memcached directly)."""
    found = {}
    for m in network.servers:
        reply = m.command(f"get {key}\r\n".encode(), expect_end=b"END\r\n").split(b"\r\n")
        if reply[0].startswith(b"VALUE "):
            found[m.address] = reply[1].decode()
    return found


def first_key_on(network, server, session, keys=40):
    """The first of k0, k1... that `session` (a Session of
    tests/clients/pylibmc_session.py) stores on `server`."""
    for i in range(keys):
        if session.ask(f"set k{i} 0") != "STORED":
            raise AssertionError(f"k{i} not stored")
        if server.address in holder(network, f"k{i}"):
            return f"k{i}"
    raise AssertionError(f"none of {keys} keys on {server.address}")


def take_turns_writing(hosts, sessions, key, writes=6):
    """The partial partition's stale-read scenario (docs/DESIGN.md, "Client
    hosts in tests"): the hosts' clients (`sessions`, one per host) take
    turns writing versions 1 to `writes` of `key`, and after each write
    every host reads it. A write may fail and a read may miss (a cache may
    forget), but a read of a version older than the last acknowledged
    write is stale. Returns the stale reads [(version, host label, version
    read)], the failed writes and the reads made."""
    stale, last_written, failed_writes, reads = [], 0, 0, 0
    for version in range(1, writes + 1):
        if sessions[version % len(sessions)].ask(f"set {key} {version}") == "STORED":
            last_written = version
        else:
            failed_writes += 1
        for host, session in zip(hosts, sessions):
            reply = session.ask(f"get {key}")
            reads += 1
            if reply.startswith("VALUE ") and int(reply.split()[1]) < last_written:
                stale.append((version, host.label, int(reply.split()[1])))
    return stale, failed_writes, reads


class Host(Namespace):
    """One client host: a network namespace joined to the servers' bridge by
    a veth pair, with its own address. What runs in it (host.run,
    host.popen) sees the servers only through that link."""

    def __init__(self, network, index):
        self.network = network
        self.index = index
        self.label = f"host{index}"
        super().__init__(f"{network.prefix}-{self.label}")
        self.address = _address(HOST_BASE, index, 255)
        self.mcwatchd = None
        self.sessions = []
        self._cuts = {}  # server ip -> how

    def create(self):
        servers = self.network.servers_ns
        ip("netns", "add", self.name)
        ip("-n", self.name, "link", "add", "veth0", "type", "veth", "peer", "name", self.label, "netns",
           servers)
        ip("-n", servers, "link", "set", self.label, "master", "br0", "up")
        ip("-n", self.name, "addr", "add", f"{self.address}/24", "dev", "veth0")
        ip("-n", self.name, "link", "set", "veth0", "up")
        ip("-n", self.name, "link", "set", "lo", "up")

    def start_session(self, argv, env=None):
        """A Session of argv in this host (stderr goes to the test's), stopped
        by teardown."""
        process = self.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.sessions.append(Session(process))
        return self.sessions[-1]

    def cut(self, server, how="drop"):
        """Makes `server` (a Memcached, "ip:port" or an address) unreachable
        from this host only.
        how="drop": a silent partition. The servers' namespace drops every
        packet between the server and this host, both ways (two `ip rule
        ... blackhole`): this host's connects and requests time out, and
        what it sends on a connection already open never reaches the
        server, as across a broken switch; other hosts are untouched.
        how="unreachable": this host has no route to the server (`ip route
        add unreachable`): its connects fail at once (EHOSTUNREACH), and its
        open connections' packets are not sent.
        A refused connection (a RST) needs a firewall, and is what a
        stopped memcached gives anyway (Memcached.kill)."""
        address = _server_ip(server)
        if address in self._cuts:
            raise RuntimeError(f"{address} is already cut from {self.name}")
        for command in self._cut_commands("add", address, how):
            ip(*command)
        self._cuts[address] = how

    def heal(self, server):
        """Undoes cut(server)."""
        address = _server_ip(server)
        for command in self._cut_commands("delete", address, self._cuts.pop(address)):
            ip(*command)

    def _cut_commands(self, verb, address, how):
        if how == "drop":
            rule = ("-n", self.network.servers_ns, "rule", verb, "pref", CUT_PREF)
            return [rule + ("from", address, "to", self.address, "blackhole"),
                    rule + ("from", self.address, "to", address, "blackhole")]
        if how == "unreachable":
            return [("-n", self.name, "route", verb, "unreachable", f"{address}/32")]
        raise ValueError(f"cut how={how!r}: drop or unreachable")

    def cut_all(self):
        """Downs this host's veth: every server unreachable from it at once
        (ENETUNREACH), as with its cable pulled."""
        ip("-n", self.name, "link", "set", "veth0", "down")

    def heal_all(self):
        ip("-n", self.name, "link", "set", "veth0", "up")

    def start_mcwatchd(self, build, directory, settings=None, routing=None, extra_config=""):
        """This host's mcwatchd, watching every server of the network, with
        its config, state file and log in `directory` (made if missing);
        `extra_config` is appended to the config (e.g. a section). Returns
        the Mcwatchd, also kept as host.mcwatchd, stopped by teardown."""
        os.makedirs(directory, exist_ok=True)
        config = os.path.join(directory, "mcwatchd.conf")
        state = os.path.join(directory, "run", "state")
        write_config(config, state, [m.address for m in self.network.servers], settings, routing)
        if extra_config:
            with open(config, "a") as out:
                out.write(extra_config)
        self.mcwatchd = Mcwatchd(build, config, state, os.path.join(directory, "mcwatchd.log"), netns=self.name)
        self.mcwatchd.start()
        return self.mcwatchd


class Network:
    """A servers namespace with a bridge, memcached servers on their own
    addresses in it, and `hosts` client-host namespaces joined to it. A
    context manager: everything it made is deleted when the block ends,
    however it ends."""

    def __init__(self, hosts=3, prefix=PREFIX):
        self.base = prefix
        self.prefix = f"{prefix}-{os.getpid()}-{next(_runs)}"
        self.servers_ns = f"{self.prefix}-servers"
        # What runs beside the memcached servers (etcd...), reached by every
        # host over its link, on addresses of add_address().
        self.services = Namespace(self.servers_ns)
        _address(HOST_BASE, hosts - 1, 255)  # too many hosts: say so before making any
        self.host_count = hosts
        self.hosts = []
        self.servers = []
        self.service_addresses = []

    def __enter__(self):
        remove_leftovers(self.base)
        try:
            ip("netns", "add", self.servers_ns)
            ip("-n", self.servers_ns, "link", "set", "lo", "up")
            # The local table's rule goes after the cuts' (CUT_PREF), so that
            # a cut also drops what arrives for the servers' own addresses.
            ip("-n", self.servers_ns, "rule", "add", "pref", LOCAL_PREF, "lookup", "local")
            ip("-n", self.servers_ns, "rule", "delete", "pref", "0")
            ip("-n", self.servers_ns, "link", "add", "br0", "type", "bridge")
            ip("-n", self.servers_ns, "link", "set", "br0", "up")
            for index in range(self.host_count):
                host = Host(self, index)
                self.hosts.append(host)
                host.create()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.teardown()

    def add_servers(self, count):
        """Starts `count` more memcached servers in the servers namespace,
        each on its own address of the bridge (port 11211); returns them all."""
        for _ in range(count):
            address = _address(SERVER_BASE, len(self.servers), SERVICE_BASE)
            ip("-n", self.servers_ns, "addr", "add", f"{address}/24", "dev", "br0")
            self.servers.append(Memcached(port=MEMCACHED_PORT, hosts=[address], netns=self.servers_ns).start())
        return self.servers

    def add_address(self):
        """One more address on the servers' bridge, for a service other
        than memcached (an etcd member...) started in `services` on it; a
        host can cut it like a server."""
        address = _address(SERVICE_BASE, len(self.service_addresses), HOST_BASE)
        ip("-n", self.servers_ns, "addr", "add", f"{address}/24", "dev", "br0")
        self.service_addresses.append(address)
        return address

    def wait_reachable(self, timeout=5.0):
        """Waits until every host reaches every server (a bridge port takes
        a moment to forward)."""
        def all_reach():
            script = ("import socket, sys\n"
                      "for a in sys.argv[1:]:\n"
                      "    h, p = a.rsplit(':', 1)\n"
                      "    socket.create_connection((h, int(p)), timeout=0.5).close()\n")
            return all(host.run([sys.executable, "-c", script] + [m.address for m in self.servers]).returncode == 0
                       for host in self.hosts)
        wait_until(all_reach, timeout, "every host reaching every server", interval=0.1)

    def names(self):
        """The namespaces and links of this process's namespace that this
        run's prefix names (after teardown: none)."""
        return namespaces(self.prefix + "-") + links(self.prefix + "-")

    def teardown(self):
        """Stops the daemons and servers by pid, then deletes every
        namespace (with its links and whatever still runs in it)."""
        for host in self.hosts:
            for session in host.sessions:
                session.stop()
            if host.mcwatchd and host.mcwatchd.process:
                stop_process(host.mcwatchd.process, signal.SIGKILL)
        for server in self.servers:
            server.stop()
        for name in [h.name for h in self.hosts] + [self.servers_ns]:
            delete_namespace(name)
        deadline = time.monotonic() + 5
        while self.names() and time.monotonic() < deadline:
            time.sleep(0.05)  # a namespace's links go with its last reference
