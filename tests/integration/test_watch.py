"""`mcctl watch` on a real terminal (a pty): it redraws in place, lists
transitions as they happen, redraws for a new size, and leaves the terminal
as it found it on Ctrl-C."""

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time

from conftest import MCCTL

ENTER = b"\x1b[?1049h\x1b[?25l"  # alternate screen, cursor hidden
LEAVE = b"\x1b[?25h\x1b[?1049l"


def set_size(fd, rows, columns):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


class Screen:
    """What mcctl wrote to the pty so far."""

    def __init__(self, fd):
        self.fd = fd
        self.data = b""

    def read_until(self, predicate, timeout=15.0, what="output"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.data):
                return
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # EIO: the program exited and closed the pty
                    break
                if not chunk:
                    break
                self.data += chunk
        assert predicate(self.data), f"no {what} in {self.data[-2000:]!r}"


def frames(data):
    """The text of each redraw: the parts after 'cursor home'."""
    return data.split(b"\x1b[H")[1:]


def visible(frame):
    """A frame's lines without escape sequences."""
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", frame).decode(errors="replace")
    return [line.rstrip("\r") for line in text.split("\n")]


def test_watch_redraws_in_place_lists_transitions_and_exits_cleanly(fleet):
    fleet.add_servers(2)
    fleet.start_daemon()
    victim = fleet.servers[1]
    controller, terminal = pty.openpty()
    set_size(terminal, 30, 120)
    watch = subprocess.Popen([MCCTL, "-s", fleet.state, "watch", "-n", "100ms"], stdin=terminal, stdout=terminal,
                             stderr=terminal, start_new_session=True, env={**os.environ, "TERM": "xterm"})
    os.close(terminal)
    screen = Screen(controller)
    try:
        screen.read_until(lambda d: d.startswith(ENTER) and len(frames(d)) >= 2, what="two redraws")
        first = visible(frames(screen.data)[0])
        assert first[0].startswith("mcctl watch: every 100ms, Ctrl-C to quit")
        assert first[1] == "2 of 2 live"
        assert any(line.startswith("SERVER ") for line in first)
        # In place: each redraw starts at home and clears what is left below.
        assert all(frame.endswith(b"\x1b[J") for frame in frames(screen.data)[1:-1])

        victim.kill()
        screen.read_until(lambda d: f"{victim.address} live -> dead: connection refused".encode() in d,
                          what="the transition")
        last = visible(frames(screen.data)[-1])
        assert "CHANGES" in last

        # A narrower terminal: cleared and redrawn at once, lines cut to fit.
        mark = len(screen.data)
        set_size(controller, 20, 40)
        os.killpg(watch.pid, signal.SIGWINCH)
        screen.read_until(lambda d: b"\x1b[2J" in d[mark:], what="a full redraw after the resize")
        screen.read_until(lambda d: len(frames(d[mark:])) >= 2, what="a redraw at the new size")
        narrow = visible(frames(screen.data[mark:])[-1])
        assert all(len(line) <= 40 for line in narrow), narrow
        assert len(narrow) <= 20

        os.killpg(watch.pid, signal.SIGINT)
        assert watch.wait(timeout=10) == 0
        screen.read_until(lambda d: d.endswith(LEAVE), what="the terminal restored")
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
        os.close(controller)


def test_watch_without_a_terminal_prints_tables_and_changes_for_logs(fleet):
    fleet.add_servers(2)
    fleet.start_daemon()
    victim = fleet.servers[0]
    watch = subprocess.Popen([MCCTL, "-s", fleet.state, "watch", "-n", "100ms"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    output = Screen(watch.stdout.fileno())
    try:
        output.read_until(lambda d: d.count(b"SERVER ") >= 1, what="a first table")
        victim.kill()
        output.read_until(lambda d: f"{victim.address} live -> dead".encode() in d, what="the transition")
    finally:
        watch.send_signal(signal.SIGINT)
        rest, _ = watch.communicate(timeout=10)
    assert watch.returncode == 0
    out = (output.data + rest).decode()
    assert "\x1b[" not in out
    assert re.search(rf"^\d\d:\d\d:\d\d  {re.escape(victim.address)} live -> dead: connection refused$", out, re.M)
    assert out.count("SERVER ") >= 2
