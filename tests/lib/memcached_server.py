"""A real memcached on a free loopback port, started and stopped by pid: the
one definition the integration tests (tests/integration/conftest.py) and the
benchmarks (tests/bench/) share."""

import os
import signal
import socket
import subprocess
import time

MEMCACHED = "/usr/bin/memcached"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_command(port, command, expect_end=b"\r\n", timeout=2.0, host="127.0.0.1"):
    """Sends one text command to a memcached and returns its reply."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(command)
        reply = b""
        while not reply.endswith(expect_end):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


def wait_accepting(process, host, port, timeout=5.0):
    """Waits until `process` accepts connections on host:port: True, or
    False once it exited or the timeout passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.01)
    return False


class Memcached:
    """One memcached process on a loopback port (a fixed one if given, else a
    free one). `hosts` lists the loopback addresses it listens on, all on the
    same port: one process can stand for many servers."""

    def __init__(self, port=None, memory_mb=16, hosts=("127.0.0.1",), extra_args=()):
        self.port = port
        self.memory_mb = memory_mb
        self.hosts = list(hosts)
        self.extra_args = list(extra_args)  # more memcached options (e.g. a smaller -I)
        self.process = None

    @property
    def address(self):
        return f"{self.hosts[0]}:{self.port}"

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def start(self):
        for _ in range(20):
            port = self.port or free_port()
            args = [MEMCACHED, "-l", ",".join(self.hosts), "-p", str(port), "-U", "0",
                    "-m", str(self.memory_mb), "-t", "1", "-c", "4096"] + self.extra_args
            if os.geteuid() == 0:
                args += ["-u", "root"]
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if wait_accepting(self.process, self.hosts[-1], port):
                self.port = port
                return self
            self.process.kill()
            self.process.wait()
            if self.port:
                time.sleep(0.1)  # fixed port still held by the previous process
        raise RuntimeError(f"could not start memcached (port {self.port})")

    def signal(self, sig):
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def kill(self):
        """kill -9, and reap it."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()

    def command(self, text, expect_end=b"\r\n"):
        return raw_command(self.port, text, expect_end, host=self.hosts[0])

    def stats(self):
        """The server's `stats`, as a dict of strings."""
        reply = self.command(b"stats\r\n", b"END\r\n").decode()
        return dict(line.split(" ")[1:3] for line in reply.splitlines() if line.startswith("STAT "))
