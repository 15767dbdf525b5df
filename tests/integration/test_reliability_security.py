"""The state file's security: mcwatchd creates it with safe modes, never
follows a symbolic link and never writes into a file it did not create;
readers map it read-only; a setuid client ignores MCSHIM_STATE."""

import os
import shutil
import signal
import stat
import struct
import subprocess
import tempfile

import pytest

from conftest import MCCTL, MCWATCHD, run, wait_until
from reliability import CAPI_ROUTE, STATE_READER_CHECK, Background

NOBODY = 65534
SUPERSEDED_OFFSET = 168  # Header::superseded

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: files of other users, setuid")


@pytest.fixture
def open_dir():
    """A directory every user may traverse (pytest's tmp_path is 0700)."""
    path = tempfile.mkdtemp(prefix="mcwatch-security-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_daemon(fleet, **popen):
    with open(fleet.log, "a") as log:
        fleet.daemon = subprocess.Popen([MCWATCHD, "-c", fleet.config, "-f"], stdout=log, stderr=log, **popen)
    wait_until(lambda: (fleet.status() or {}).get("daemon", {}).get("pid") == fleet.daemon.pid, 10,
               "the daemon's state file")


def as_nobody(args, **kwargs):
    return run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *args], **kwargs)


def refused_start(fleet):
    """Starts mcwatchd expecting it to refuse: returns its stderr."""
    result = run([MCWATCHD, "-c", fleet.config, "-f"])
    assert result.returncode == 1, result
    return result.stderr


@needs_root
@pytest.mark.parametrize("umask", [
    0o022, 0o000,
    0o077,
])
def test_the_state_directory_is_not_writable_by_others_and_the_file_is_readable_by_all(fleet, open_dir, umask):
    fleet.add_servers(1)
    fleet.state = os.path.join(open_dir, "run", "state")  # the daemon creates run/
    fleet.write_config()
    start_daemon(fleet, umask=umask)
    assert stat.S_IMODE(os.stat(fleet.state).st_mode) == 0o644
    directory_mode = stat.S_IMODE(os.stat(os.path.dirname(fleet.state)).st_mode)
    assert directory_mode & 0o022 == 0, oct(directory_mode)
    # A client of another user reads it.
    assert as_nobody([MCCTL, "-s", fleet.state, "status"]).returncode == 0


def test_a_symbolic_link_at_the_state_path_is_replaced_not_followed(fleet, tmp_path):
    fleet.add_servers(1)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.makedirs(os.path.dirname(fleet.state), mode=0o755)
    os.symlink(victim, fleet.state)
    fleet.write_config()
    fleet.start_daemon()
    assert victim.read_bytes() == b"precious"
    assert stat.S_ISREG(os.lstat(fleet.state).st_mode)


def test_a_symbolic_link_for_the_state_directory_or_the_lock_is_refused(fleet, tmp_path):
    fleet.add_servers(1)
    real_directory = tmp_path / "elsewhere"
    real_directory.mkdir(mode=0o755)
    os.symlink(real_directory, os.path.dirname(fleet.state))
    fleet.write_config()
    assert "is not a directory (symbolic links are refused)" in refused_start(fleet)
    assert os.listdir(real_directory) == []

    os.unlink(os.path.dirname(fleet.state))
    os.makedirs(os.path.dirname(fleet.state), mode=0o755)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.symlink(victim, fleet.state + ".lock")
    assert "lock" in refused_start(fleet)
    assert victim.read_bytes() == b"precious"
    assert not os.path.exists(fleet.state)


def test_a_state_directory_writable_by_others_is_refused(fleet):
    fleet.add_servers(1)
    os.makedirs(os.path.dirname(fleet.state))
    os.chmod(os.path.dirname(fleet.state), 0o777)
    fleet.write_config()
    assert "is writable by others (mode 0777): refusing to publish there" in refused_start(fleet)
    assert not os.path.exists(fleet.state)


@needs_root
def test_a_file_the_daemon_did_not_create_is_replaced_and_never_written(fleet, tmp_path):
    fleet.add_servers(1)
    fleet.write_config()
    fleet.start_daemon()
    fleet.stop_daemon(signal.SIGKILL)
    with open(fleet.state, "rb") as f:
        mcwatch_file = f.read()
    keep = str(tmp_path / "keep")  # a second name for the old file, to look at it afterwards

    # Another user's file that looks like ours: replaced, not marked.
    os.unlink(fleet.state)
    with open(fleet.state, "wb") as f:
        f.write(mcwatch_file)
    os.chown(fleet.state, NOBODY, NOBODY)
    os.link(fleet.state, keep)
    fleet.start_daemon()
    with open(keep, "rb") as f:
        assert f.read() == mcwatch_file  # not a byte changed: superseded stays 0
    assert os.stat(fleet.state).st_uid == os.geteuid()
    fleet.stop_daemon(signal.SIGKILL)
    os.unlink(keep)

    # Garbage of our own: replaced, not touched either.
    os.unlink(fleet.state)
    with open(fleet.state, "wb") as f:
        f.write(b"not a state file" * 100)
    os.link(fleet.state, keep)
    fleet.start_daemon()
    with open(keep, "rb") as f:
        assert f.read() == b"not a state file" * 100
    fleet.stop_daemon(signal.SIGKILL)
    os.unlink(keep)

    # The control: a predecessor's file (ours, valid) is marked superseded.
    os.link(fleet.state, keep)
    fleet.start_daemon()
    with open(keep, "rb") as f:
        assert struct.unpack_from("<I", f.read(), SUPERSEDED_OFFSET)[0] == 1


def mappings_of(pid, path):
    with open(f"/proc/{pid}/maps") as f:
        return [line.split()[1] for line in f if path in line]


def test_readers_map_the_state_file_read_only(fleet, tmp_path):
    fleet.add_servers(2)
    fleet.start_daemon()
    reader = Background([STATE_READER_CHECK, fleet.state, "--mode", "daemon", "--seconds", "60"],
                        str(tmp_path / "reader.out"))
    client = Background([CAPI_ROUTE, "--state", fleet.state, "--servers",
                         ",".join(m.address for m in fleet.servers), "--loop", "60"], str(tmp_path / "client.out"))
    try:
        wait_until(lambda: "mapped" in reader.text() and "usable=1" in client.text(), 10, "both to map the file")
        for process in (reader, client):
            permissions = mappings_of(process.pid, fleet.state)
            assert permissions, f"{fleet.state} not mapped by {process.pid}"
            assert all(p.startswith("r-") for p in permissions), permissions
    finally:
        assert reader.stop() == 0
        assert client.stop() == 0


@needs_root
def test_a_setuid_client_ignores_MCSHIM_STATE(fleet, open_dir):
    if os.statvfs(open_dir).f_flag & os.ST_NOSUID:
        pytest.skip(f"{open_dir} is on a nosuid file system")
    fleet.add_servers(1)
    fleet.state = os.path.join(open_dir, "run", "state")
    fleet.write_config()
    fleet.start_daemon()
    plain = os.path.join(open_dir, "capi_route")
    setuid = os.path.join(open_dir, "capi_route_setuid")
    shutil.copy(CAPI_ROUTE, plain)
    shutil.copy(CAPI_ROUTE, setuid)
    os.chmod(plain, 0o755)
    os.chmod(setuid, 0o4755)  # root's, setuid: secure-execution mode when nobody runs it
    env = dict(os.environ, MCSHIM_STATE=fleet.state)
    args = ["--servers", fleet.servers[0].address, "foo"]

    control = as_nobody([plain, *args], env=env)
    assert "usable=1" in control.stdout, control  # MCSHIM_STATE is honoured...
    # ...but not by a setuid program, which reads the default path: run it where
    # that path is empty, whatever this host's own mcwatchd publishes there.
    secure = run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                  'mount -t tmpfs mcwatch-test /run && exec "$@"', "sh",
                  "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", setuid, *args], env=env)
    assert secure.returncode == 0, secure
    assert "usable=0" in secure.stdout
    assert fleet.state not in secure.stdout
    assert "/run/mcwatchd/state" in secure.stdout, secure.stdout


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("held", flush=True)
time.sleep(30)
"""


def hold_lock(path, *prefix):
    """A process that flocks `path` through a read-only descriptor; returns it
    and the first line it printed ("held", or nothing if it could not)."""
    holder = subprocess.Popen([*prefix, "/usr/bin/python3", "-c", HOLD_LOCK, path], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    return holder, holder.stdout.readline().strip()


@needs_root
def test_another_user_holding_the_lock_file_read_only_cannot_block_a_restart(fleet, open_dir):
    fleet.add_servers(1)
    fleet.state = os.path.join(open_dir, "run", "state")
    fleet.write_config()
    start_daemon(fleet)
    lock = fleet.state + ".lock"
    fleet.stop_daemon(signal.SIGKILL)  # a crash: the lock is free until the restart
    holder, said = hold_lock(lock, "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
    try:
        restarted = run([MCWATCHD, "-c", fleet.config, "-t"])  # same config, still valid
        assert restarted.returncode == 0
        with open(fleet.log, "a") as log:
            fleet.daemon = subprocess.Popen([MCWATCHD, "-c", fleet.config, "-f"], stdout=log, stderr=log)
        wait_until(lambda: fleet.daemon.poll() is not None or
                   (fleet.status() or {}).get("daemon", {}).get("pid") == fleet.daemon.pid, 10, "the restart")
        assert fleet.daemon.poll() is None, fleet.log_text()  # not blocked
        assert said == ""  # nobody could not even open it
        assert stat.S_IMODE(os.stat(lock).st_mode) == 0o600
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_held_by_something_else_is_named_for_what_holds_it(fleet):
    fleet.add_servers(1)
    fleet.start_daemon()
    first = fleet.daemon.pid
    fleet.stop_daemon(signal.SIGKILL)
    holder, said = hold_lock(fleet.state + ".lock")
    try:
        assert said == "held"
        why = refused_start(fleet)
        assert f"lock {fleet.state}.lock is held by pid {holder.pid} (python3, uid {os.geteuid()}), " \
               f"not by an mcwatchd publishing {fleet.state}" in why
        assert f"pid {first}" not in why
    finally:
        holder.kill()
        holder.wait()


@needs_root
def test_a_state_directory_another_user_made_in_a_shared_directory_is_refused_by_root(fleet, open_dir):
    fleet.add_servers(1)
    fleet.write_config({"stale_after": "1h"})
    fleet.start_daemon()
    os.chmod(open_dir, 0o1777)  # like /tmp: anyone may make a directory here
    genuine = os.path.join(open_dir, "genuine")
    shutil.copy(fleet.state, genuine)
    planted = os.path.join(open_dir, "mcwatchd", "state")
    made = as_nobody(["/usr/bin/python3", "-c",
                      "import os, shutil, sys; os.mkdir(os.path.dirname(sys.argv[2]), 0o755); "
                      "shutil.copy(sys.argv[1], sys.argv[2]); os.chmod(sys.argv[2], 0o644)",
                      genuine, planted])
    assert made.returncode == 0, made.stderr
    assert os.stat(planted).st_uid == NOBODY
    result = run([MCCTL, "-s", planted, "status"])  # root, following nobody's file
    assert result.returncode == 2, result.stdout
    assert f"state file {planted}: owned by uid {NOBODY}, in a directory root did not give that user" \
        in result.stderr
    # Its own user may still read it, and a file in a directory of root's is fine for all.
    assert as_nobody([MCCTL, "-s", planted, "status"]).returncode == 0
    assert run([MCCTL, "-s", fleet.state, "status"]).returncode == 0


@needs_root
def test_a_root_file_in_a_directory_another_user_owns_is_refused(fleet, open_dir):
    fleet.add_servers(1)
    fleet.write_config({"stale_after": "1h"})
    fleet.start_daemon()
    theirs = os.path.join(open_dir, "theirs")
    os.mkdir(theirs, 0o755)
    os.chown(theirs, NOBODY, NOBODY)
    copy = os.path.join(theirs, "state")
    shutil.copy(fleet.state, copy)  # root's file, in nobody's directory
    result = run([MCCTL, "-s", copy, "status"])
    assert result.returncode == 2, result.stdout
    assert f"its directory {theirs} belongs to uid {NOBODY} with mode 0755" in result.stderr
