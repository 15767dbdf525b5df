"""make install into a staging directory, as a package build does: the files
a user gets, the shared library's names, pkg-config, a program built against
the staged copy, the systemd unit, and make uninstall."""

import os
import shutil
import subprocess

import pytest

from conftest import BUILD, run

pytestmark = pytest.mark.serial  # make in the build directory the other tests run from

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

EXPECTED = [
    "etc/mcwatchd.conf",
    "usr/bin/mcctl",
    "usr/include/mcshim.h",
    "usr/lib/libmcshim.so",
    "usr/lib/libmcshim.so.1",
    "usr/lib/libmcshim.so.1.0.0",
    "usr/lib/pkgconfig/mcshim.pc",
    "usr/lib/systemd/system/mcwatchd.service",
    "usr/sbin/mcwatchd",
    "usr/share/doc/mcwatch/mcwatchd.conf.example",
    "usr/share/man/man1/mcctl.1",
    "usr/share/man/man3/mcshim.3",
    "usr/share/man/man5/mcwatchd.conf.5",
    "usr/share/man/man8/mcwatchd.8",
]


def make(*args):
    # The build directory as `make test` named it, relative like the .d files in it.
    build = os.path.relpath(BUILD, ROOT)
    # ...and with its sanitizers, should anything be out of date in it.
    name = os.path.basename(build)
    san = [f"SAN={name[len('build-san-'):].replace('-', ',')}"] if name.startswith("build-san-") else []
    result = subprocess.run(["make", "--no-print-directory", f"BUILD={build}", *san, *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def listing(stage):
    found = []
    for directory, _, files in os.walk(stage):
        found += [os.path.relpath(os.path.join(directory, f), stage) for f in files]
    return sorted(found)


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    stage = tmp_path_factory.mktemp("stage")
    make("install", "PREFIX=/usr", f"DESTDIR={stage}")
    return stage


def test_staged_install_lists_every_file(stage):
    assert listing(stage) == EXPECTED
    lib = stage / "usr/lib"
    assert os.readlink(lib / "libmcshim.so") == "libmcshim.so.1"
    assert os.readlink(lib / "libmcshim.so.1") == "libmcshim.so.1.0.0"
    soname = run(["objdump", "-p", str(lib / "libmcshim.so.1.0.0")]).stdout
    assert "SONAME               libmcshim.so.1" in soname
    for program in ["usr/bin/mcctl", "usr/sbin/mcwatchd"]:
        assert os.access(stage / program, os.X_OK)
    assert run([str(stage / "usr/sbin/mcwatchd"), "-t", "-c", str(stage / "etc/mcwatchd.conf")]).returncode == 0
    unit = (stage / "usr/lib/systemd/system/mcwatchd.service").read_text()
    assert "ExecStart=/usr/sbin/mcwatchd -f -c /etc/mcwatchd.conf" in unit
    assert "ExecReload=/usr/bin/mcctl -c /etc/mcwatchd.conf reload" in unit
    assert not [line for line in unit.splitlines() if "/usr/local" in line and not line.startswith("#")]


def test_a_program_builds_against_the_staged_library_with_pkg_config(stage, tmp_path):
    env = {**os.environ, "PKG_CONFIG_PATH": str(stage / "usr/lib/pkgconfig"), "PKG_CONFIG_SYSROOT_DIR": str(stage)}
    flags = run(["pkg-config", "--cflags", "--libs", "mcshim"], env=env)
    assert flags.returncode == 0, flags.stderr
    assert flags.stdout.split() == [f"-I{stage}/usr/include", f"-L{stage}/usr/lib", "-lmcshim"]
    assert run(["pkg-config", "--modversion", "mcshim"], env=env).stdout.strip() == "0.1.0"
    source = tmp_path / "routes.c"
    source.write_text(
        '#include <mcshim.h>\n#include <stdio.h>\n#include <string.h>\n'
        'int main(void) {\n'
        '    const char *servers[] = {"10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"};\n'
        '    mcshim_t *shim = mcshim_open("/nonexistent/state");\n'
        '    mcshim_route_t r;\n'
        '    if (mcshim_set_servers(shim, servers, NULL, 3, MCSHIM_KETAMA, MCSHIM_HASH_MD5) != MCSHIM_OK) return 1;\n'
        '    if (mcshim_route(shim, "foo", 3, &r) != MCSHIM_OK) return 1;\n'
        '    printf("%d %s\\n", r.target, (r.flags & MCSHIM_ROUTE_STALE) ? "stale" : "fresh");\n'
        '    mcshim_close(shim);\n'
        '    return 0;\n'
        '}\n')
    program = tmp_path / "routes"
    # A library built with SAN=... needs its sanitizer runtime in the program too.
    needed = run(["objdump", "-p", str(stage / "usr/lib/libmcshim.so.1.0.0")]).stdout
    sanitizers = [name for lib, name in [("libasan", "address"), ("libubsan", "undefined"), ("libtsan", "thread")]
                  if f"NEEDED               {lib}" in needed]
    sanitize = [f"-fsanitize={','.join(sanitizers)}"] if sanitizers else []
    built = run(["cc", *sanitize, "-o", str(program), str(source), *flags.stdout.split()])
    assert built.returncode == 0, built.stderr
    ran = run([str(program)], env={**os.environ, "LD_LIBRARY_PATH": str(stage / "usr/lib")})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "1 stale\n"  # foo -> 10.0.0.2 (libmemcached's own placement); no state file
    needed = run(["objdump", "-p", str(program)]).stdout
    assert "NEEDED               libmcshim.so.1" in needed


def test_the_installed_unit_passes_systemd_analyze(stage, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    # verify wants the programs and man pages it names to exist: point them at the stage.
    unit = (stage / "usr/lib/systemd/system/mcwatchd.service").read_text()
    unit = unit.replace("/usr/sbin/", f"{stage}/usr/sbin/").replace("/usr/bin/", f"{stage}/usr/bin/")
    copy = tmp_path / "mcwatchd.service"
    copy.write_text(unit)
    env = {**os.environ, "MANPATH": str(stage / "usr/share/man")}
    result = run(["systemd-analyze", "verify", str(copy)], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mcwatchd.service" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_uninstall_leaves_only_the_operators_configuration(tmp_path):
    stage = tmp_path / "stage"
    make("install", "PREFIX=/usr", f"DESTDIR={stage}")
    (stage / "etc/mcwatchd.conf").write_text("[servers]\nserver = 10.0.0.1:11211\n")
    make("install", "PREFIX=/usr", f"DESTDIR={stage}")  # again: the edited configuration stays
    assert (stage / "etc/mcwatchd.conf").read_text() == "[servers]\nserver = 10.0.0.1:11211\n"
    result = make("uninstall", "PREFIX=/usr", f"DESTDIR={stage}")
    assert listing(stage) == ["etc/mcwatchd.conf"]
    assert f"kept {stage}/etc/mcwatchd.conf" in result.stdout
