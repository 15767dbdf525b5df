"""A real memcached on a free loopback port, started and stopped by pid: the
one definition the integration tests (tests/integration/conftest.py) and the
benchmarks (tests/bench/) share. It may also run inside a network namespace
(tests/lib/netns.py), on that namespace's address."""

import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import tempfile
import time

from processes import pid_alive

MEMCACHED = "/usr/bin/memcached"
CLONE_NEWNET = 0x40000000


def in_netns(netns, argv):
    """argv run inside network namespace `netns` (a name of `ip netns`), or
    as it is for None. `ip netns exec` execs in place: the pid of the process
    started is the program's."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def _socket_in(netns, family):
    """A TCP socket made inside network namespace `netns`. setns moves only
    the calling thread, and back at once; a socket stays in the namespace
    it was made in."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


def connect(host, port, timeout, netns=None):
    """A TCP connection to host:port (a numeric address in a namespace),
    from inside `netns` if given."""
    if not netns:
        return socket.create_connection((host, port), timeout=timeout)
    s = _socket_in(netns, socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        s.settimeout(timeout)
        s.connect((host, port))
        return s
    except BaseException:
        s.close()
        raise


# Ports handed out by free_port(), claimed across every process of the
# machine's test runs (tests/run's parallel workers, another run beside it):
# a port the kernel gives for port 0 is free only until the socket closes,
# and another process can be given the same one before the first one's
# server binds it. A claim is a file named by the port, holding the pid
# that took it; it lasts as long as that process (a port it no longer
# listens on, such as a test's refused address, is never another's).
PORT_CLAIMS = os.path.join(tempfile.gettempdir(), f"mcwatch-test-ports-{os.getuid()}")
PORT_TRIES = 200  # ports drawn from the kernel before free_port gives up


def _claimed(path):
    """Whether the claim file at `path` names a process still alive."""
    try:
        with open(path) as f:
            return pid_alive(int(f.read()))
    except (FileNotFoundError, ValueError):
        return False


def _unused_port():
    """A port nothing listens on now: the kernel's pick for port 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port():
    """A loopback TCP port nothing listens on, claimed for this process so
    that no other free_port() of the machine's tests gives it out while
    this process lives."""
    os.makedirs(PORT_CLAIMS, exist_ok=True)
    with open(os.path.join(PORT_CLAIMS, "lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when closed, or when the process dies
        for _ in range(PORT_TRIES):
            port = _unused_port()
            claim = os.path.join(PORT_CLAIMS, str(port))
            if not _claimed(claim):
                with open(claim, "w") as f:
                    f.write(str(os.getpid()))
                return port
    raise RuntimeError(f"no unclaimed free port in {PORT_TRIES} tries (claims in {PORT_CLAIMS})")


def raw_command(port, command, expect_end=b"\r\n", timeout=2.0, host="127.0.0.1", netns=None):
    """Sends one text command to a memcached and returns its reply."""
    with connect(host, port, timeout, netns) as s:
        s.sendall(command)
        reply = b""
        while not reply.endswith(expect_end):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


def wait_accepting(process, host, port, timeout=5.0, netns=None):
    """Waits until `process` accepts connections on host:port (in `netns` if
    given): True, or False once it exited or the timeout passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            connect(host, port, 0.2, netns).close()
            return True
        except OSError:
            time.sleep(0.01)
    return False


class Memcached:
    """One memcached process on a loopback port (a fixed one if given, else a
    free one). `hosts` lists the loopback addresses it listens on, all on the
    same port: one process can stand for many servers. With `netns` (a name
    of `ip netns`), it runs inside that network namespace, on `hosts`
    addresses there, and commands reach it there."""

    def __init__(self, port=None, memory_mb=16, hosts=("127.0.0.1",), netns=None, extra_args=()):
        self.port = port
        self.memory_mb = memory_mb
        self.hosts = list(hosts)
        self.netns = netns
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
            self.process = subprocess.Popen(in_netns(self.netns, args), stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
            if wait_accepting(self.process, self.hosts[-1], port, netns=self.netns):
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
        return raw_command(self.port, text, expect_end, host=self.hosts[0], netns=self.netns)

    def stats(self):
        """The server's `stats`, as a dict of strings."""
        reply = self.command(b"stats\r\n", b"END\r\n").decode()
        return dict(line.split(" ")[1:3] for line in reply.splitlines() if line.startswith("STAT "))
