"""The int64 scratch path, used from 2**31 pieces or documents on.

It cannot be reached at a testable size through the public API, so the
threshold is lowered to force it; the results must not change.
"""

import numpy as np
import pytest
from hypothesis import given, settings

import bfpack
import bfpack.corpus
import bfpack.methods

from test_pack import ARRAYS, check_plan, documents


@pytest.fixture
def wide_indices(monkeypatch):
    monkeypatch.setattr(bfpack.methods, "_INT32_INDEX_LIMIT", 0)


@pytest.mark.parametrize("method", ["bfd", "ffd"])
@pytest.mark.parametrize("long_docs", ["split", "truncate"])
@settings(max_examples=60)
@given(case=documents())
def test_int64_scratch_gives_the_same_packing(case, method, long_docs):
    lengths, L = case
    narrow = bfpack.pack(lengths, L, method=method, long_docs=long_docs)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bfpack.methods, "_INT32_INDEX_LIMIT", 0)
        wide = bfpack.pack(lengths, L, method=method, long_docs=long_docs)
    check_plan(wide, lengths, L, method, long_docs)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(wide, name), getattr(narrow, name))


def test_int64_scratch_on_web_like_lengths(wide_indices):
    lengths = bfpack.corpus.web_like_lengths(20_000, seed=5)
    plan = bfpack.pack(lengths, 2048)
    check_plan(plan, lengths, 2048, "bfd", "split")
