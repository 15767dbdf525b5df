"""A real etcd cluster (Debian's etcd-server, /usr/bin/etcd) of 1 or 3
members on free loopback ports, for the fleet view's tests: data directories
under the test's tmp dir, each member started and stopped by its pid, never
by name, health awaited with a bounded loop."""

import json
import os
import signal
import subprocess
import urllib.request

from memcached_server import free_port
from processes import stop_process, wait_until

ETCD = "/usr/bin/etcd"


class EtcdMember:
    def __init__(self, name, directory, client_port, peer_port):
        self.name = name
        self.directory = directory
        self.client_port = client_port
        self.peer_port = peer_port
        self.process = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self):
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def start(self, initial_cluster, state="new"):
        os.makedirs(self.directory, exist_ok=True)
        self.log = open(os.path.join(self.directory, "etcd.log"), "a")
        self.process = subprocess.Popen(
            [ETCD, "--name", self.name, "--data-dir", os.path.join(self.directory, "data"),
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
             "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
             "--initial-cluster-token", "mcwatch-test",
             # Tests want a quick election, not a WAN's patience.
             "--heartbeat-interval", "50", "--election-timeout", "500"],
            stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def running(self):
        return self.process is not None and self.process.poll() is None

    def healthy(self):
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=1) as reply:
                return json.load(reply).get("health") == "true"
        except (OSError, ValueError):
            return False

    def stop(self, sig=signal.SIGTERM):
        status = stop_process(self.process, sig)
        if getattr(self, "log", None):
            self.log.close()
        return status


class EtcdCluster:
    """`size` members (1 or 3), started together, healthy on return."""

    def __init__(self, directory, size=1):
        self.members = []
        for i in range(size):
            self.members.append(EtcdMember(f"m{i}", os.path.join(directory, f"etcd-m{i}"), free_port(), free_port()))

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
        """A v3 JSON gateway call on the first running member, parsed."""
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
