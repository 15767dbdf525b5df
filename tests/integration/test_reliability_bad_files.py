"""Whatever lies at the state path, readers refuse what they cannot trust,
say why, and never crash or hang: mcctl exits 2 naming the problem; a C API
client places keys natively, flagged stale, and says why (with MCSHIM_DEBUG,
on stderr)."""

import os
import random
import stat
import struct
import subprocess

import pytest

from conftest import MCCTL, run, wait_until
from reliability import CAPI_ROUTE, STATE_WRITER_DRIVE, Background

HEADER = 320
SLOT = 640
SERVERS = "127.0.0.1:20000,127.0.0.1:20001,127.0.0.1:20002"  # as state_writer_drive configures them


@pytest.fixture(scope="module")
def valid_image(tmp_path_factory):
    """The bytes of a state file for 3 servers, as the writer publishes it."""
    directory = tmp_path_factory.mktemp("valid")
    path = str(directory / "run" / "state")
    writer = Background([STATE_WRITER_DRIVE, path, "--servers", "3"], str(directory / "writer.out"))
    wait_until(lambda: "published" in writer.text() or not writer.running(), 10, "the writer's file")
    assert writer.stop() == 0, writer.text()
    with open(path, "rb") as f:
        image = f.read()
    assert len(image) == HEADER + 3 * SLOT
    return image


def patched(image, offset, fmt, value):
    data = bytearray(image)
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


def write(path, data, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def random_bytes(size):
    return random.Random(size).randbytes(size)


# name -> (how to make it, what the reader says)
CASES = {
    "empty": (lambda p, img: write(p, b""), f"0 bytes, shorter than its {HEADER}-byte header"),
    "a few bytes": (lambda p, img: write(p, b"MCWATCH"), f"7 bytes, shorter than its {HEADER}-byte header"),
    "random 400 bytes": (lambda p, img: write(p, random_bytes(400)), "bad magic: not an mcwatch state file"),
    "random 4 KiB": (lambda p, img: write(p, random_bytes(4096)), "bad magic: not an mcwatch state file"),
    "random 1 MiB": (lambda p, img: write(p, random_bytes(1 << 20)), "bad magic: not an mcwatch state file"),
    "right magic, wrong version": (lambda p, img: write(p, patched(img, 8, "<I", 4)),
                                   "format version 4, this reader knows version 3"),
    "a file size that lies": (lambda p, img: write(p, patched(img, 24, "<Q", len(img) + SLOT)),
                              f"header says {HEADER + 4 * SLOT} bytes where its server counts make {HEADER + 3 * SLOT}"),
    "cut short": (lambda p, img: write(p, img[:1000]), f"1000 bytes, header says {HEADER + 3 * SLOT}"),
    "a server count beyond the file": (
        lambda p, img: write(p, patched(patched(img, 20, "<I", 100), 24, "<Q", HEADER + 100 * SLOT)),
        f"{HEADER + 3 * SLOT} bytes, header says {HEADER + 100 * SLOT}"),
    "a server count beyond any file": (lambda p, img: write(p, patched(img, 20, "<I", 5000)),
                                       "5000 servers, more than 4096"),
    "one static byte changed": (lambda p, img: write(p, patched(img, HEADER + 5, "<B", ord("X"))),
                                "static digest mismatch"),
    "writable by others": (lambda p, img: write(p, img, 0o666), "with mode 0666: only the daemon may write it"),
    "writable by group": (lambda p, img: write(p, img, 0o664), "with mode 0664: only the daemon may write it"),
    "a directory": (lambda p, img: os.mkdir(p), "is not a regular file"),
}


def make_symlink(path, image):
    target = path + ".target"
    write(target, image)  # a perfectly good file, behind a link
    os.symlink(target, path)


CASES["a symbolic link"] = (make_symlink, "is a symbolic link (refused)")


def make_foreign(path, image):
    write(path, image)
    os.chown(path, 65534, 65534)  # nobody: neither root, nor us, nor the directory's owner


if os.geteuid() == 0:
    CASES["owned by another user"] = (make_foreign, "owned by uid 65534, in a directory root did not give that user")


def check_mcctl(path, why):
    for command in (["status"], ["status", "--json"], ["dump"], ["route", "foo"]):
        result = run([MCCTL, "-s", path, *command])
        assert result.returncode == 2, (command, result)
        assert path in result.stderr and why in result.stderr, (command, result.stderr)
        assert result.stdout == "", (command, result.stdout)
    watch = run([MCCTL, "-s", path, "watch", "--count", "1"])
    assert watch.returncode == 2
    assert why in watch.stdout


def check_client(path, why):
    """A C API client places natively, says stale, and tells why."""
    env = dict(os.environ, MCSHIM_DEBUG="1")
    result = run([CAPI_ROUTE, "--state", path, "--servers", SERVERS, "foo", "user:42"], env=env)
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert " rc=0 " in line and "flags=stale " in line and " usable=0 " in line, line
        assert why in line, line
        native = line.split(" native=")[1].split()[0]
        target = line.split(" target=")[1].split()[0]
        assert native == target  # native placement
    assert f"mcshim: state file {path}" in result.stderr and why in result.stderr
    assert "placing keys natively" in result.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_unusable_state_file_is_refused_with_its_reason(tmp_path, valid_image, case):
    make, why = CASES[case]
    path = str(tmp_path / "state")
    make(path, valid_image)
    check_mcctl(path, why)
    check_client(path, why)


def test_the_valid_image_itself_is_accepted(tmp_path, valid_image):
    # The control for every case above: the same bytes unchanged are read.
    path = str(tmp_path / "state")
    write(path, valid_image)
    result = run([MCCTL, "-s", path, "dump"])
    assert result.returncode == 0, result.stderr
    assert "slot_count: 3" in result.stdout


def test_a_fifo_at_the_state_path_is_refused_without_blocking(tmp_path):
    # Opening a FIFO for reading waits for a writer: a client would hang in
    # mcshim_open (and the shim in the middle of a get).
    path = str(tmp_path / "state")
    os.mkfifo(path, 0o644)
    try:
        result = subprocess.run([MCCTL, "-s", path, "status"], capture_output=True, text=True, timeout=5)
        client = subprocess.run([CAPI_ROUTE, "--state", path, "--servers", SERVERS, "foo"], capture_output=True,
                                text=True, timeout=5)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{e.cmd[0]} blocked on a FIFO")
    assert result.returncode == 2 and "is not a regular file" in result.stderr
    assert "flags=stale " in client.stdout and "is not a regular file" in client.stdout
    assert stat.S_ISFIFO(os.lstat(path).st_mode)
