"""free_port() (tests/lib/memcached_server.py) under tests/run's parallel
workers: a port it handed to one process is never handed to another while
the first lives, though the kernel may offer it again (the port is free
until that process's server binds it); once that process is gone, its
ports are free again."""

import subprocess
import sys

import memcached_server


def test_a_port_claimed_by_a_live_process_is_not_given_to_another_until_it_exits(monkeypatch, tmp_path):
    # Claims of this test's own, beside no other run's.
    monkeypatch.setattr(memcached_server, "PORT_CLAIMS", str(tmp_path))
    # Another test process takes a port and lives on (as a worker whose
    # memcached has not bound it yet).
    other = subprocess.Popen([sys.executable, "-c",
                              "import sys; sys.path.insert(0, sys.argv[1]); import memcached_server as m;"
                              "m.PORT_CLAIMS = sys.argv[2]; print(m.free_port(), flush=True); sys.stdin.read()",
                              memcached_server.__file__.rsplit("/", 1)[0], str(tmp_path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        taken = int(other.stdout.readline())
        # The kernel offers that port first, then another.
        offers = iter([taken, 1])
        monkeypatch.setattr(memcached_server, "_unused_port", lambda: next(offers))
        assert memcached_server.free_port() == 1
    finally:
        other.stdin.close()
        assert other.wait(timeout=10) == 0
    offers = iter([taken])
    assert memcached_server.free_port() == taken
