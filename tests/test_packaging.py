"""The package builds with the lowest setuptools that pyproject.toml declares."""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

import bfpack

ROOT = pathlib.Path(__file__).resolve().parents[1]


def lowest_setuptools():
    text = (ROOT / "pyproject.toml").read_text()
    build_system = text[text.index("[build-system]") :].split("\n[", 1)[0]
    (version,) = re.findall(r'"setuptools>=([0-9.]+)"', build_system)
    return version


def run(*args, cwd=None):
    r = subprocess.run(list(map(str, args)), capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.mark.slow
def test_builds_with_the_lowest_declared_setuptools(tmp_path):
    lowest = lowest_setuptools()
    assert lowest == "77"  # the first to read `license = "MIT"` (PEP 639)
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    run(python, "-m", "pip", "install", "--quiet", f"setuptools=={lowest}.*")
    installed = run(python, "-c", "import setuptools; print(setuptools.__version__)").strip()
    assert installed.split(".")[0] == lowest
    # A copy of what a build reads: the build leaves its work (build/,
    # *.egg-info) there, not in the checkout.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "bfpack", src / "bfpack", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    dist = tmp_path / "dist"
    run(python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "-w", dist, src)  # fmt: skip
    run(python, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})",
        cwd=src)  # fmt: skip

    (wheel,) = dist.glob("*.whl")
    assert wheel.name == f"bfpack-{bfpack.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        info = f"bfpack-{bfpack.__version__}.dist-info"
        metadata = z.read(f"{info}/METADATA").decode()
        assert z.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
        assert "bfpack = bfpack.cli:main" in z.read(f"{info}/entry_points.txt").decode()
        names = z.namelist()
    assert "License-Expression: MIT" in metadata
    assert "License-File: LICENSE" in metadata
    assert "Classifier: Typing :: Typed" in metadata
    assert "Project-URL: Paper, https://arxiv.org/abs/2404.10830" in metadata
    assert "Requires-Python: >=3.10" in metadata
    assert "bfpack/py.typed" in names and "bfpack/_kernels/bfd.py" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]

    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as t:
        members = {m.name.split("/", 1)[1] for m in t.getmembers() if "/" in m.name}
    assert {"LICENSE", "README.md", "pyproject.toml", "bfpack/py.typed"} <= members
