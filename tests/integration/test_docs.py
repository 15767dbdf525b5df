"""What ships beside the programs stays true: man pages render cleanly, the
example configuration is valid."""

import glob
import os

from conftest import MCWATCHD, run

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def test_man_pages_render_without_warnings():
    pages = sorted(glob.glob(os.path.join(ROOT, "man", "*.[0-9]")))
    assert len(pages) >= 3
    for page in pages:
        result = run(["groff", "-man", "-ww", "-z", page])
        assert result.returncode == 0, page
        assert result.stderr == "", f"{page}: {result.stderr}"


def test_example_config_is_valid():
    result = run([MCWATCHD, "-t", "-c", os.path.join(ROOT, "etc", "mcwatchd.conf")])
    assert result.returncode == 0, result.stderr


def test_every_configuration_key_is_documented_and_in_the_example():
    import re
    with open(os.path.join(ROOT, "daemon", "config.cpp")) as f:
        keys = set(re.findall(r'key == "([a-z_]+)"', f.read())) - {"server"}
    assert {"state_file", "control_socket", "metrics_listen", "user", "admin_group"} <= keys
    with open(os.path.join(ROOT, "man", "mcwatchd.conf.5")) as f:
        page = f.read()
    with open(os.path.join(ROOT, "etc", "mcwatchd.conf")) as f:
        example = f.read()
    for key in sorted(keys):
        assert re.search(rf"^\.BR? {key}\b", page, re.M), f"{key} has no entry in mcwatchd.conf(5)"
        assert re.search(rf"^#?{key} = ", example, re.M), f"{key} is not in etc/mcwatchd.conf"


def test_every_mcctl_command_is_in_its_manual():
    import re
    from conftest import MCCTL
    usage = run([MCCTL, "--help"]).stdout
    commands = re.findall(r"^  ([a-z]+)\b", usage, re.M)
    assert {"status", "watch", "dump", "route", "drain", "undrain", "down", "up", "flush", "reload", "ping"} <= set(commands)
    with open(os.path.join(ROOT, "man", "mcctl.1")) as f:
        page = f.read()
    for command in commands:
        assert re.search(rf"^\.BI? {command}\b", page, re.M), f"mcctl {command} has no entry in mcctl(1)"
