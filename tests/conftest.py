import os
import sys

from hypothesis import HealthCheck, settings

# ``from naive import ...`` works whatever pytest's import mode.
sys.path.insert(0, os.path.dirname(__file__))

# Every run leaves the system temporary directory as it found it (tests/clutter.py).
pytest_plugins = ["clutter"]

# Nothing is fetched from a model or dataset hub: Hugging Face libraries
# (read at their import) stay offline, and tests build their data locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# Inputs come from composite strategies whose size depends on seq_len, and
# numba compiles each kernel on its first call: no per-example deadline.
settings.register_profile("bfpack", deadline=None, suppress_health_check=[HealthCheck.too_slow])
# The coverage run of .ci/run, with the kernels run as Python: every line is
# reached by a few examples, and the default hundred would cost minutes.
settings.register_profile("coverage", parent=settings.get_profile("bfpack"), max_examples=10)
settings.load_profile(os.environ.get("BFPACK_HYPOTHESIS_PROFILE", "bfpack"))
