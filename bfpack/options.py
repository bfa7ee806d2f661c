"""The options of a packing run, checked once: :class:`PackOptions`.

:func:`bfpack.pack_parquet`, :func:`bfpack.dask.pack_parquet`,
:func:`bfpack.dask.sequences_of_lengths` and an IterableDataset's
:func:`bfpack.hf.pack_dataset` keep their keyword arguments; each builds one
:class:`PackOptions` of them, which checks every value and fills in the
defaults that depend on others (``max_open``), and passes that object on.
Nothing after it reads an option by name from a dict or checks it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from ._validate import (
    as_bool,
    as_choice,
    as_int,
    as_long_docs,
    as_optional_int,
    as_seed,
    as_seq_len,
)
from .methods import as_method
from .stream import StreamPacker, TableStreamPacker, default_max_open
from .table import OutputSpec

__all__ = ["DEFAULT_WINDOW_TOKENS", "OUTPUT_FORMATS", "PackOptions"]

#: The formats of a packed output's shards (``format=``): Parquet (zstd, the
#: default) or uncompressed Arrow IPC streams in the layout of
#: ``datasets.Dataset.save_to_disk``.
OUTPUT_FORMATS = ("parquet", "arrow")

#: Tokens per window: small enough that reading, packing and writing overlap
#: well (and memory stays low), large enough to pack within a sequence or two
#: of one global BFD.
DEFAULT_WINDOW_TOKENS = 1 << 24


@dataclass(frozen=True, slots=True, init=False)
class PackOptions:
    """The checked options of one packing run, windows and all.

    Constructed from the keyword arguments of :func:`bfpack.pack_parquet`
    (see there for each), every value is checked once, here: TypeError for
    a wrong type, ValueError for a wrong value. ``max_open=None`` becomes
    :func:`bfpack.stream.default_max_open` of ``seq_len`` and
    ``window_tokens``. ``columns``, ``pad_value``, ``carry`` and
    ``separator`` depend on the input's schema, so they are kept as given
    and checked by :meth:`spec`.

    Instances are immutable and picklable (a Dask task receives one).

    Examples
    --------
    >>> o = PackOptions(2048, window_tokens=1 << 20)
    >>> o.method, o.max_open
    ('bfd', 128)
    """

    seq_len: int
    method: str
    long_docs: str
    columns: str | tuple[str, ...] | None
    pad_value: float | dict[str, float] | None
    position_ids: bool
    seed: int | None
    window_tokens: int
    rows_per_shard: int | None
    overwrite: bool
    max_open: int
    provenance: bool
    carry: str | tuple[str, ...] | None
    separator: float | dict[str, float] | None
    format: str

    def __init__(
        self,
        seq_len: int,
        *,
        method: str = "bfd",
        long_docs: str = "split",
        columns: str | Sequence[str] | None = None,
        pad_value: float | Mapping[str, float] | None = None,
        position_ids: bool = False,
        seed: int | None = None,
        window_tokens: int = DEFAULT_WINDOW_TOKENS,
        rows_per_shard: int | None = None,
        overwrite: bool = False,
        max_open: int | None = None,
        provenance: bool = False,
        carry: str | Sequence[str] | None = None,
        separator: float | Mapping[str, float] | None = None,
        format: str = "parquet",
    ) -> None:
        seq_len = as_seq_len(seq_len)
        window_tokens = as_int(window_tokens, "window_tokens", lo=1, unit="tokens")
        max_open = as_optional_int(max_open, "max_open", lo=0)
        checked = dict(
            seq_len=seq_len,
            method=as_method(method).name,
            long_docs=as_long_docs(long_docs),
            # Copies, kept as given otherwise: their checks need the input's schema.
            columns=columns if columns is None or isinstance(columns, str) else _names(columns),
            pad_value=dict(pad_value) if isinstance(pad_value, Mapping) else pad_value,
            position_ids=as_bool(position_ids, "position_ids"),
            seed=as_seed(seed),
            window_tokens=window_tokens,
            rows_per_shard=as_optional_int(rows_per_shard, "rows_per_shard", lo=1),
            overwrite=as_bool(overwrite, "overwrite"),
            max_open=default_max_open(seq_len, window_tokens) if max_open is None else max_open,
            provenance=as_bool(provenance, "provenance"),
            carry=carry if carry is None or isinstance(carry, str) else _names(carry),
            separator=dict(separator) if isinstance(separator, Mapping) else separator,
            format=as_choice(format, "format", OUTPUT_FORMATS),
        )
        for name, value in checked.items():
            object.__setattr__(self, name, value)  # frozen: set once, here

    # Pickled field by field and restored without checking again (a frozen
    # class with slots has no __dict__ for pickle's default to restore).
    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for f, value in zip(fields(self), state):
            object.__setattr__(self, f.name, value)

    def spec(self, schema: Any) -> OutputSpec:
        """The output spec of these options for tables of ``schema``
        (:meth:`bfpack.OutputSpec.for_schema`)."""
        return OutputSpec.for_schema(schema, **self.spec_options())

    def spec_options(self) -> dict[str, Any]:
        """The options that :meth:`bfpack.OutputSpec.for_schema` takes, by name."""
        return dict(
            columns=self.columns,
            pad_value=self.pad_value,
            position_ids=self.position_ids,
            provenance=self.provenance,
            carry=self.carry,
            separator=self.separator,
        )

    def packer(
        self, spec: OutputSpec, *, seed: int | None, first_document: int = 0, pieces: bool = False
    ) -> TableStreamPacker:
        """A stream packer of these options, shuffling its output with ``seed``
        (``first_document`` and ``pieces``: see :class:`~bfpack.stream.TableStreamPacker`)."""
        return TableStreamPacker(
            self.seq_len,
            spec,
            method=self.method,
            long_docs=self.long_docs,
            max_open=self.max_open,
            seed=seed,
            first_document=first_document,
            pieces=pieces,
        )

    def length_packer(self) -> StreamPacker:
        """A stream packer of document lengths with these options."""
        return StreamPacker(
            self.seq_len, method=self.method, long_docs=self.long_docs, max_open=self.max_open
        )

    def as_dict(self, spec: OutputSpec) -> dict[str, Any]:
        """The ``options`` of the manifest: the columns and pad values as
        ``spec`` (these options' :meth:`spec` of the input) resolved them."""
        return {
            "seq_len": self.seq_len,
            "columns": list(spec.columns),
            "method": self.method,
            "long_docs": self.long_docs,
            "pad_value": self._manifest_value(spec.pad_values, self.pad_value, spec),
            "position_ids": spec.position_ids,
            "seed": self.seed,
            "window_tokens": self.window_tokens,
            "rows_per_shard": self.rows_per_shard,
            "max_open": self.max_open,
            "provenance": spec.provenance,
            "carry": list(spec.carry),
            "separator": self._manifest_value(spec.separators, self.separator, spec),
            "format": self.format,
        }

    @staticmethod
    def _manifest_value(
        values: tuple[float, ...] | None, given: Any, spec: OutputSpec
    ) -> float | dict[str, float] | None:
        """Checked per-column ``values`` (pad values, separators) as ``given``:
        one number or one per packed column, as plain numbers."""
        if values is None:
            return None
        if isinstance(given, Mapping):
            return dict(zip(spec.columns, values))
        return values[0]


def _names(columns: Any) -> Any:
    """``columns`` as a tuple if it is a collection of names; as given
    otherwise, for :meth:`PackOptions.spec` to refuse with its message."""
    try:
        return tuple(columns)
    except TypeError:
        return columns
