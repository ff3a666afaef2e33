"""The asv suite (``bench_*.py``) and one-off benchmark scripts.

Imported by asv before any benchmark module, so the thread setting below is in place
before Numba starts: **timing benchmarks run on one Numba thread** unless the user sets
``NUMBA_NUM_THREADS`` (a 1-thread timing tracks the code, not how busy the machine's
other core was; the threading policy itself is measured by ``threading_policy.py``).
The LIBSVM files are found by cgdbench's data-directory rule; in this workspace they
sit in ``../shared/datasets``, which is used when ``CGDBENCH_DATA`` is unset.
"""
import os
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
_shared = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
if not os.environ.get("CGDBENCH_DATA") and (_shared / "a1a").is_file():
    os.environ["CGDBENCH_DATA"] = str(_shared)
