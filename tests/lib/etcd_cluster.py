"""A real etcd cluster (Debian's etcd-server, /usr/bin/etcd) of 1 or 3
members on free loopback ports, for the fleet view's tests: data directories
under the test's tmp dir, each member started and stopped by its pid, never
by name, health awaited with a bounded loop."""

import json
import os
import signal
import subprocess
import urllib.request

from memcached_server import connect, free_port, in_netns
from processes import stop_process, wait_until

ETCD = "/usr/bin/etcd"


class EtcdMember:
    """One member on host:ports; with `netns` (tests/lib/netns.py), inside
    that network namespace, on one of its addresses."""

    def __init__(self, name, directory, client_port, peer_port, host="127.0.0.1", netns=None):
        self.name = name
        self.directory = directory
        self.client_port = client_port
        self.peer_port = peer_port
        self.host = host
        self.netns = netns
        self.process = None

    @property
    def endpoint(self):
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self):
        return f"http://{self.host}:{self.peer_port}"

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def start(self, initial_cluster, state="new"):
        os.makedirs(self.directory, exist_ok=True)
        self.log = open(os.path.join(self.directory, "etcd.log"), "a")
        self.process = subprocess.Popen(in_netns(self.netns, [
            ETCD, "--name", self.name, "--data-dir", os.path.join(self.directory, "data"),
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
             "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
             "--initial-cluster-token", "mcwatch-test",
             # Tests want a quick election, not a WAN's patience.
             "--heartbeat-interval", "50", "--election-timeout", "500",
             # etcd 3.4's default logger (capnslog) leaves the zap logger nil, and
             # a read index that times out on a loaded machine logs through it:
             # a nil dereference that took all three members down mid-bench.
             "--logger", "zap", "--log-outputs", "stderr"]),
            stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def running(self):
        return self.process is not None and self.process.poll() is None

    def healthy(self):
        if self.netns:
            return self._healthy_in_netns()
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=1) as reply:
                return json.load(reply).get("health") == "true"
        except (OSError, ValueError):
            return False

    def _healthy_in_netns(self):
        """GET /health over a socket made in the member's namespace."""
        try:
            with connect(self.host, self.client_port, 1.0, self.netns) as s:
                s.sendall(f"GET /health HTTP/1.0\r\nHost: {self.host}\r\n\r\n".encode())
                reply = b""
                while chunk := s.recv(4096):
                    reply += chunk
            return b'"health":"true"' in reply
        except OSError:
            return False

    def stop(self, sig=signal.SIGTERM):
        status = stop_process(self.process, sig)
        if getattr(self, "log", None):
            self.log.close()
        return status


class EtcdCluster:
    """`size` members (1 or 3), started together, healthy on return."""

    def __init__(self, directory, size=1, addresses=None, netns=None):
        """On free loopback ports, or with `addresses` (one per member) in
        network namespace `netns`, on etcd's own ports."""
        self.members = []
        for i in range(size):
            where = os.path.join(directory, f"etcd-m{i}")
            if addresses:
                self.members.append(EtcdMember(f"m{i}", where, 2379, 2380, addresses[i], netns))
            else:
                self.members.append(EtcdMember(f"m{i}", where, free_port(), free_port()))

    @property
    def endpoints(self):
        return [m.endpoint for m in self.members]

    def config_value(self):
        """The `[fleet] etcd =` line's value."""
        return ", ".join(self.endpoints)

    def start(self, timeout=30.0):
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.start(initial)
        wait_until(lambda: all(m.running() and m.healthy() for m in self.members), timeout,
                   "every etcd member healthy", interval=0.1)
        return self

    def request(self, path, body, timeout=5):
        """A v3 JSON gateway call on the first running member, parsed (members
        on loopback: not those in a namespace)."""
        for m in self.members:
            if not m.running():
                continue
            data = json.dumps(body).encode()
            req = urllib.request.Request(f"{m.endpoint}{path}", data=data, method="POST")
            with urllib.request.urlopen(req, timeout=timeout) as reply:
                return json.load(reply)
        raise RuntimeError("no etcd member runs")

    def stop(self):
        for m in reversed(self.members):
            m.stop()
