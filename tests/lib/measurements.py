"""Measurements a test keeps for tests/run to print at the end of a run:
one "name: value" line each in BUILD/measurements.txt."""

import os


def record(build, name, text):
    """Appends "name: text" to the build's measurements."""
    with open(os.path.join(build, "measurements.txt"), "a") as out:
        out.write(f"{name}: {text}\n")
