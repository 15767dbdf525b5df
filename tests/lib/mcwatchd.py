"""A real mcwatchd and what mcctl says of its state file: the one definition
the integration tests (tests/integration/conftest.py) and the benchmarks
(tests/bench/benchlib.py) share."""

import json
import os
import signal
import subprocess

from memcached_server import in_netns
from processes import WaitTimeout, stop_process, wait_until


def config_text(state, servers, settings=None, routing=None, fleet=None):
    """An mcwatchd.conf: [mcwatchd] with state_file and `settings`, [routing]
    and [fleet] if given, and one `server =` line per address."""
    values = {"state_file": state}
    values.update(settings or {})
    lines = ["[mcwatchd]"] + [f"{k} = {v}" for k, v in values.items()]
    if routing:
        lines += ["[routing]"] + [f"{k} = {v}" for k, v in routing.items()]
    if fleet:
        lines += ["[fleet]"] + [f"{k} = {v}" for k, v in fleet.items()]
    lines += ["[servers]"] + [f"server = {a}" for a in servers]
    return "\n".join(lines) + "\n"


def write_config(path, state, servers, settings=None, routing=None, fleet=None):
    with open(path, "w") as out:
        out.write(config_text(state, servers, settings, routing, fleet))
    return path


def mcctl_status(mcctl, state, timeout=30):
    """`mcctl status --json` on a state file, parsed. mcctl exits 0 when every
    server is live, 1 when some is not, 2 when the file is stale (with its
    report) or unusable (missing or invalid: no report): the report in the
    first three cases, None in the last."""
    result = subprocess.run([mcctl, "-s", state, "status", "--json"], capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode == 2 and not result.stdout:
        return None
    return json.loads(result.stdout)


def server_states(report):
    """{address: state} of a status report ({} for None)."""
    return {s["address"]: s["state"] for s in report["servers"]} if report else {}


class Mcwatchd:
    """mcwatchd -f on a config file, its output appended to a log file; with
    `netns` (a name of `ip netns`), inside that network namespace (mcctl
    still runs here: it reads the state file and the control socket, which
    are files)."""

    def __init__(self, build, config, state, log, netns=None):
        self.mcwatchd = os.path.join(build, "mcwatchd")
        self.mcctl = os.path.join(build, "mcctl")
        self.config = config
        self.state = state
        self.log = log
        self.netns = netns
        self.process = None

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def log_text(self):
        with open(self.log) as f:
            return f.read()

    def start(self, timeout=5.0):
        """Starts it, and waits until the state file is its own (a
        predecessor's may still be there). Fails at once, with the end of
        its log, if it exits."""
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(in_netns(self.netns, [self.mcwatchd, "-c", self.config, "-f"]), stdout=log,
                                            stderr=log)
        wait_until(lambda: self.running() and (self.status() or {}).get("daemon", {}).get("pid") == self.pid,
                   timeout, "the daemon's state file")
        return self.process

    def running(self):
        """True while it runs; raises WaitTimeout with its log if it exited."""
        if self.process.poll() is not None:
            raise WaitTimeout(f"mcwatchd ({self.config}) exited {self.process.returncode}: {self.log_text()[-2000:]}")
        return True

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Stops it by pid (sig, then kill -9 after timeout); its exit status."""
        return stop_process(self.process, sig, timeout)

    def status(self, timeout=30):
        return mcctl_status(self.mcctl, self.state, timeout)

    def states(self):
        return server_states(self.status())

    def wait_states(self, expected, timeout=10.0, while_running=False, interval=0.02):
        """Waits until every address in `expected` has its state; returns the
        seconds waited. while_running: fail at once if the daemon exits."""
        def matches():
            states = self.states()
            return (not while_running or self.running()) and all(states.get(a) == s for a, s in expected.items())
        return wait_until(matches, timeout, f"states {expected}", interval)[1]

    def ctl(self, *args, timeout=30, **kwargs):
        """mcctl on this daemon's state file (its commands find the control
        socket beside it)."""
        return subprocess.run([self.mcctl, "-s", self.state, *args], capture_output=True, text=True,
                              timeout=timeout, **kwargs)
