"""Optional dependencies: a missing one is an ImportError naming the extra."""

import pathlib
import re
import subprocess
import sys

import pytest

from bfpack._optional import EXTRAS, requires

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_without(module, code):
    """Run ``code`` in a fresh interpreter where ``module`` cannot be imported."""
    blocked = f"import sys; sys.modules[{module!r}] = None\n"
    return subprocess.run(
        [sys.executable, "-c", blocked + code], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "module, code, message",
    [
        ("torch", "import bfpack.torch", "bfpack.torch needs torch: pip install 'bfpack[torch]'"),
        ("datasets", "import bfpack.hf", "bfpack.hf needs datasets: pip install 'bfpack[hf]'"),
        ("trl", "import bfpack.trl", "bfpack.trl needs trl: pip install 'bfpack[trl]'"),
        (
            "distributed",
            "import bfpack.dask\nbfpack.dask.pack_parquet('src', 'dst', 8)",
            "bfpack.dask needs distributed: pip install 'bfpack[dask]'",
        ),
        (
            "matplotlib",
            "import bfpack, bfpack.plot\nbfpack.plot.plot_fill(bfpack.pack([3, 4], 8))",
            "bfpack.plot needs matplotlib: pip install 'bfpack[plot]'",
        ),
    ],
)
def test_a_missing_extra_is_named_with_its_install_command(module, code, message):
    done = run_without(module, code)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"ImportError: {message}", done.stderr


def test_other_import_errors_pass_unchanged():
    with (
        pytest.raises(ModuleNotFoundError, match="no_such_module"),
        requires("torch", needed_by="x"),
    ):
        import no_such_module  # noqa: F401


def test_the_extras_are_those_of_pyproject():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for extra, modules in EXTRAS.items():
        names = set()
        for requirement in extras[extra]:
            name, _, rest = re.match(r"([\w-]+)(\[([\w,-]+)\])?", requirement).groups()
            names |= {name, *(rest.split(",") if rest else ())}
        assert names == set(modules), extra


def test_the_command_line_names_the_extra_of_workers(tmp_path):
    # As the library does, through requires(): the missing module and the install command.
    code = (
        "from bfpack.cli import main\n"
        f"raise SystemExit(main(['pack', {str(tmp_path / 'src')!r}, {str(tmp_path / 'dst')!r}, "
        "'--seq-len', '8', '--workers', '1']))\n"
    )
    done = run_without("distributed", code)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "bfpack: error: bfpack pack --workers and --scheduler needs distributed: "
        "pip install 'bfpack[dask]'"
    ), done.stderr
