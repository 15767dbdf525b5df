"""mcctl's command line: -c, -s and -S mean the same for every command,
wherever they are written, and durations are written as in the config."""

import json
import os

from conftest import MCCTL, run


def env_without_state(tmp_path):
    # Where mcctl would look without -c: a file that is not there.
    return {**os.environ, "MCSHIM_STATE": str(tmp_path / "elsewhere" / "state")}


def test_dash_c_status_watch_and_dump_read_the_configs_state_file(fleet, tmp_path):
    fleet.add_servers(2)
    fleet.start_daemon()
    env = env_without_state(tmp_path)
    status = run([MCCTL, "-c", fleet.config, "status", "--json"], env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["daemon"]["pid"] == fleet.daemon.pid
    watch = run([MCCTL, "-c", fleet.config, "watch", "-n", "100ms", "--count", "1"], env=env)
    assert watch.returncode == 0, watch.stderr
    assert f"state {fleet.state}" in watch.stdout
    dump = run([MCCTL, "-c", fleet.config, "dump"], env=env)
    assert dump.returncode == 0, dump.stderr
    assert f"daemon_pid: {fleet.daemon.pid}\n" in dump.stdout
    # -s still names the file when both are given.
    other = run([MCCTL, "-c", fleet.config, "-s", str(tmp_path / "none"), "status"], env=env)
    assert other.returncode == 2 and str(tmp_path / "none") in other.stderr


def test_options_after_the_command_work(fleet, tmp_path):
    fleet.add_servers(1)
    fleet.start_daemon()
    env = env_without_state(tmp_path)
    after = run([MCCTL, "status", "-s", fleet.state], env=env)
    assert after.returncode == 0, after.stderr
    assert after.stdout.startswith("1 of 1 live\n")
    assert run([MCCTL, "ping", "-c", fleet.config], env=env).returncode == 0
    assert run([MCCTL, "watch", "--count", "1", "-c", fleet.config], env=env).returncode == 0


def test_a_bad_command_line_gets_one_line_naming_the_problem():
    for args, message in [(["status", "--bogus"], "status: unknown argument '--bogus'"),
                          (["-x", "status"], "unknown option '-x'"),
                          (["status", "-s"], "option -s needs a value"),
                          (["watch", "--count", "many"], "watch --count 'many': expected a whole number above 0"),
                          (["frobnicate"], "unknown command 'frobnicate'")]:
        result = run([MCCTL, *args])
        assert result.returncode == 64, args
        assert result.stderr == f"mcctl: {message} (mcctl --help lists commands and options)\n", args


def test_watch_takes_a_fractional_interval_like_the_config(fleet):
    fleet.add_servers(1)
    fleet.start_daemon()
    result = fleet.ctl("watch", "-n", "1.5s", "--count", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("1 of 1 live\n") == 2
    half = fleet.ctl("watch", "-n", "0.5", "--count", "1")
    assert half.returncode == 0, half.stderr
    finer = fleet.ctl("watch", "-n", "0.5ms")
    assert finer.returncode == 64
    assert "bad duration '0.5ms': finer than a millisecond" in finer.stderr
