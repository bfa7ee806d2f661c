"""The compile policy: how every kernel is compiled, cached and called.

Kernels are compiled lazily. Importing :mod:`bfpack` compiles nothing; a
kernel is compiled on its first call, for the argument types of that call.
Each distinct combination of argument types is a separate compiled variant
(and a separate entry in the on-disk cache), so the public wrappers
normalise what they pass and the variants stay few and known:

- integer inputs (lengths, offsets, piece arrays) are C-contiguous int64,
  and always read-only (:func:`readonly`): numba types a read-only array
  apart from a writable one, so without this a user's writable array and a
  zero-copy Arrow buffer would compile twice;
- per-piece scratch arrays are int32, or int64 from 2**31 pieces on (two
  variants of the kernels that take them);
- token buffers are passed as unsigned integers of their width
  (:func:`token_view`): moving tokens never looks at their values, so a
  float32 column and an int32 column share the ``uint32`` variant, and
  there are four variants of the gather kernel in all. The gather kernel
  reads a column's chunks where Arrow holds them, by address (an int64
  per document, :func:`as_pointer`): one argument type whatever the
  number of chunks, and no ``numba.typed.List``, whose own helpers numba
  compiles again in every process (about 0.9 s) because it never caches
  them.

``tests/test_compile.py`` runs every public path on inputs of every kind and
checks that no kernel gained a variant beyond these.

Caching. Compiled machine code is cached on disk, so later processes load
it instead of compiling (about 0.1 s against several seconds). The cache
of a kernel is the first of these places that can be used:

1. ``NUMBA_CACHE_DIR``, if set and writable;
2. ``__pycache__`` beside the kernel's source, if writable (an editable or
   user-owned install);
3. a cache built at install time in that ``__pycache__``, read-only: the
   kernels found there are loaded (a container image or a read-only
   ``site-packages`` built with them, see the README);
4. numba's user-wide directory (``$XDG_CACHE_HOME/numba`` or
   ``~/.cache/numba``), if writable.

Where none can be used (a read-only install, run by a user whose home is
not writable, with ``NUMBA_CACHE_DIR`` unset: the usual container),
kernels are compiled in memory in every process, and one warning per
process says so and how to cache them. The same warning, once, reports a
cache that cannot be written after all (a kernel missing from a read-only
cache, a full disk) or read; importing and packing never fail for want of
a cache. numba alone raises at import in these cases ("no locator
available"), which is why the cache is chosen here and not by
``cache=True``. A damaged cache file (cut short by a full disk or a
killed process, or overwritten), which numba would fail to unpickle in
every later process, is treated as a missing one: it is removed, the
kernel compiled and saved again, and one warning per process names the
cache directory.

numba writes each cache file under a temporary name and renames it into
place, so processes that start cold together each compile and the last
rename wins: concurrent writers never leave a torn file on a local file
system (on a network file system, rename must be atomic there too). This
is the hazard of numba issue 4807 (parallel workers and one cache);
``tests/test_compile.py`` packs in forked and spawned worker processes,
with a cold and a warm cache, and checks their results; it also packs from
a read-only copy of the package with and without a pre-built cache.

Forking. No kernel uses ``parallel=True``, so numba starts no thread pool
that a ``fork`` could break; a forked child (a PyTorch DataLoader worker,
say) reuses the kernels its parent compiled, and a spawned child loads them
from the cache.

Kernels release the GIL (``nogil=True``): a shard can be encoded by pyarrow
in one thread while the next window is packed in another.

Calling. Python code calls a kernel through :func:`call`, never directly:
it holds SIGINT and SIGTERM back until the kernel has returned
(:mod:`bfpack._interrupt` says why). Compiled code cannot be
interrupted anyway, so an interrupt comes no later than it would have.
``tests/test_design.py`` checks that no kernel is called otherwise.
"""

import contextlib
import ctypes
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, cast

import numba
import numpy as np
from numba.core import caching, cgutils
from numba.core import config as numba_config
from numba.core.dispatcher import Dispatcher
from numba.extending import intrinsic

from ._interrupt import held


def _numba_class(name: str) -> Any:
    """A class of :mod:`numba.core.caching` (underscored before numba 0.61)."""
    return getattr(caching, name, None) or getattr(caching, "_" + name)


_InTreeCacheLocator = _numba_class("InTreeCacheLocator")


class _PrebuiltCacheLocator(_InTreeCacheLocator):  # type: ignore[misc,valid-type]
    """``__pycache__`` beside the source, holding a cache of the function
    built at install time; it need not be writable."""

    @classmethod
    def from_function(cls, py_func: Callable, py_file: str) -> Any:
        locator = cls(py_func, py_file)
        # numba's index file name (CacheImpl.get_filename_base).
        module = os.path.splitext(os.path.basename(py_file))[0]
        version = f"{sys.version_info[0]}{sys.version_info[1]}{getattr(sys, 'abiflags', '')}"
        index = f"{module}.{py_func.__qualname__}-{locator.get_disambiguator()}.py{version}.nbi"
        if os.path.isfile(os.path.join(locator.get_cache_path(), index)):
            return locator
        return None


def _with_prebuilt(locators: list) -> list:
    """numba's locators, with the pre-built cache tried before the user-wide one."""
    names = [cls.__name__.lstrip("_") for cls in locators]
    at = names.index("UserWideCacheLocator") if "UserWideCacheLocator" in names else len(names)
    return [*locators[:at], _PrebuiltCacheLocator, *locators[at:]]


class _CacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = _with_prebuilt(caching.CompileResultCacheImpl._locator_classes)


_warned = False


def _warn_uncached(reason: str) -> None:
    """Say once per process that kernels are compiled in memory, and why."""
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        f"bfpack compiles its kernels in memory, a few seconds in every new "
        f"process: {reason}. Set NUMBA_CACHE_DIR to a writable directory to "
        f"cache them, or build the cache at install time (README, "
        f"'Compilation and caching')",
        UserWarning,
        stacklevel=2,
    )


_warned_damaged = False


def _warn_damaged(folder: str, name: str, exc: BaseException) -> None:
    """Say once per process that a damaged cache entry was removed."""
    global _warned_damaged
    if _warned_damaged:
        return
    _warned_damaged = True
    warnings.warn(
        f"numba's cache in {folder} held a damaged entry ({name}: "
        f"{type(exc).__name__}: {exc}); bfpack removed it and compiles the kernel again",
        UserWarning,
        stacklevel=2,
    )


class _CacheFile(_numba_class("IndexDataCacheFile")):  # type: ignore[misc]
    """numba's index and data files, where a damaged file (cut short by a
    full disk or a killed compile, or overwritten) is a missing one.

    numba writes each file under a temporary name and renames it, so a
    damaged file is rare, but numba raises on it in every later process
    (UnpicklingError, EOFError...): unpickling may raise almost any
    exception, so every one but OSError (a file that cannot be read at all,
    reported by :class:`_FunctionCache`) means a damaged file. It is
    removed, so the entry is compiled and saved again.
    """

    def _load_index(self) -> dict:
        try:
            return cast(dict, super()._load_index())
        except OSError:
            raise
        except Exception as exc:
            self._discard(self._index_path, exc)
            return {}

    def _load_data(self, name: str) -> Any:
        try:
            return super()._load_data(name)
        except OSError:
            raise
        except Exception as exc:
            self._discard(self._data_path(name), exc)
            return None  # as for a missing data file: numba compiles

    def _discard(self, path: str, exc: Exception) -> None:
        # Another process may have replaced the file meanwhile: removing
        # its good copy costs only one more compile. A read-only cache
        # keeps the file; the kernel is compiled in every process then.
        with contextlib.suppress(OSError):
            os.unlink(path)
        _warn_damaged(self._cache_path, os.path.basename(path), exc)


class _FunctionCache(caching.FunctionCache):
    """numba's cache, found by :class:`_CacheImpl`; reading or writing it
    may fail (a read-only pre-built cache, a full disk) without failing the
    call: the kernel is then compiled, or just not saved. A damaged entry
    is removed and compiled again (:class:`_CacheFile`)."""

    _impl_class = _CacheImpl

    def __init__(self, py_func: Callable) -> None:
        super().__init__(py_func)
        self._cache_file = _CacheFile(
            cache_path=self._cache_path,
            filename_base=self._impl.filename_base,
            source_stamp=self._impl.locator.get_source_stamp(),
        )

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        try:
            return super().load_overload(sig, target_context)
        except OSError as exc:
            _warn_uncached(f"numba's cache in {self.cache_path} cannot be read ({exc})")
            return None

    def save_overload(self, sig: Any, data: Any) -> None:
        try:
            super().save_overload(sig, data)
        except OSError as exc:
            _warn_uncached(f"numba's cache in {self.cache_path} cannot be written ({exc})")


class _NoCache(caching.NullCache):
    """No cache location at all: every compile is in memory, and said once."""

    def __init__(self, py_func: Callable) -> None:
        self._name = py_func.__qualname__

    def save_overload(self, sig: Any, data: Any) -> None:
        _warn_uncached(
            f"no numba cache location is writable for kernel {self._name!r} "
            f"(NUMBA_CACHE_DIR is unset or not writable, bfpack's __pycache__ is "
            f"read-only and holds no pre-built copy of the kernel, and numba's "
            f"user cache directory (~/.cache/numba on Linux) cannot be created)"
        )


def _cache_for(py_func: Callable) -> Any:
    try:
        return _FunctionCache(py_func)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return _NoCache(py_func)


def _compiler(**options: Any) -> Callable[[Callable], Any]:
    """A decorator compiling with numba under this policy."""

    def decorate(func: Callable) -> Any:
        dispatcher = numba.njit(nogil=True, **options)(func)
        # With NUMBA_DISABLE_JIT numba returns the Python function itself.
        if isinstance(dispatcher, Dispatcher):
            # What numba's Dispatcher.enable_caching does, with our cache.
            dispatcher._cache = _cache_for(dispatcher.py_func)  # type: ignore[attr-defined]
        return dispatcher

    return decorate


jit = _compiler()

# Small helpers called from hot loops are inlined into their callers at the
# numba IR level: a call that passes arrays costs reference-count updates.
jit_inline = _compiler(inline="always")


def call(kernel: Callable[..., Any], *args: Any) -> Any:
    """``kernel(*args)`` with SIGINT and SIGTERM held until it has returned."""
    with held():
        return kernel(*args)


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def readonly(arr: np.ndarray) -> np.ndarray:
    """A read-only view of ``arr`` (no copy), the one mutability kernels see."""
    view = arr.view()
    view.flags.writeable = False
    return view


def token_view(arr: np.ndarray) -> np.ndarray:
    """``arr`` reinterpreted as unsigned integers of the same width (no copy)."""
    return arr.view(_UNSIGNED[arr.dtype.itemsize])


def token_bits(value: float, dtype: np.dtype) -> np.generic:
    """``value`` stored as ``dtype``, as the unsigned integer of its bits."""
    bits = np.array(value, dtype=dtype).view(_UNSIGNED[dtype.itemsize])
    return cast(np.generic, bits[()])


def _as_pointer_python(address: int) -> ctypes.c_void_p:
    return ctypes.c_void_p(int(address))


@intrinsic
def _as_pointer_jit(typingctx: Any, address: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return numba.types.voidptr(address), codegen


_JIT_DISABLED = bool(vars(numba_config).get("DISABLE_JIT"))
#: ``as_pointer(address)``: an integer memory address as a pointer that
#: ``carray(pointer, n, dtype)`` views as an array, in a kernel (or, with
#: ``NUMBA_DISABLE_JIT``, in Python). The caller keeps the memory alive.
as_pointer = cast(Callable[[Any], Any], _as_pointer_python if _JIT_DISABLED else _as_pointer_jit)
carray = numba.carray
