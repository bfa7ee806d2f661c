"""Sphinx configuration of the bfpack documentation.

Build (warnings are errors, as in ``.ci/run``)::

    pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The API pages are generated from the docstrings (autosummary, numpydoc),
the command line page from the argparse parser (sphinx-argparse), and the
notebooks of ``notebooks/`` (linked as ``docs/notebooks``) are executed by
myst-nb, their outputs cached between builds.
"""

import importlib.util
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
# The notebooks' kernels import bfpack from this checkout too.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))

import bfpack  # noqa: E402

project = "bfpack"
author = "the bfpack authors"
copyright = "the bfpack authors"
release = bfpack.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_nb",
    "sphinxarg.ext",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "reference/generated/*.md"]
templates_path = ["_templates"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"

# -- API pages -----------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # the class template lists members
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()
# The integrations' libraries are optional: where one is not installed, its
# module is documented against a stand-in (the pages read the same).
OPTIONAL = ["torch", "datasets", "distributed", "dask", "matplotlib", "transformers", "trl"]
MISSING = [name for name in OPTIONAL if importlib.util.find_spec(name) is None]
autodoc_mock_imports = MISSING


# -- Notebooks (myst-nb) ---------------------------------------------------
# The notebooks are committed without outputs (tests/test_notebooks.py
# checks that), so the build runs them; the cache keeps their outputs until
# a notebook changes.
nb_execution_mode = "cache"
nb_execution_cache_path = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "_build", "jupyter-cache"
)
nb_execution_timeout = 600
# The training notebook needs `bfpack[train]`; without it, it is shown unexecuted.
TRAINING = ("torch", "transformers", "datasets")
nb_execution_excludepatterns = (
    ["notebooks/04_training.ipynb"]
    if any(importlib.util.find_spec(name) is None for name in TRAINING)
    else []
)
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- HTML ------------------------------------------------------------------
html_theme = "furo"
html_title = f"bfpack {release}"
html_static_path: list[str] = []


# -- Every public name on the API page ---------------------------------------
#: Modules whose ``__all__`` the API page must cover.
PUBLIC_MODULES = [
    "bfpack",
    "bfpack.parquet",
    "bfpack.options",
    "bfpack.analysis",
    "bfpack.stream",
    "bfpack.hf",
    "bfpack.torch",
    "bfpack.dask",
    "bfpack.plot",
    "bfpack.corpus",
    "bfpack.cli",
]


def _documented(path):
    """Fully qualified names listed in the autosummary tables of ``path``."""
    import re

    names, module, inside = set(), "bfpack", False
    for line in open(path, encoding="utf-8"):
        if m := re.match(r"\.\. currentmodule:: (\S+)", line.strip()):
            module = m.group(1)
        elif line.strip().startswith(".. autosummary::"):
            inside = True
        elif inside and line.startswith("   ") and not line.strip().startswith(":"):
            if line.strip():
                names.add(f"{module}.{line.strip()}")
        elif inside and line.strip() and not line.startswith("   "):
            inside = False
    return names


def _check_api_page(app):
    import importlib

    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    documented = _documented(os.path.join(app.srcdir, "reference", "api.md"))
    objects = set()
    for name in documented:
        module, _, attr = name.rpartition(".")
        try:
            objects.add(id(getattr(importlib.import_module(module), attr)))
        except (ImportError, AttributeError):
            pass  # autosummary reports it
    for module_name in PUBLIC_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # a module of a later layout, or an optional one
        for name in getattr(module, "__all__", []):
            if name == "__version__" or f"{module_name}.{name}" in documented:
                continue
            value = getattr(module, name)
            if id(value) not in objects or isinstance(value, (int, str)):
                logger.warning(f"{module_name}.{name} is public but not on reference/api.md")


def setup(app):
    app.connect("builder-inited", _check_api_page)
