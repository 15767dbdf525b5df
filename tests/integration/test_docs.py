"""What ships beside the programs stays true: man pages render cleanly, the
example configuration is valid, the design document names only tests that
exist, and the documents point at each other, not outside the tree."""

import glob
import os
import re

from conftest import MCWATCHD, Memcached, run

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
DESIGN = os.path.join(ROOT, "docs", "DESIGN.md")


def read(*path):
    with open(os.path.join(ROOT, *path)) as f:
        return f.read()


def test_man_pages_render_without_warnings():
    pages = sorted(glob.glob(os.path.join(ROOT, "man", "*.[0-9]")))
    assert len(pages) >= 3
    for page in pages:
        # As groff's default device, and as man(1) renders it on an 80-column
        # terminal (MANWIDTH=80: a line length of 78 ens), where a word too
        # long for the line (a test name, say) makes troff warn.
        for device in (["-ww"], ["-ww", "-Tutf8", "-rLL=78n"]):
            result = run(["groff", "-man", "-z", *device, page])
            assert result.returncode == 0, page
            assert result.stderr == "", f"{page} ({' '.join(device)}): {result.stderr}"


def test_man_pages_state_guarantees_without_naming_tests():
    for page in sorted(glob.glob(os.path.join(ROOT, "man", "*.[0-9]"))):
        with open(page) as f:
            names = re.findall(r"\btest_[a-z0-9_]+", f.read())
        assert names == [], f"{page} names tests ({names[:3]}): state the guarantee, docs/DESIGN.md names the test"
    assert "docs/DESIGN.md" in read("man", "mcwatchd.8")


def test_design_document_names_only_tests_that_exist():
    text = read("docs", "DESIGN.md")
    for section in ("## Guarantees", "## Known gaps", "## The state file", "## libmemcached facts"):
        assert section in text, f"docs/DESIGN.md lost its section {section!r}"
    named = re.findall(r"`(tests/[\w./-]+)(?:::(\w+))?`", text)
    assert len(named) >= 30, f"docs/DESIGN.md names only {len(named)} tests"
    for path, function in named:
        assert os.path.exists(os.path.join(ROOT, path)), f"docs/DESIGN.md names {path}, which does not exist"
        if function:
            assert re.search(rf"^def {function}\(", read(path), re.M), \
                f"docs/DESIGN.md names {path}::{function}, which that file does not define"
    # Every guarantee row says what pins it.
    guarantees = text.split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in guarantees.splitlines()
            if line.startswith("| ") and not line.startswith(("| guarantee", "| ---"))]
    assert len(rows) >= 20
    for row in rows:
        assert "`tests/" in row, f"a guarantee without its test: {row}"


def test_nothing_points_at_the_shared_design_contract():
    # The contract the project started from lives outside the tree; the
    # project's own design document is docs/DESIGN.md.
    outside = re.compile(r"design contract|shared folder|shared/DESIGN|(?<![\w/])DESIGN\.md", re.I)
    this_file = os.path.abspath(__file__)
    offenders = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith((".", "build"))]
        for name in files:
            path = os.path.join(folder, name)
            if os.path.abspath(path) == this_file or not name.endswith(
                    (".md", ".cpp", ".hpp", ".h", ".c", ".py", ".sh", ".1", ".3", ".5", ".8", ".conf", ".mk")):
                continue
            with open(path, errors="replace") as f:
                for number, line in enumerate(f, 1):
                    for match in outside.finditer(line):
                        before = line[:match.start()]
                        if match.group(0) == "DESIGN.md" and before.endswith(("docs/", "](")):
                            continue
                        offenders.append(f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()}")
    assert offenders == [], "\n".join(offenders)


def test_relative_links_in_the_documents_lead_to_files():
    for document in ["README.md", "ARCHITECTURE.md"] + sorted(
            os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))):
        folder = os.path.dirname(os.path.join(ROOT, document))
        text = read(document)
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert os.path.exists(os.path.join(folder, target)), f"{document} links to {target}, which does not exist"
        # Links within the document, by GitHub's rule for heading anchors.
        anchors = {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
                   for heading in re.findall(r"^#+ (.*)$", text, re.M)}
        for anchor in re.findall(r"\]\(#([^)]+)\)", text):
            assert anchor in anchors, f"{document} links to #{anchor}, which no heading makes"


def test_example_config_is_valid():
    result = run([MCWATCHD, "-t", "-c", os.path.join(ROOT, "etc", "mcwatchd.conf")])
    assert result.returncode == 0, result.stderr


def configuration_keys():
    """{(section, name)} of every key mcwatchd accepts: the table in
    common/config.cpp, as `mcwatchd --list-config-keys` prints it."""
    result = run([MCWATCHD, "--list-config-keys"])
    assert result.returncode == 0, result.stderr
    keys = re.findall(r"^\[([a-z]+)\] +([a-z_]+) +\S", result.stdout, re.M)
    assert len(keys) == len(result.stdout.splitlines()), result.stdout
    return set(keys)


def test_every_configuration_key_is_documented_and_in_the_example():
    keys = {name for section, name in configuration_keys()} - {"server"}
    assert {"state_file", "control_socket", "metrics_listen", "user", "admin_group"} <= keys
    with open(os.path.join(ROOT, "man", "mcwatchd.conf.5")) as f:
        page = f.read()
    with open(os.path.join(ROOT, "etc", "mcwatchd.conf")) as f:
        example = f.read()
    for key in sorted(keys):
        assert re.search(rf"^\.BR? {key}\b", page, re.M), f"{key} has no entry in mcwatchd.conf(5)"
        assert re.search(rf"^#?{key} = ", example, re.M), f"{key} is not in etc/mcwatchd.conf"


def test_every_configuration_key_is_in_the_fuzz_dictionary():
    # The config fuzzer reaches a key's parser only through its name.
    with open(os.path.join(ROOT, "tests", "fuzz", "config.dict")) as f:
        words = set(re.findall(r'^"(.*)"$', f.read(), re.M))
    for section, name in sorted(configuration_keys()):
        assert f"[{section}]" in words, f"[{section}] is not in tests/fuzz/config.dict"
        assert f"{name} = " in words, f"{name} is not in tests/fuzz/config.dict"


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


def test_every_flush_on_rejoin_value_the_daemon_accepts_is_in_its_manual():
    source = read("common", "config.cpp")
    accepted = [set(re.findall(r'"([a-z0-9]+)"', re.search(rf"{side} = \{{([^}}]*)\}}", source).group(1)))
                for side in ("yes", "no")]
    assert {"yes", "no"} <= accepted[0] | accepted[1]
    page = read("man", "mcwatchd.conf.5")
    entry = page.split(".BR flush_on_rejoin", 1)[1].split("\n.TP", 1)[0]
    for value in sorted(accepted[0] | accepted[1]):
        assert re.search(rf"^\.BR? {value}\b", entry, re.M), f"flush_on_rejoin accepts {value!r}; mcwatchd.conf(5) does not say so"


def test_the_server_spellings_mcctl_1_promises_name_the_configured_server(fleet):
    """mcctl(1): a server is named as configured, or by the same numeric
    address spelled another way (localhost for 127.0.0.1, either way round;
    IPv6 in any spelling); other names are not resolved."""
    v4 = Memcached().start()
    v6 = Memcached(hosts=("::1",)).start()
    fleet.servers += [v4, v6]
    fleet.write_config(servers=[f"localhost:{v4.port}", f"[::1]:{v6.port}"])
    fleet.start_daemon(wait_live=False)
    fleet.wait_states({f"localhost:{v4.port}": "live", f"[::1]:{v6.port}": "live"})
    for spelling, configured in [(f"127.0.0.1:{v4.port}", f"localhost:{v4.port}"),
                                 (f"localhost:{v4.port}", f"localhost:{v4.port}"),
                                 (f"[0:0:0:0:0:0:0:1]:{v6.port}", f"[::1]:{v6.port}")]:
        result = fleet.ctl("flush", spelling)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"{configured} flushed\n"
    result = fleet.ctl("flush", f"ip6-localhost:{v6.port}")
    assert result.returncode == 1
    assert f"unknown server 'ip6-localhost:{v6.port}'" in result.stderr
