"""The tree is kept in the style of .clang-format (`make format`)."""
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def format_check(*extra):
    return subprocess.run(["make", "-s", "-C", ROOT, "format-check", *extra],
                          capture_output=True, text=True, timeout=120)


def test_every_c_and_cpp_file_is_formatted():
    result = format_check()
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_check_fails_on_a_misformatted_file(tmp_path):
    # The same recipe over one file written against the style, so a check
    # that passed because it checked nothing would show here.
    shutil.copy(os.path.join(ROOT, ".clang-format"), tmp_path)
    bad = tmp_path / "bad.cpp"
    bad.write_text("int   main( ){return 0;}\n")
    result = format_check(f"FORMAT_SRC={bad}")
    assert result.returncode != 0
    assert "bad.cpp" in result.stderr
