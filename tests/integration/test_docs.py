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
