"""The check that a test run leaves the temporary directory as it found it."""

import os
import subprocess
import sys
import tempfile

TESTS = os.path.dirname(os.path.abspath(__file__))

LEAVES = """
import os, subprocess, sys, tempfile

def test_leaves_clutter():
    tempfile.mkdtemp(prefix="bfpack-left-")  # in this process
    subprocess.run([sys.executable, "-c", "import tempfile; tempfile.mkstemp(prefix='child-')"])

def test_tmp_path_is_fine(tmp_path):
    (tmp_path / "x").write_text("x")
"""

CLEAN = """
import tempfile

def test_cleans_up():
    with tempfile.TemporaryDirectory(prefix="bfpack-") as d:
        open(d + "/x", "w").close()
"""


def run_pytest(tmp_path, source):
    (tmp_path / "test_it.py").write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "clutter", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(tmp_path), str(tmp_path / "test_it.py")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": TESTS},
        cwd=tmp_path,
    )  # fmt: skip


def test_clutter_fails_the_session_and_is_removed(tmp_path):
    before = set(os.listdir(tempfile.gettempdir()))
    r = run_pytest(tmp_path, LEAVES)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "2 passed" in r.stdout  # the tests pass; the session fails
    line = next(x for x in r.stdout.splitlines() if "left files in the temporary" in x)
    names = line.split(": ")[-1].split(", ")
    assert len(names) == 2
    assert {n.split("-")[0] for n in names} == {"bfpack", "child"}
    # Nothing of the child run is left beside what was there before (other
    # processes may add their own files meanwhile: only ours are checked).
    after = set(os.listdir(tempfile.gettempdir()))
    assert not {n for n in after - before if n.startswith(("bfpack-tests-tmp-", "bfpack-left-"))}


def test_clean_session_passes(tmp_path):
    r = run_pytest(tmp_path, CLEAN)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "left files" not in r.stdout
