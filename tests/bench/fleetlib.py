"""What the `detection` (detection.py) and `daemon` (daemon_cost.py) bench
sections share: the probe settings they compare, a small fleet of
memcached servers, the C client tests/bench/watch_client.c, and a plain
table printer."""

import os
import subprocess

import benchlib

# The shipped probe settings (etc/mcwatchd.conf), and the same at a 100 ms
# interval: the timeout keeps the shipped ratio (half the interval; the
# config wants it shorter than the interval).
PROFILES = {
    "defaults": {"probe_interval": "500ms", "probe_timeout": "250ms", "fail_after": 2, "recover_after": 3},
    "interval_100ms": {"probe_interval": "100ms", "probe_timeout": "50ms", "fail_after": 2, "recover_after": 3},
}


def profile_figures(settings):
    """A profile's settings as results.json numbers."""
    return {"probe_interval_ms": int(settings["probe_interval"][:-2]),
            "probe_timeout_ms": int(settings["probe_timeout"][:-2]),
            "fail_after": settings["fail_after"], "recover_after": settings["recover_after"]}


def profile_label(settings):
    return (f"{settings['probe_interval']}/{settings['probe_timeout']}, "
            f"fail {settings['fail_after']}/recover {settings['recover_after']}")


def load_average():
    """The 1-minute load average: on a shared machine, how much else ran."""
    return round(os.getloadavg()[0], 2)


def start_servers(procs, count=4):
    """`count` memcached processes, one loopback address each."""
    return [procs.add(benchlib.Memcached().start()) for _ in range(count)]


def servers_arg(addresses):
    """The server list of watch_client (libmemcached's "a:p,b:q")."""
    return ",".join(addresses)


class Client:
    """build/bench/watch_client (see watch_client.c for its two modes),
    stopped by pid however the section ends."""

    def __init__(self, ctx, args, env):
        self.process = subprocess.Popen([ctx.bench_tool("watch_client"), *args], env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    @property
    def pid(self):
        return self.process.pid

    def readline(self):
        """The client's next line ('' once it exited: it never blocks us
        longer than the client's own bounded run)."""
        return self.process.stdout.readline()

    def finish(self, timeout):
        """Closes its stdin (a held client leaves) and returns the rest of
        its output. (Not communicate(): it would read past what readline
        already buffered.)"""
        self.process.stdin.close()
        out = self.process.stdout.read()
        self.process.wait(timeout=timeout)
        return out

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream and not stream.closed:
                stream.close()


def print_table(title, header, rows):
    """Columns right-aligned but the first, as wide as their widest cell."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(title)
    for row in cells:
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
