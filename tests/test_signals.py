"""Signals held back where an exception must not land (``bfpack._interrupt.held``).

numba runs Python code while it boxes a kernel's tuple result; a signal
handler that raises there crashed the process (SIGSEGV) or left a
SystemError. Every kernel call now holds SIGINT and SIGTERM until it
returns (``bfpack._jit.call``); the storm test below crashed within a
second before that.
"""

import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from bfpack._interrupt import _put_back, held

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class Raised(Exception):
    pass


@pytest.fixture
def handlers():
    """Restore SIGINT's and SIGTERM's handlers after the test."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in old.items():
        signal.signal(s, h)


def raising(signum, frame):
    raise Raised(signal.Signals(signum).name)


def test_a_signal_in_the_block_is_delivered_after_it(handlers):
    signal.signal(signal.SIGINT, raising)
    reached_end = False
    with pytest.raises(Raised, match="SIGINT"):
        with held():
            signal.raise_signal(signal.SIGINT)
            assert signal.getsignal(signal.SIGINT) is not raising
            reached_end = True
    assert reached_end
    assert signal.getsignal(signal.SIGINT) is raising


def test_every_signal_is_delivered_once_in_order(handlers):
    seen = []
    record = lambda signum, frame: seen.append(signum)  # noqa: E731
    signal.signal(signal.SIGINT, record)
    signal.signal(signal.SIGTERM, record)
    with held():
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
            signal.raise_signal(s)
        assert seen == []
    assert seen == [signal.SIGTERM, signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is record
    assert signal.getsignal(signal.SIGTERM) is record


def test_no_signal_nothing_raised_handlers_kept(handlers):
    signal.signal(signal.SIGINT, raising)
    with held():
        pass
    assert signal.getsignal(signal.SIGINT) is raising


def test_defaults_and_ignored_signals_are_left_alone(handlers):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with held():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        signal.raise_signal(signal.SIGINT)  # ignored, as without the block


def test_defaults_held_on_request(handlers):
    # The directory swap holds even a SIGTERM that would end the process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with held(defaults=True):
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_the_block_raising_still_delivers_and_restores(handlers):
    signal.signal(signal.SIGINT, raising)
    with pytest.raises(Raised) as info:
        with held():
            signal.raise_signal(signal.SIGINT)
            raise ValueError("in the block")
    assert isinstance(info.value.__context__, ValueError)
    assert signal.getsignal(signal.SIGINT) is raising


def test_other_threads_change_nothing(handlers):
    signal.signal(signal.SIGINT, raising)
    seen = []

    def worker():
        with held():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [raising]


def test_put_back_restores_every_handler_when_one_raises(handlers):
    seen = []
    record = lambda signum, frame: seen.append(signum)  # noqa: E731
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with pytest.raises(Raised, match="SIGINT"):
        _put_back({signal.SIGINT: raising, signal.SIGTERM: record}, [signal.SIGINT, signal.SIGTERM])
    # SIGINT's handler raised, and SIGTERM was still put back and delivered.
    assert signal.getsignal(signal.SIGINT) is raising
    assert signal.getsignal(signal.SIGTERM) is record
    assert seen == [signal.SIGTERM]


STORM = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import numpy as np
    import pyarrow as pa
    import bfpack

    class Raised(Exception):
        pass

    armed = False

    def handler(signum, frame):
        # Raise only while a call is under way, so the loop below can count.
        global armed
        if armed:
            armed = False
            raise Raised

    lengths = np.arange(1, 300)
    table = pa.table({"input_ids": [list(range(n)) for n in lengths]})
    stream = bfpack.StreamPacker(64)
    calls = {
        "pack": lambda: bfpack.pack(lengths, 64),
        "concat": lambda: bfpack.pack(lengths, 64, method="concat"),
        "take": lambda: bfpack.pack(lengths, 64).take([0, 1]),
        "stream": lambda: stream.step(lengths),
        "pack_table": lambda: bfpack.pack_table(table, 64, position_ids=True),
    }
    for f in calls.values():
        f()  # compiled before the storm
    signal.signal(signal.SIGINT, handler)
    done = False

    def storm():
        while not done:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.0002)

    t = threading.Thread(target=storm, daemon=True)
    t.start()
    caught = dict.fromkeys(calls, 0)
    try:
        for name, f in calls.items():
            end = time.monotonic() + float(sys.argv[1])
            while time.monotonic() < end:
                try:
                    armed = True
                    f()
                    armed = False
                except Raised:
                    caught[name] += 1
    finally:
        armed = False
        done = True
    t.join()
    print(min(caught.values()))
    """
)


@pytest.mark.skipif(
    sys.platform.startswith("win"), reason="os.kill with SIGINT is not a signal on Windows"
)
def test_interrupts_never_crash_kernel_calls(tmp_path):
    """A storm of raising SIGINT handlers while kernels are called: each
    call either finishes or raises the handler's exception, and the process
    survives (it died of SIGSEGV within a second before kernels were called
    with signals held)."""
    script = tmp_path / "storm.py"
    script.write_text(STORM)
    run = subprocess.run(
        [sys.executable, str(script), "1.0"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, (run.returncode, run.stderr[-3000:])
    assert "SystemError" not in run.stderr
    assert int(run.stdout) > 0  # every kind of call was interrupted, and survived
