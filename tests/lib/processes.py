"""Waiting for a condition, and the processes a test or a benchmark starts:
stopped by their pid (a signal, then kill -9 if they outlive a timeout),
never by name. Shared by tests/integration/ and tests/bench/."""

import os
import signal
import subprocess
import sys
import time


class WaitTimeout(AssertionError):
    """A condition that did not come true in time (an AssertionError, so
    that pytest reports it as a failed test)."""


def wait_until(predicate, timeout=10.0, what="condition", interval=0.02):
    """Polls predicate until it returns a true value; raises WaitTimeout after
    timeout seconds. Returns (value, seconds waited)."""
    start = time.monotonic()
    deadline = start + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last, time.monotonic() - start
        time.sleep(interval)
    raise WaitTimeout(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def stop_process(process, sig=signal.SIGTERM, timeout=5.0):
    """Sends `sig` to a subprocess.Popen still running, waits `timeout`
    seconds, then kills it. Returns its exit status (negative: the signal
    that ended it), None without a process."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class Background:
    """A process whose stdout and stderr go to a file, read while it runs;
    stopped by its pid."""

    def __init__(self, args, out_path, env=None):
        self.out_path = out_path
        self.out = open(out_path, "w")
        self.process = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self):
        return self.process.pid

    def text(self):
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def lines(self):
        return self.text().splitlines()

    def running(self):
        return self.process.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends `sig` (if still running) and waits; returns the exit status
        (negative: the signal that ended it)."""
        status = stop_process(self.process, sig, timeout)
        self.out.close()
        return status

    def wait(self, timeout):
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.process.args[0]} still running after {timeout}s")
        self.out.close()
        return self.process.returncode


class Processes:
    """Everything a run starts (anything with a stop()), stopped in reverse
    order when the block ends, however it ends."""

    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)
        return item

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for item in reversed(self.items):
            try:
                item.stop()
            except Exception as error:  # keep stopping the others
                print(f"could not stop {item!r}: {error}", file=sys.stderr)


def pid_alive(pid):
    """Whether a process with this pid exists (another user's counts)."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
