"""Rules of the code's shape, checked: small signatures, lazy compilation,
layers that only go one way."""

import ast
import os
import pathlib
import re
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "bfpack"
MAX_POSITIONAL = 6


def _is_kernel(node):
    return any(
        isinstance(d, ast.Name) and d.id in ("jit", "jit_inline") for d in node.decorator_list
    )


def test_python_functions_take_at_most_six_positional_arguments():
    too_many = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_kernel(node):
                names = [a.arg for a in node.args.posonlyargs + node.args.args]
                names = [n for n in names if n not in ("self", "cls")]
                if len(names) > MAX_POSITIONAL:
                    too_many.append(f"{path.name}:{node.lineno} {node.name}({', '.join(names)})")
    assert not too_many, "use keyword-only arguments or a small object:\n" + "\n".join(too_many)


@pytest.mark.skipif(
    os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"),
    reason="nothing is compiled with NUMBA_DISABLE_JIT",
)
def test_import_compiles_nothing():
    code = (
        "import bfpack, bfpack._kernels.bfd as k, bfpack._kernels.gather as g\n"
        "print(len(k.best_fit.signatures) + len(g.gather_tokens.signatures))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_kernels_import_nothing_above_them():
    # Kernels work on arrays: no Arrow, no validation, no public modules.
    for path in sorted((PACKAGE / "_kernels").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                assert (
                    module in ("..", ".._jit", "typing")
                    or module.startswith(".")
                    and not module.startswith("..")
                ), f"{path.name} imports {module}"
            elif isinstance(node, ast.Import):
                assert all(a.name in ("numpy",) for a in node.names), path.name


def test_python_code_calls_kernels_through_call():
    # bfpack._jit.call holds SIGINT and SIGTERM back while numba boxes a
    # kernel's result (tests/test_signals.py); a direct call is unsafe.
    direct = []
    for path in sorted(set(PACKAGE.rglob("*.py")) - {PACKAGE / "_jit.py"}):
        tree = ast.parse(path.read_text())
        kernels = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and "_kernels" in (node.module or "")
            if node.module != "_kernels.results"
            for alias in node.names
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                # (``kernel`` is the parameter of methods.any_fit)
                if node.func.id in kernels or node.func.id == "kernel":
                    direct.append(f"{path.name}:{node.lineno} {node.func.id}(...)")
    assert not direct, "call kernels as call(kernel, *args):\n" + "\n".join(direct)


def _imports(path):
    """The modules ``path`` imports, as dotted names inside bfpack (``parquet._pack``)."""
    package = path.relative_to(PACKAGE).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            module = ".".join((*base, *(node.module or "").split("."))).strip(".")
            names = [f"{module}.{a.name}".strip(".") for a in node.names]
            found.add(module)
            found.update(names)  # ``from . import dask`` imports a module too
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for name in [node.module] if isinstance(node, ast.ImportFrom) else node.names:
                name = name if isinstance(name, str) else name.name
                if name and name.startswith("bfpack."):
                    found.add(name.removeprefix("bfpack."))
    return found


#: The layers above the core: I/O, command line and integrations.
OUTER = ("parquet", "cli", "hf", "torch", "trl", "dask", "plot")


def _outer(module):
    return module.split(".")[0] in OUTER


def test_core_modules_import_nothing_from_the_layers_above():
    # The core (packing, stream, table, analysis, kernels, ...) works on
    # arrays and Arrow tables; files, the command line and other libraries
    # sit on top of it. One exception: analysis.document_lengths accepts the
    # path of a Parquet dataset and reads it with the Parquet layer's reader,
    # imported on use.
    allowed = {"analysis": "parquet._source"}
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if _outer(name) or name in ("__init__", "__main__"):
            continue
        exception = allowed.get(name, "-")
        wrong += [
            f"{name} imports {m}"
            for m in _imports(path)
            if _outer(m) and not m.startswith(exception)
        ]
    assert not wrong, "\n".join(sorted(wrong))


def test_io_modules_hold_no_packing_logic():
    # The Parquet layer and the Dask driver reach packing through the stream
    # packer only: no kernel, and of the packing modules only their result
    # types and the registry of method names.
    data = {"packing.PackingStats", "packing.DocumentCounts", "methods.METHODS"}
    paths = sorted((PACKAGE / "parquet").glob("*.py")) + [PACKAGE / "dask.py"]
    for path in paths:
        names = {m for m in _imports(path) if m.startswith(("methods.", "packing."))}
        kernels = {m for m in _imports(path) if m.startswith("_kernels")}
        assert names <= data and not kernels, f"{path.name}: {names - data} {kernels}"
    assert "stream" in _imports(PACKAGE / "parquet" / "_pack.py")


OPTIONAL = {
    "hf": "datasets",
    "torch": "torch",
    "trl": "trl",
    "plot": "matplotlib",
    "dask": "distributed",
}


@pytest.mark.slow
def test_every_module_imports_on_its_own():
    # A module imported first, before any other of the package, must not
    # meet a partly initialised one (a cycle that import order would hide).
    import importlib.util

    failed = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        needs = OPTIONAL.get(parts[-1])
        if needs and importlib.util.find_spec(needs) is None:
            continue
        name = ".".join(parts)
        done = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True)
        if done.returncode:
            failed.append(f"{name}: {done.stderr.decode().strip().splitlines()[-1]}")
    assert not failed, "\n".join(failed)


def test_argument_checks_import_only_what_is_below_them():
    # _validate is imported by every layer; it may import only the modules
    # that import nothing of bfpack above them, so that no cycle can form.
    def modules(path):
        return {m.split(".")[0] for m in _imports(path)}

    assert modules(PACKAGE / "_validate.py") <= {"_arrow", "_jit", "_memory", "_warnings"}
    assert modules(PACKAGE / "_arrow.py") == {"_jit"}
    for name in ("_memory.py", "_warnings.py"):
        assert not modules(PACKAGE / name), name


def test_public_modules_do_not_reuse_the_packages_public_names():
    # bfpack.table.document_lengths once meant something else than
    # bfpack.document_lengths; a public name means one thing everywhere
    # (bfpack.dask.pack_parquet is pack_parquet on a cluster, by design).
    import importlib

    import bfpack

    clashes = []
    for path in sorted(PACKAGE.glob("*.py")):
        name = path.stem
        if name.startswith("_") or name in ("dask", *OPTIONAL):
            continue
        module = importlib.import_module(f"bfpack.{name}")
        for public in bfpack.__all__:
            value = vars(module).get(public)
            if value is not None and value is not getattr(bfpack, public):
                clashes.append(f"bfpack.{name}.{public}")
    assert not clashes, clashes


def test_doc_comments_document_the_name_under_them():
    # A ``#:`` comment documents the assignment right below it (Sphinx).
    pycode = pytest.importorskip("sphinx.pycode")
    shards = pycode.ModuleAnalyzer.for_module("bfpack.parquet._shards").find_attr_docs()
    assert "write_table" in " ".join(shards[("", "WRITE_OPTIONS")])
    assert "write_table" not in " ".join(shards[("", "IN_FLIGHT")])
    jit = pycode.ModuleAnalyzer.for_module("bfpack._jit").find_attr_docs()
    assert ("", "_JIT_DISABLED") not in jit
    assert "as_pointer(address)" in " ".join(jit[("", "as_pointer")])


def test_the_package_holds_no_history_of_bfpack_0_1():
    # Compatibility code for an earlier release is gone before the first one.
    found = [
        f"{path.name}:{n}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"bfpack 0\.1\b|LEGACY|[Ll]egacy", line)
    ]
    assert not found, found


def test_every_module_is_on_the_architecture_page():
    page = (PACKAGE.parent / "docs" / "explanations" / "architecture.md").read_text()
    listed = set(re.findall(r"`(bfpack(?:\.\w+)*)`", page))
    modules = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert not modules - listed, f"describe them in architecture.md: {sorted(modules - listed)}"


def test_no_module_imports_a_private_name_of_another():
    # A private name (``_x``) is its module's own; another module that needs
    # it needs a public name (private modules are fine: ``from . import _batch``).
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                module = node.module or ""
                found += [
                    f"{path.relative_to(PACKAGE)}: from {'.' * node.level}{module} import {a.name}"
                    for a in node.names
                    if a.name.startswith("_")
                    and not a.name.startswith("__")
                    and not (PACKAGE / module.replace(".", "/") / f"{a.name}.py").exists()
                    and not (path.parent / f"{a.name}.py").exists()
                ]
    assert not found, "\n".join(found)
