"""cgdbench: Numba-compiled compressed gradient methods and their benchmarks.

>>> from cgdbench import RunConfig, run
>>> trace = run(RunConfig(algorithm="det-cgd1", compressor="rand-1", stepsize="diag-inv", iters=100))
"""
__version__ = "0.1.0"

from .config import RunConfig  # noqa: E402
from .engine import Trace, build, run  # noqa: E402
from .errors import CgdbenchError, ConfigError, DataError, StoreError  # noqa: E402

__all__ = ["RunConfig", "Trace", "run", "build", "CgdbenchError", "ConfigError", "DataError",
           "StoreError", "__version__"]
