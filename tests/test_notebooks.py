"""Every notebook runs top to bottom and shows what it promises."""

import os
import pathlib
import re

import pytest

import bfpack

from integrations import need

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))

#: Text each notebook must print (its results, not its code).
PRINTS = {
    "01_quickstart.ipynb": [
        "Packing(method='bfd', seq_len=2048",
        "excess_sequences",
        "documents cut - concat:",
        "cu_seqlens:",
        "in the manifest",
    ],
    "02_truncations.ipynb": ["vs concat", "web-like, seq_len 8192", "stdlib code, seq_len 2048"],
    "03_streaming.ipynb": ["global BFD:", "window docs", "window tokens"],
    "04_training.ipynb": [
        "packed rows of 256 tokens",
        "rows holding several pieces",
        "cu_seq_lens_q: [0, ",
        "step  20  loss",
        "padded batch loss",
        "PackedDataset(",
    ],
}

#: Packages a notebook needs beyond the test extra; without them it is skipped.
REQUIRES = {"04_training.ipynb": ("torch", "transformers", "datasets")}


def _loss_falls(text):
    losses = [float(x) for x in re.findall(r"step +\d+  loss ([0-9.]+)", text)]
    assert len(losses) >= 2 and losses[-1] < losses[0] - 1, f"the loss did not fall: {losses}"


#: Checks of a notebook's printed results beyond the text it must print.
CHECKS = {"04_training.ipynb": _loss_falls}


def test_every_notebook_is_checked():
    assert sorted(p.name for p in NOTEBOOKS) == sorted(PRINTS)


def _text(cell):
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "text/plain" in out.get("data", {}):
            parts.append(out["data"]["text/plain"])
    return "".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path):
    for package in REQUIRES.get(path.name, ()):
        need(package)
    nbformat = need("nbformat")
    client = need("nbclient")
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert not any(cell.get("outputs") for cell in code), "commit notebooks without outputs"
    # Raises CellExecutionError, with the failing cell, on any error.
    client.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "".join(_text(cell) for cell in code)
    for expected in PRINTS[path.name]:
        assert expected in text, f"{path.name} did not print {expected!r}"
    if path.name in CHECKS:
        CHECKS[path.name](text)
    for cell in code:
        streams = [o for o in cell.outputs if o.get("output_type") == "stream"]
        assert all(o["name"] == "stdout" for o in streams), f"warnings in:\n{cell.source}"
        bundles = [o.get("data", {}) for o in cell.outputs]
        assert not any(
            "Figure size" in b.get("text/plain", "") and "image/png" not in b for b in bundles
        ), f"a figure came out as text, not an image, in:\n{cell.source}"
        if re.search(r"\bplot_\w+\(|display\(fig\)", cell.source):  # a plotting cell
            assert any("image/png" in b for b in bundles), f"no image from:\n{cell.source}"


@pytest.mark.slow
def test_quickstart_on_your_own_data(tmp_path):
    # The quickstart's parameter cell points it at any Parquet dataset.
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "mine"
    data.mkdir()
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 1500, 300)
    lengths[:5] = [3000, 5000, 10, 0, 700]
    for k, part in enumerate(np.split(lengths, [120])):
        tokens = [rng.integers(0, 32_000, n).astype(np.int32) for n in part]
        pq.write_table(
            pa.table({"text_id": np.arange(len(part)), "tokens": tokens}),
            data / f"part-{k}.parquet",
        )
    path = NOTEBOOKS[0].parent / "01_quickstart.ipynb"
    nbformat = need("nbformat")
    client = need("nbclient")
    nb = nbformat.read(path, as_version=4)
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    params.source = f"DATA = {str(data)!r}\nCOLUMN = 'tokens'\nSEQ_LEN = 1024"
    client.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "".join(_text(cell) for cell in nb.cells if cell.cell_type == "code")
    assert f"{len(lengths):,} documents, {lengths.sum():,} tokens" in text
    assert "Packing(method='bfd', seq_len=1024" in text
    concat = bfpack.pack(lengths, 1024, method="concat").stats().documents_truncated
    bfd = bfpack.pack(lengths, 1024).stats().documents_truncated
    assert f"documents cut - concat: {concat:,}, bfd: {bfd:,}" in text
    assert f"{bfpack.pack(lengths, 1024).num_sequences} in the manifest" in text
    assert sorted(os.listdir(data)) == ["part-0.parquet", "part-1.parquet"]  # read, not changed
